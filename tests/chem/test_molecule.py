import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confflow.chem import Molecule, MoleculeError, StereoWarning, write_pdb

_OPENMMTOOLS = importlib.util.find_spec("openmmtools")
OPENMMTOOLS_ALDP = (
    Path(_OPENMMTOOLS.origin).parent / "data/alanine-dipeptide-gbsa/alanine-dipeptide.pdb"
    if _OPENMMTOOLS is not None and _OPENMMTOOLS.origin is not None
    else Path("missing")
)


def quiet(smiles: str, **kwargs) -> Molecule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StereoWarning)
        return Molecule.from_smiles(smiles, **kwargs)


def test_smiles_atom_order_heavy_first_then_hydrogens():
    mol = Molecule.from_smiles("OCC#N")
    assert mol.elements[:4] == ("O", "C", "C", "N")
    assert set(mol.elements[4:]) == {"H"}
    assert mol.n_atoms == 7
    assert mol.heavy_atoms == (0, 1, 2, 3)
    # hydrogens follow their parents in heavy-atom order
    parents = [mol.rdkit_mol.GetAtomWithIdx(i).GetNeighbors()[0].GetIdx() for i in range(4, 7)]
    assert parents == sorted(parents) == [0, 1, 1]


@pytest.mark.parametrize(
    ("smiles", "kwargs", "match"),
    [
        ("", {}, r"SMILES '': empty input"),
        ("   ", {}, r"empty input"),
        ("C1CC", {}, r"SMILES 'C1CC': invalid SMILES"),
        ("[Xx]CC", {}, r"SMILES '\[Xx\]CC': invalid SMILES"),
        ("C(C)(C)(C)(C)C", {}, r"rejected by RDKit: Explicit valence for atom # 0 C"),
        ("CC[O-].[Na+]", {}, r"2 disconnected fragments \(pass largest_fragment=True"),
        ("C[CH2]", {}, r"SMILES 'C\[CH2\]': radical .* atom\(s\) \[1\]"),
        ("CCCCCCCCCC", {"max_atoms": 20}, r"32 atoms exceed the limit max_atoms=20"),
    ],
)
def test_bad_smiles_messages(smiles, kwargs, match):
    with pytest.raises(MoleculeError, match=match):
        Molecule.from_smiles(smiles, **kwargs)


def test_errors_are_value_errors_on_one_line():
    with pytest.raises(ValueError) as info:
        Molecule.from_smiles("C(C)(C)(C)(C)C")
    assert "\n" not in str(info.value)


def test_largest_fragment_keeps_the_salt_organic_part():
    mol = Molecule.from_smiles("CC(=O)[O-].[Na+]", largest_fragment=True)
    assert mol.smiles == "CC(=O)[O-]"
    assert mol.formal_charge == -1


def test_unspecified_stereo_is_reported():
    with pytest.warns(StereoWarning, match=r"unspecified stereo at atom 1 \(C\), bond 3-4"):
        mol = Molecule.from_smiles("CC(O)C=CC")
    assert mol.unspecified_stereo == ("atom 1 (C)", "bond 3-4 (C=C)")
    isomers = mol.stereoisomers()
    assert len(isomers) == 4
    assert len({m.smiles for m in isomers}) == 4
    assert all(m.unspecified_stereo == () for m in isomers)


def test_stereo_policies():
    with pytest.raises(MoleculeError, match=r"SMILES 'CC\(O\)Cl': unspecified stereo at atom 1"):
        Molecule.from_smiles("CC(O)Cl", stereo="error")
    picked = Molecule.from_smiles("CC(O)Cl", stereo="first")
    assert picked.unspecified_stereo == ()
    assert "@" in picked.smiles
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        specified = Molecule.from_smiles("C[C@H](O)Cl")
    assert specified.unspecified_stereo == ()
    with pytest.raises(ValueError, match="stereo must be"):
        Molecule.from_smiles("CCO", stereo="maybe")


def test_embed_is_seeded_in_nm_and_keeps_stereo():
    mol = Molecule.from_smiles("C[C@H](N)C(=O)O")
    a = mol.embed(3, seed=7, num_threads=1)
    b = mol.embed(3, seed=7, num_threads=2)
    assert a.shape == (3, mol.n_atoms, 3) and a.dtype == torch.float64
    assert torch.allclose(a, b)
    bond = float((a[0, 0] - a[0, 1]).norm())
    assert 0.14 < bond < 0.165  # C-C bond in nm
    probe = mol.with_positions(a)
    for conf in probe.GetConformers():
        m = Chem.Mol(probe, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(m)
        assert Chem.FindMolChiralCenters(m) == [(1, "S")]


def test_embed_with_seed_zero_gives_distinct_conformers():
    # RDKit's own seed 0 repeats one conformer; confflow's seeds must not
    x = Molecule.from_smiles("CCCCC").embed(4, seed=0, num_threads=1)
    gaps = (x[1:] - x[0]).abs().amax(dim=(1, 2))
    assert bool((gaps > 0.01).all())


def test_embed_mmff_lowers_the_energy():
    mol = Molecule.from_smiles("CCCCO")
    raw = mol.with_positions(mol.embed(2, seed=1))
    opt = mol.with_positions(mol.embed(2, seed=1, mmff=True))
    for conf in raw.GetConformers():
        props = AllChem.MMFFGetMoleculeProperties(raw)
        e_raw = AllChem.MMFFGetMoleculeForceField(raw, props, confId=conf.GetId()).CalcEnergy()
        e_opt = AllChem.MMFFGetMoleculeForceField(opt, props, confId=conf.GetId()).CalcEnergy()
        assert e_opt < e_raw - 0.1


def test_sdf_keeps_file_atom_order(tmp_path):
    ref = Chem.AddHs(Chem.MolFromSmiles("OCC(=O)N"))
    AllChem.EmbedMolecule(ref, randomSeed=3)
    order = list(np.random.default_rng(0).permutation(ref.GetNumAtoms()))
    shuffled = Chem.RenumberAtoms(ref, [int(i) for i in order])
    path = tmp_path / "shuffled.sdf"
    Chem.MolToMolFile(shuffled, str(path))
    mol = Molecule.from_sdf(path)
    assert mol.elements == tuple(a.GetSymbol() for a in shuffled.GetAtoms())
    expected = shuffled.GetConformer().GetPositions() / 10.0
    assert np.allclose(mol.positions[0].numpy(), expected, atol=1e-5)


def test_sdf_without_3d_coordinates_is_rejected(tmp_path):
    flat = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.Compute2DCoords(flat)
    path = tmp_path / "flat.sdf"
    Chem.MolToMolFile(flat, str(path))
    with pytest.raises(MoleculeError, match=r"file 'flat.sdf': record has no 3-D coordinates"):
        Molecule.from_sdf(path)
    assert Molecule.from_sdf(path, require_3d=False).n_atoms == 9


def test_file_errors(tmp_path):
    with pytest.raises(MoleculeError, match=r"file 'missing.sdf': no such file"):
        Molecule.from_sdf(tmp_path / "missing.sdf")
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    with pytest.raises(MoleculeError, match=r"file 'empty.sdf': empty input"):
        Molecule.from_sdf(empty)
    junk = tmp_path / "junk.pdb"
    junk.write_text("not a pdb\n")
    with pytest.raises(MoleculeError, match=r"file 'junk.pdb': no atoms"):
        Molecule.from_pdb(junk)


def test_pdb_openmm_and_mdtraj_agree(tmp_path):
    import mdtraj
    from openmm.app import PDBFile

    mol = Molecule.from_smiles("CC(=O)N[C@@H](C)C(=O)NC")
    x = mol.embed(1, seed=2)
    path = tmp_path / "aldp.pdb"
    write_pdb(path, mol, x)
    from_file = Molecule.from_pdb(path)
    templated = Molecule.from_pdb(path, template_smiles="CC(=O)NC(C)C(=O)NC")
    pdb = PDBFile(str(path))
    from_omm = Molecule.from_openmm(pdb.topology, pdb.positions)
    traj = mdtraj.load(str(path))
    from_md = Molecule.from_mdtraj(traj.topology, traj.xyz[0])
    for other in (from_file, templated, from_omm, from_md):
        assert other.smiles == mol.smiles
        assert other.elements == mol.elements
        assert torch.allclose(other.positions[0], x[0], atol=1e-4)


@pytest.mark.skipif(not OPENMMTOOLS_ALDP.exists(), reason="openmmtools' alanine dipeptide absent")
def test_reference_alanine_dipeptide_pdb():
    mol = Molecule.from_pdb(OPENMMTOOLS_ALDP)
    assert mol.n_atoms == 22
    assert mol.smiles == Molecule.from_smiles("CC(=O)N[C@@H](C)C(=O)NC").smiles


def test_graph_input_errors():
    import mdtraj

    top = mdtraj.Topology()
    with pytest.raises(MoleculeError, match=r"mdtraj topology: empty input"):
        Molecule.from_mdtraj(top, np.zeros((0, 3)))
    mol = Molecule.from_smiles("CCO")
    from confflow.chem import to_mdtraj

    traj = to_mdtraj(mol, mol.embed(1))
    with pytest.raises(MoleculeError, match=r"positions must be \[9, 3\] nm, got \(8, 3\)"):
        Molecule.from_mdtraj(traj.topology, traj.xyz[0][:8])
    assert Molecule.from_mdtraj(traj.topology, traj.xyz[0]).smiles == "CCO"


def test_rdkit_input_takes_stereo_from_3d():
    rd = Chem.AddHs(Chem.MolFromSmiles("C[C@@H](O)CC"))
    AllChem.EmbedMolecule(rd, randomSeed=1)
    for atom in rd.GetAtoms():
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    mol = Molecule.from_rdkit(rd)
    assert mol.unspecified_stereo == ()
    assert mol.smiles == Chem.MolToSmiles(Chem.MolFromSmiles("C[C@@H](O)CC"))
    with pytest.raises(MoleculeError, match=r"RDKit mol: expected rdkit\.Chem\.Mol, got str"):
        Molecule.from_rdkit("CCO")


def test_pdb_without_hydrogens(tmp_path):
    mol = Molecule.from_smiles("CC(=O)N[C@@H](C)C(=O)NC")
    x = mol.embed(1, seed=2)
    heavy = Chem.RemoveHs(mol.with_positions(x))
    path = tmp_path / "heavy.pdb"
    Chem.MolToPDBFile(heavy, str(path))
    with pytest.raises(MoleculeError, match=r"file 'heavy.pdb': no hydrogen atoms; bond orders"):
        Molecule.from_pdb(path)
    templated = Molecule.from_pdb(path, template_smiles="CC(=O)NC(C)C(=O)NC")
    assert templated.n_atoms == 22
    assert templated.smiles == mol.smiles
    assert templated.elements[:10] == mol.elements[:10]
