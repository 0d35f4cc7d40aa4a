"""Torch MMFF94/MMFF94s against RDKit's MMFF force field, on the MMFF94 validation suite.

The suite's records ship as a subset in ``tests/data/mmff94/`` (see its README), chosen by
:func:`_greedy_subset` so that it covers every MMFF atom type the full suite covers; every test
here runs on it. Where the full suite is present next to the checkout, one more test compares
all of its records and checks that the shipped subset is what the selection picks from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers

from confflow.energies import mmff as mmff_module
from confflow.energies.mmff import MMFF_TERMS, MMFFEnergy
from confflow.energies.mmff_params import MMFFTypingError, mmff_parameters

SUBSET = Path(__file__).resolve().parents[1] / "data" / "mmff94"
SUITE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mmff94-suite"
KCAL = 4.184
E_TOL = 1e-4  # kcal/mol, absolute, float64
G_TOL = 1e-3  # kcal/mol/A per component

# Records of the shipped subset, and how many MMFF atom types the full suite has (all of them
# covered by the subset).
SUBSET_SIZE = {"MMFF94": 100, "MMFF94s": 40}
SUITE_SIZE = {"MMFF94": 761, "MMFF94s": 265}
SUITE_ATOM_TYPES = {"MMFF94": 95, "MMFF94s": 69}

needs_suite = pytest.mark.skipif(
    not (SUITE / "MMFF94_dative.sdf").exists(),
    reason="full MMFF94 validation suite not found at ../shared/data/mmff94-suite",
)

_RDKIT_SWITCHES = {
    "bond": "SetMMFFBondTerm",
    "angle": "SetMMFFAngleTerm",
    "stretch_bend": "SetMMFFStretchBendTerm",
    "oop": "SetMMFFOopTerm",
    "torsion": "SetMMFFTorsionTerm",
    "vdw": "SetMMFFVdWTerm",
    "electrostatic": "SetMMFFEleTerm",
}


def _read(path: Path) -> list[Chem.Mol]:
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False) if m is not None]


def _subset(variant: str) -> list[Chem.Mol]:
    """The shipped records of ``variant`` ("MMFF94" or "MMFF94s"), in suite order."""
    return _read(SUBSET / f"{variant}_subset.sdf")


def _suite(variant: str) -> list[Chem.Mol]:
    """All records of the full validation suite (only where it is present)."""
    return _read(SUITE / f"{variant}_dative.sdf")


def _coverage(mol: Chem.Mol, variant: str) -> tuple[set[int], set[tuple[int, int]]]:
    """MMFF atom types of ``mol`` and the (sorted) atom-type pairs of its bonds."""
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    types = [props.GetMMFFAtomType(i) for i in range(mol.GetNumAtoms())]
    pairs = {
        tuple(sorted((types[b.GetBeginAtomIdx()], types[b.GetEndAtomIdx()])))
        for b in mol.GetBonds()
    }
    return set(types), pairs


def _greedy_subset(mols: list[Chem.Mol], variant: str, size: int) -> list[int]:
    """Indices (in suite order) of the ``size`` records the shipped subset holds.

    Greedy set cover: each step takes the record that adds the most atom types not yet
    covered; ties go to the one adding the most new bonded atom-type pairs, then to the
    smaller molecule, then to the earlier record. The MMFF94 suite's 95 atom types are all
    covered after 41 records, its 69 MMFF94s types after 23; the rest of the picks widen the
    coverage of bond parameters.
    """
    cover = [_coverage(m, variant) for m in mols]
    types: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    chosen: list[int] = []
    for _ in range(size):
        best = max(
            (i for i in range(len(mols)) if i not in chosen),
            key=lambda i: (
                len(cover[i][0] - types),
                len(cover[i][1] - pairs),
                -mols[i].GetNumAtoms(),
                -i,
            ),
        )
        chosen.append(best)
        types |= cover[best][0]
        pairs |= cover[best][1]
    return sorted(chosen)


def _rdkit_ff(
    mol: Chem.Mol,
    variant: str = "MMFF94",
    only: str | None = None,
    distance: bool = False,
    dielectric: float = 1.0,
    threshold: float = 100.0,
    interfrag: bool = True,
):
    ref = Chem.Mol(mol)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(ref, mmffVariant=variant)
    props.SetMMFFDielectricModel(2 if distance else 1)
    props.SetMMFFDielectricConstant(dielectric)
    if only is not None:
        for term, setter in _RDKIT_SWITCHES.items():
            getattr(props, setter)(term == only)
    return rdForceFieldHelpers.MMFFGetMoleculeForceField(
        ref, props, nonBondedThresh=threshold, ignoreInterfragInteractions=interfrag
    )


def _rdkit_eval(ff, confs_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RDKit energies [B] kcal/mol and gradients [B, N, 3] kcal/mol/A of Angstrom conformers."""
    energies, grads = [], []
    for pos in confs_a:
        flat = pos.ravel().tolist()
        energies.append(ff.CalcEnergy(flat))
        grads.append(np.asarray(ff.CalcGrad(flat)).reshape(pos.shape))
    return np.array(energies), np.array(grads)


def _torch_eval(energy: MMFFEnergy, confs_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Torch energies [B] kcal/mol and gradients [B, N, 3] kcal/mol/A of Angstrom conformers."""
    x = torch.as_tensor(confs_a / 10.0, dtype=torch.float64)
    e, f = energy.energy_and_forces(x)
    return e.numpy() / KCAL, -f.numpy() / KCAL / 10.0


def _conformers(mol: Chem.Mol, rng: np.random.Generator, n_etkdg: int, n_distort: int):
    """Suite geometry, ETKDG conformers and randomly distorted copies, [C, N, 3] in A."""
    base = mol.GetConformer().GetPositions()
    confs = [base]
    embedded = Chem.Mol(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    params.maxIterations = 50
    ids = AllChem.EmbedMultipleConfs(embedded, n_etkdg, params)
    confs += [embedded.GetConformer(i).GetPositions() for i in ids]
    n_distort += n_etkdg - len(ids)
    for k in range(n_distort):
        start = confs[k % len(confs)]
        confs.append(start + rng.normal(scale=0.15, size=start.shape))
    return np.stack(confs)


def _assert_matches(e_t, g_t, e_r, g_r, label: str) -> None:
    de = np.abs(e_t - e_r).max()
    dg = np.abs(g_t - g_r).max()
    assert de <= E_TOL, f"{label}: energy differs from RDKit by {de:.2e} kcal/mol"
    assert dg <= G_TOL, f"{label}: gradient differs from RDKit by {dg:.2e} kcal/mol/A"


@pytest.mark.parametrize("variant", ["MMFF94", "MMFF94s"])
def test_every_subset_record_matches_rdkit(variant):
    mols = _subset(variant)
    assert len(mols) == SUBSET_SIZE[variant]
    types = set().union(*(_coverage(m, variant)[0] for m in mols))
    assert len(types) == SUITE_ATOM_TYPES[variant], "the subset lost atom types of the suite"
    multi_fragment = 0
    for mol in mols:
        multi_fragment += len(Chem.GetMolFrags(mol)) > 1
        confs = mol.GetConformer().GetPositions()[None]
        e_t, g_t = _torch_eval(MMFFEnergy(mol, variant=variant), confs)
        e_r, g_r = _rdkit_eval(_rdkit_ff(mol, variant), confs)
        _assert_matches(e_t, g_t, e_r, g_r, f"{variant} {mol.GetProp('_Name')}")
    if variant == "MMFF94":
        assert multi_fragment >= 5, "expected ion-water records with several fragments"


@needs_suite
@pytest.mark.parametrize("variant", ["MMFF94", "MMFF94s"])
def test_every_full_suite_record_matches_rdkit(variant):
    """All suite records; and the shipped subset is what the greedy selection picks."""
    mols = _suite(variant)
    assert len(mols) == SUITE_SIZE[variant]
    types = set().union(*(_coverage(m, variant)[0] for m in mols))
    assert len(types) == SUITE_ATOM_TYPES[variant]
    picked = [
        mols[i].GetProp("_Name") for i in _greedy_subset(mols, variant, len(_subset(variant)))
    ]
    assert picked == [m.GetProp("_Name") for m in _subset(variant)]
    for mol in mols:
        confs = mol.GetConformer().GetPositions()[None]
        e_t, g_t = _torch_eval(MMFFEnergy(mol, variant=variant), confs)
        e_r, g_r = _rdkit_eval(_rdkit_ff(mol, variant), confs)
        _assert_matches(e_t, g_t, e_r, g_r, f"{variant} {mol.GetProp('_Name')}")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["MMFF94", "MMFF94s"])
def test_etkdg_and_distorted_conformers_match_rdkit(variant):
    """Every subset molecule x 5 conformers (suite, ETKDG and distorted), energy and gradient."""
    rng = np.random.default_rng(0)
    for mol in _subset(variant):
        confs = _conformers(mol, rng, n_etkdg=1, n_distort=3)
        assert confs.shape[0] == 5
        e_t, g_t = _torch_eval(MMFFEnergy(mol, variant=variant), confs)
        e_r, g_r = _rdkit_eval(_rdkit_ff(mol, variant), confs)
        _assert_matches(e_t, g_t, e_r, g_r, f"{variant} {mol.GetProp('_Name')}")


@pytest.mark.parametrize("term", MMFF_TERMS)
def test_each_term_matches_rdkit_with_only_that_term(term):
    rng = np.random.default_rng(1)
    for mol in _subset("MMFF94"):
        base = mol.GetConformer().GetPositions()
        confs = np.stack([base, base + rng.normal(scale=0.1, size=base.shape)])
        energy = MMFFEnergy(mol)
        ours = energy.term_energies(torch.as_tensor(confs / 10.0))[term].numpy() / KCAL
        ref, _ = _rdkit_eval(_rdkit_ff(mol, only=term), confs)
        diff = np.abs(ours - ref).max()
        assert diff <= E_TOL, f"{term} of {mol.GetProp('_Name')}: differs by {diff:.2e} kcal/mol"


def test_terms_sum_to_the_total_energy():
    for mol in _subset("MMFF94")[::10]:
        energy = MMFFEnergy(mol)
        x = torch.as_tensor(mol.GetConformer().GetPositions()[None] / 10.0)
        total = sum(energy.term_energies(x).values())
        assert torch.allclose(total, energy(x), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize(("distance", "dielectric"), [(True, 1.0), (True, 4.0), (False, 80.0)])
def test_dielectric_options_match_rdkit(distance, dielectric):
    model = "distance" if distance else "constant"
    for mol in _subset("MMFF94")[::3]:
        confs = mol.GetConformer().GetPositions()[None]
        energy = MMFFEnergy(mol, dielectric_model=model, dielectric_constant=dielectric)
        e_t, g_t = _torch_eval(energy, confs)
        ff = _rdkit_ff(mol, distance=distance, dielectric=dielectric)
        e_r, g_r = _rdkit_eval(ff, confs)
        _assert_matches(e_t, g_t, e_r, g_r, f"{model}/{dielectric} {mol.GetProp('_Name')}")


def test_interfragment_interactions_can_be_kept():
    multi = [m for m in _subset("MMFF94") if len(Chem.GetMolFrags(m)) > 1]
    assert len(multi) >= 5
    changed = 0
    for mol in multi:
        confs = mol.GetConformer().GetPositions()[None]
        kept = MMFFEnergy(mol, ignore_interfragment_interactions=False)
        e_t, g_t = _torch_eval(kept, confs)
        e_r, g_r = _rdkit_eval(_rdkit_ff(mol, interfrag=False), confs)
        _assert_matches(e_t, g_t, e_r, g_r, f"kept {mol.GetProp('_Name')}")
        e_ignored, _ = _torch_eval(MMFFEnergy(mol), confs)
        changed += abs(e_ignored[0] - e_t[0]) > 1e-3
    assert changed == len(multi), "ion-water interaction energy should not vanish"


def test_nonbonded_threshold_matches_rdkit():
    for mol in _subset("MMFF94")[::5]:
        confs = mol.GetConformer().GetPositions()[None]
        energy = MMFFEnergy(mol, nonbonded_threshold=0.4)
        e_t, g_t = _torch_eval(energy, confs)
        e_r, g_r = _rdkit_eval(_rdkit_ff(mol, threshold=4.0), confs)
        _assert_matches(e_t, g_t, e_r, g_r, f"threshold {mol.GetProp('_Name')}")


def _ligand() -> tuple[Chem.Mol, torch.Tensor]:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCN(CC)CC(=O)Nc1c(C)cccc1C"))
    AllChem.EmbedMultipleConfs(mol, 4, randomSeed=3)
    x = np.stack([c.GetPositions() for c in mol.GetConformers()]) / 10.0
    return mol, torch.as_tensor(x)


def test_float32_close_to_float64():
    mol, x = _ligand()
    energy = MMFFEnergy(mol)
    e64, f64 = energy.energy_and_forces(x)
    e32, f32 = energy.energy_and_forces(x.float())
    assert e32.dtype == torch.float32 and f32.dtype == torch.float32
    assert torch.allclose(e32.double(), e64, rtol=1e-5, atol=1e-3)
    scale = f64.abs().max()
    assert (f32.double() - f64).abs().max() <= 1e-5 * scale


def test_batch_split_gives_the_same_energies(monkeypatch):
    mol, x = _ligand()
    energy = MMFFEnergy(mol)
    whole, forces = energy.energy_and_forces(x)
    monkeypatch.setattr(mmff_module, "_EAGER_PAIR_ELEMENTS", 1)  # one conformer per chunk
    split, split_forces = energy.energy_and_forces(x)
    assert torch.allclose(whole, split, rtol=0, atol=1e-10)
    assert torch.allclose(forces, split_forces, rtol=0, atol=1e-9)
    singles = torch.cat([energy(x[i : i + 1]) for i in range(x.shape[0])])
    assert torch.allclose(whole, singles, rtol=0, atol=1e-10)


def test_reduced_energy_and_units():
    mol, x = _ligand()
    energy = MMFFEnergy(mol)
    ff = _rdkit_ff(mol)
    ref = ff.CalcEnergy((x[0].numpy() * 10.0).ravel().tolist())
    assert abs(energy(x[:1]).item() - KCAL * ref) <= KCAL * E_TOL
    kt = 8.314462618e-3 * 300.0
    assert torch.allclose(energy.reduced(x, 300.0), energy(x) / kt)


def test_autograd_chains_the_analytic_gradient():
    """Backward through energy() scales each conformer's analytic gradient by its cotangent."""
    mol, x = _ligand()
    energy = MMFFEnergy(mol)
    e_ref, forces = energy.energy_and_forces(x)
    y = (x / 2.0).clone().requires_grad_(True)
    weights = torch.arange(1.0, x.shape[0] + 1.0, dtype=torch.float64)
    e = energy(2.0 * y)
    assert e.requires_grad and torch.allclose(e.detach(), e_ref, rtol=0, atol=1e-10)
    (grad,) = torch.autograd.grad((weights * e).sum(), y)
    expected = -2.0 * weights[:, None, None] * forces
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-9)
    with torch.no_grad():
        assert torch.allclose(energy(x), e_ref, rtol=0, atol=1e-10)


def test_second_derivatives_raise():
    mol, x = _ligand()
    energy = MMFFEnergy(mol)
    x = x.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad(energy(x).sum(), x, create_graph=True)


def test_untypable_atoms_are_named():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC[Se]CC"))
    with pytest.raises(MMFFTypingError, match=r"mol: MMFF cannot type atoms Se2"):
        MMFFEnergy(mol)
    boron = Chem.AddHs(Chem.MolFromSmiles("CB(C)C"))
    with pytest.raises(ValueError, match=r"cannot type atoms B1"):
        mmff_parameters(boron)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "MMFF95"}, "variant: expected"),
        ({"dielectric_model": "linear"}, "dielectric_model: expected"),
        ({"dielectric_constant": 0.0}, "dielectric_constant: must be positive"),
        ({"nonbonded_threshold": -1.0}, "nonbonded_threshold: must be positive"),
    ],
)
def test_bad_options_raise(kwargs, message):
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    with pytest.raises(ValueError, match=message):
        MMFFEnergy(mol, **kwargs)


def test_bad_molecules_and_positions_raise():
    with pytest.raises(ValueError, match="implicit hydrogens"):
        MMFFEnergy(Chem.MolFromSmiles("CCO"))
    with pytest.raises(ValueError, match="needs a conformer"):
        MMFFEnergy(Chem.AddHs(Chem.MolFromSmiles("CCO")), nonbonded_threshold=1.0)
    energy = MMFFEnergy(Chem.AddHs(Chem.MolFromSmiles("CCO")))
    with pytest.raises(ValueError, match="expected positions of shape"):
        energy(torch.zeros(2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        energy(torch.full((1, 9, 3), float("nan"), dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    mol, x = _ligand()
    energy = MMFFEnergy(mol)
    e_cpu, f_cpu = energy.energy_and_forces(x)
    e_gpu, f_gpu = energy.to("cuda").energy_and_forces(x.cuda())
    assert torch.allclose(e_gpu.cpu(), e_cpu, rtol=1e-10, atol=1e-8)
    assert torch.allclose(f_gpu.cpu(), f_cpu, rtol=1e-10, atol=1e-7)


@pytest.mark.slow
def test_compiled_matches_eager():
    """Compiled blocks (several, the last one padded) give the eager energies and forces."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)NC"))
    AllChem.EmbedMultipleConfs(mol, 3, randomSeed=5)
    confs = np.stack([c.GetPositions() for c in mol.GetConformers()]) / 10.0
    rng = np.random.default_rng(2)
    n = mmff_module.COMPILED_BLOCK + 5
    x = torch.as_tensor(confs[rng.integers(0, 3, n)] + rng.normal(scale=0.003, size=(n, 12, 3)))
    e_eager, f_eager = MMFFEnergy(mol).energy_and_forces(x)
    compiled = MMFFEnergy(mol, compile=True)
    e_comp, f_comp = compiled.energy_and_forces(x)
    assert e_comp.shape == (n,) and f_comp.shape == (n, 12, 3)
    assert torch.allclose(e_comp, e_eager, rtol=1e-10, atol=1e-8)
    assert torch.allclose(f_comp, f_eager, rtol=1e-10, atol=1e-7)
    e_few, f_few = compiled.energy_and_forces(x[:3])
    assert torch.allclose(e_few, e_eager[:3], rtol=1e-10, atol=1e-8)
    assert torch.allclose(f_few, f_eager[:3], rtol=1e-10, atol=1e-7)


@pytest.mark.slow
def test_compiled_kernel_serves_new_molecules_without_compiling_again():
    """After two molecules the compiled kernel takes any term counts: a third compiles nothing.

    With static shapes every molecule compiled anew, and after torch's recompilation limit a
    long-lived worker ran the dense kernels uncompiled without a word.
    """
    from torch._dynamo.utils import counters

    graphs = []
    for smiles in ("CC(=O)NC", "CCC(=O)NCC", "CCCC(=O)N(C)CCO"):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=3)
        x = torch.as_tensor(mol.GetConformer().GetPositions() / 10.0)[None].repeat(4, 1, 1)
        x = x + 0.002 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        e_eager, f_eager = MMFFEnergy(mol).energy_and_forces(x)
        e_comp, f_comp = MMFFEnergy(mol, compile=True).energy_and_forces(x)
        assert torch.allclose(e_comp, e_eager, rtol=1e-10, atol=1e-8)
        assert torch.allclose(f_comp, f_eager, rtol=1e-10, atol=1e-7)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[2] == graphs[1]


@pytest.mark.slow
def test_background_compilation_serves_every_energy_of_the_molecule_and_dtype():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCC(=O)OC"))
    AllChem.EmbedMolecule(mol, randomSeed=4)
    x = torch.as_tensor(mol.GetConformer().GetPositions() / 10.0)[None].repeat(5, 1, 1)
    x = x + 0.002 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    energy = MMFFEnergy(mol)
    e_ref, f_ref = energy.energy_and_forces(x)  # eager, float64
    assert energy.compile_in_background(torch.float32).result(timeout=600) is True
    other = MMFFEnergy(mol)  # another energy of the same molecule uses the compiled kernel
    assert other._kernel(x.float(), gradient=True)[1] is True
    assert other._kernel(x, gradient=True)[1] is False  # float64 was not compiled
    e32, f32 = other.energy_and_forces(x.float())
    assert torch.allclose(e32.double(), e_ref, rtol=1e-5, atol=1e-3)
    assert torch.allclose(f32.double(), f_ref, rtol=1e-4, atol=0.05)
    xg = x.float().requires_grad_(True)
    other.energy(xg).sum().backward()
    assert torch.allclose(xg.grad.double(), -f_ref, rtol=1e-4, atol=0.05)
