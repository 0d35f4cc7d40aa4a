import mdtraj
import pytest
import torch

from confflow.chem import (
    Molecule,
    MoleculeError,
    from_mdtraj,
    read_sdf,
    to_mdtraj,
    write_pdb,
    write_sdf,
    write_xyz,
)


@pytest.fixture(scope="module")
def ethanol():
    mol = Molecule.from_smiles("CCO")
    return mol, mol.embed(4, seed=5)


def test_sdf_records_and_tags_round_trip(tmp_path, ethanol):
    mol, x = ethanol
    path = tmp_path / "out.sdf"
    energies = torch.tensor([1.5, -2.0, 3.25, 0.0])
    logq = torch.tensor([10.0, 11.0, 12.0, 13.0])
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4])
    write_sdf(path, mol, x, energies=energies, log_likelihoods=logq, weights=weights)
    text = path.read_text()
    assert text.count("$$$$") == 4
    assert text.count("<energy_kJ_per_mol>") == 4
    back, xb, tags = read_sdf(path)
    assert back.elements == mol.elements
    assert torch.allclose(xb, x, atol=1e-5)  # SDF keeps 4 decimals of Angstrom
    assert torch.allclose(tags["energy_kJ_per_mol"], energies.double())
    assert torch.allclose(tags["log_likelihood"], logq.double())
    assert torch.allclose(tags["weight"], weights.double())


def test_sdf_holds_angstrom(tmp_path, ethanol):
    mol, x = ethanol
    path = tmp_path / "one.sdf"
    write_sdf(path, mol, x[:1])
    first_atom = path.read_text().splitlines()[4].split()
    assert [float(v) for v in first_atom[:3]] == pytest.approx((x[0, 0] * 10).tolist(), abs=1e-4)


def test_sdf_tag_length_is_checked(tmp_path, ethanol):
    mol, x = ethanol
    with pytest.raises(MoleculeError, match="energies: expected 4 values, got 3"):
        write_sdf(tmp_path / "bad.sdf", mol, x, energies=torch.zeros(3))
    with pytest.raises(MoleculeError, match=r"positions must be \[C, 9, 3\] nm, got \(4, 8, 3\)"):
        write_sdf(tmp_path / "bad.sdf", mol, x[:, :8])


def test_pdb_models_in_angstrom(tmp_path, ethanol):
    mol, x = ethanol
    path = tmp_path / "out.pdb"
    write_pdb(path, mol, x)
    traj = mdtraj.load(str(path))
    assert traj.n_frames == 4
    assert torch.allclose(torch.from_numpy(traj.xyz).double(), x, atol=2e-4)


def test_xyz_frames(tmp_path, ethanol):
    mol, x = ethanol
    path = tmp_path / "out.xyz"
    write_xyz(path, mol, x)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 * (2 + mol.n_atoms)
    assert lines[0] == "9"
    sym, *coords = lines[2].split()
    assert sym == "C"
    assert [float(c) for c in coords] == pytest.approx((x[0, 0] * 10).tolist(), abs=1e-7)
    traj = mdtraj.load(str(path), top=to_mdtraj(mol, x[:1]).topology)
    assert torch.allclose(torch.from_numpy(traj.xyz).double(), x, atol=1e-6)


def test_mdtraj_round_trip(ethanol):
    mol, x = ethanol
    traj = to_mdtraj(mol, x)
    assert traj.n_frames == 4 and traj.n_atoms == mol.n_atoms
    assert traj.topology.n_bonds == len(mol.bonds)
    assert torch.allclose(from_mdtraj(traj, mol), x, atol=1e-6)
    other = Molecule.from_smiles("CCN")
    with pytest.raises(MoleculeError, match="mdtraj trajectory: elements/atom order differ"):
        from_mdtraj(traj, other)
