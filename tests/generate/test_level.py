"""``confflow generate --level``: the ensemble reweighted to GFN2-xTB, checked against tblite.

One tiny torsional run of 2-pentanol (a stereocentre, rotatable torsions) with ``--level
gfn2:water`` is shared by the checks; its SDF energies are recomputed with tblite's own
Calculator on the written coordinates.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from tblite.interface import Calculator

from confflow.chem import Molecule
from confflow.energies import MMFFEnergy, XTBEnergy, kT
from confflow.energies.xtb import HARTREE_KJ_MOL
from confflow.generate import GenerateConfig, GenerateError, level, run_generate
from confflow.generate.ensemble import Ensemble
from confflow.generate.level import reweight_to_level

SMILES = "C[C@H](O)CCC"
ANGSTROM_PER_BOHR = 0.529177210903


def _config(out, **kw) -> GenerateConfig:
    settings = {"budget": 4.0, "md_ns": 0.004, "n": 120, "progress": False, "device": "cpu"}
    settings["level_refine"] = 0.0  # refinement has its own test
    return GenerateConfig(SMILES, out, **{**settings, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(2)  # two xTB worker processes
    out = tmp_path_factory.mktemp("level") / "pentanol.sdf"
    return run_generate(_config(out, level="gfn2:water", unique=0.05))


def _records(run) -> list[Chem.Mol]:
    return list(Chem.SDMolSupplier(str(run.sdf), removeHs=False))


def test_records_carry_both_energies_and_xtb_is_tblites(run):
    records = _records(run)
    assert len(records) == run.n_written > 0
    for rec in records[:10]:
        z = np.array([a.GetAtomicNum() for a in rec.GetAtoms()])
        bohr = rec.GetConformer().GetPositions() / ANGSTROM_PER_BOHR
        calc = Calculator("GFN2-xTB", z, bohr)
        calc.set("verbosity", 0)
        calc.add("alpb-solvation", "water")
        expected = calc.singlepoint().get("energy") * HARTREE_KJ_MOL
        assert float(rec.GetProp("energy_gfn2_kJ_mol")) == pytest.approx(expected, abs=1e-5)
        assert rec.HasProp("energy_kJ_mol") and rec.HasProp("log_w_force_field")


def test_log_weights_move_by_the_energy_difference(run):
    records = _records(run)
    beta = 1.0 / kT(300.0)
    shift = [
        float(r.GetProp("log_w"))
        - float(r.GetProp("log_w_force_field"))
        + beta * (float(r.GetProp("energy_gfn2_kJ_mol")) - float(r.GetProp("energy_kJ_mol")))
        for r in records
    ]
    assert max(shift) - min(shift) < 1e-6  # one constant for every conformer


def test_report_has_both_levels(run):
    report = json.loads(run.report.read_text())
    level = report["level"]
    assert level["name"] == "gfn2:water"
    assert level["failed"] == 0 and level["failures"] == []
    assert level["ess_change"] == pytest.approx(level["ess"] / level["ess_force_field"])
    assert level["ess"] == pytest.approx(report["ess"])
    assert report["timings_s"]["level"] > 0
    clusters = report["clusters"]
    assert sum(c["population"] for c in clusters) == pytest.approx(1.0)
    assert sum(c["population_force_field"] for c in clusters) == pytest.approx(1.0)
    assert all("energy_gfn2_kJ_mol" in c for c in clusters)
    # the weights at the two levels differ (water and GFN2 are not MMFF plus a constant)
    assert any(abs(c["population"] - c["population_force_field"]) > 1e-6 for c in clusters)
    assert "tblite" in report["versions"]


@pytest.mark.parametrize(
    ("level", "match"), [("gfn3", "--level"), ("gfn2:notasolvent", "--level gfn2:notasolvent")]
)
def test_bad_level_fails_before_any_work(tmp_path, level, match):
    out = tmp_path / "x.sdf"
    with pytest.raises(GenerateError, match=match):
        run_generate(_config(out, level=level))
    assert not out.exists()
    assert not (tmp_path / "x_run").exists()


def _conformer_ensemble() -> tuple[Molecule, Ensemble]:
    """Propanol: three minimised conformers and one stretched to twice its size."""
    molecule = Molecule.from_smiles("CCCO")
    mol = Chem.Mol(molecule.rdkit_mol)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=3, randomSeed=3))
    AllChem.MMFFOptimizeMoleculeConfs(mol)
    x = torch.stack([torch.from_numpy(mol.GetConformer(i).GetPositions()) / 10 for i in ids])
    x = torch.cat([x[:1], 2.0 * x[1:2], x[1:]])
    energy = MMFFEnergy(molecule.rdkit_mol).double().energy(x)
    log_q = torch.zeros(4, dtype=torch.float64)
    log_w = -energy / kT(300.0) - log_q
    return molecule, Ensemble(x, energy, log_q, log_w, torch.zeros(4, dtype=torch.long), 4, 0, 0)


def test_failed_conformers_are_dropped_counted_and_named():
    molecule, ensemble = _conformer_ensemble()
    # the minimised conformers converge in about 10 SCF cycles, the stretched one in about 50
    xtb = XTBEnergy.from_molecule(molecule, "gfn2", max_iter=30)
    result = reweight_to_level(ensemble, xtb, 300.0)
    assert result.level.failed == 1
    assert [i for i, _ in result.level.failures] == [1]
    assert "SCF" in result.level.failures[0][1]
    assert result.x.shape[0] == 3
    torch.testing.assert_close(result.x, ensemble.x[[0, 2, 3]])
    assert torch.isfinite(result.log_w).all()
    assert math.isclose(float(torch.softmax(result.log_w, 0).sum()), 1.0)


def test_every_conformer_failing_is_an_error():
    molecule, ensemble = _conformer_ensemble()
    xtb = XTBEnergy.from_molecule(molecule, "gfn2", max_iter=2)
    with pytest.raises(GenerateError, match="failed for all 4 conformers"):
        reweight_to_level(ensemble, xtb, 300.0)


def test_level_torsional_energy_is_xtb_at_the_written_conformers():
    from confflow.coordinates import TorsionalEmbedding
    from confflow.energies import LevelTorsionalEnergy, TorsionalEnergy

    molecule, ensemble = _conformer_ensemble()
    embedding = TorsionalEmbedding(molecule, ensemble.x[0].float())
    torsional = TorsionalEnergy(MMFFEnergy(molecule.rdkit_mol).double(), embedding, 2).double()
    xtb = XTBEnergy.from_molecule(molecule, "gfn2")
    level = LevelTorsionalEnergy(torsional, xtb)
    theta = embedding.project(ensemble.x[[0, 2, 3]]).double()
    expected = xtb.energy(torsional.positions(theta))
    torch.testing.assert_close(level.energy(theta), expected, rtol=0, atol=1e-8)
    # the gradient holds the relaxed local structure: finite differences at that structure
    relaxation = torsional.relaxation
    local = relaxation.relax(theta)
    theta = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(level.energy(theta).sum(), theta)

    def at(t: torch.Tensor) -> torch.Tensor:
        x, _ = embedding.ic(relaxation.internal(t, local))
        return xtb.energy(x)

    step = 1e-5
    for k in range(theta.shape[1]):
        shift = torch.zeros_like(theta)
        shift[:, k] = step
        with torch.no_grad():
            diff = (at(theta + shift) - at(theta - shift)) / (2 * step)
        torch.testing.assert_close(grad[:, k], diff, rtol=1e-4, atol=1e-2)


def _shift_spread(sdf) -> float:
    """Spread of ``log w - log w_ff + (E_gfn2 - E_ff) / kT`` over the records (0 when every
    weight is the force field's moved by the exact energy difference)."""
    shift = [
        float(r.GetProp("log_w"))
        - float(r.GetProp("log_w_force_field"))
        + (float(r.GetProp("energy_gfn2_kJ_mol")) - float(r.GetProp("energy_kJ_mol"))) / kT(300.0)
        for r in Chem.SDMolSupplier(str(sdf), removeHs=False)
    ]
    return max(shift) - min(shift)


def test_rounds_are_short_while_a_full_round_still_fits():
    # 300 s left, 40 s per full evaluation, 10 s per small one: 45 s rounds, then the rest
    assert level._plan(300.0, 40.0, 10.0) == (level.ROUND_SECONDS, False)
    assert level._plan(100.0, 40.0, 10.0) == (60.0, True)
    # below the least round nothing is trained
    assert level._plan(45.0, 40.0, 10.0) == (0.0, True)


def test_refinement_at_the_level_runs_and_is_reported(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    # short rounds of few samples: 20 s hold at least one before the full last round (of at
    # least MIN_ROUND_SECONDS), with up to 6 s for a full evaluation on a slow machine
    monkeypatch.setattr(level, "ROUND_SECONDS", 3.0)
    monkeypatch.setattr(level, "ROUND_SAMPLES", 40)
    # level_ess 1.0: the ESS is always below it, so the refinement runs for its budget
    config = _config(tmp_path / "p.sdf", level="gfn2", level_refine=20.0, level_ess=1.0)
    result = run_generate(config)
    refinement = result.report_data["level"]["refinement"]
    assert refinement["steps"] > 0
    assert 0 < refinement["ess_before"] <= 1
    assert 0 < refinement["ess_force_field_before"] <= 1
    rounds = refinement["rounds"]
    assert rounds and all(r["steps"] > 0 and 0 < r["ess"] <= 1 for r in rounds)
    assert all(0 <= res < 5 for r in rounds for res in r["residual_kT"])
    assert refinement["steps"] == sum(r["steps"] for r in rounds)
    # the ensemble written is the full one of the largest ESS at the level
    assert [r["n"] for r in rounds][-2:] == [40, config.n]
    best = max([refinement["ess_before"]] + [r["ess"] for r in rounds if r["n"] == config.n])
    assert math.isclose(result.report_data["ess"], best, rel_tol=1e-9)
    assert result.report_data["timings_s"]["level_refine"] == refinement["seconds"]
    # the generator's energy is the force field again (it was swapped only while refining)
    assert _shift_spread(result.sdf) < 1e-6


def test_level_settings_are_checked(tmp_path):
    with pytest.raises(GenerateError, match="--level-refine"):
        _config(tmp_path / "x.sdf", level="gfn2", level_refine=-1.0)
    with pytest.raises(GenerateError, match="--level-ess"):
        _config(tmp_path / "x.sdf", level="gfn2", level_ess=0.0)


def test_a_state_mixture_refines_each_fitted_state_and_keeps_exact_weights(tmp_path):
    """Ethoxycyclohexane: chairs with the ether equatorial or axial, and their mirror images."""
    torch.set_num_threads(2)
    config = GenerateConfig(
        "CCOC1CCCCC1",
        tmp_path / "e.sdf",
        budget=4.0,
        md_ns=0.0,
        n=300,
        progress=False,
        device="cpu",
        level="gfn2",
        level_refine=15.0,
        level_ess=1.0,
    )
    result = run_generate(config)
    report = result.report_data
    assert report["model"] == "states"
    rounds = report["level"]["refinement"]["rounds"]
    assert rounds and all(0 < len(r["residual_kT"]) <= len(report["states"]) for r in rounds)
    assert math.isclose(sum(s["population"] for s in report["states"]), 1.0, rel_tol=1e-9)
    assert _shift_spread(result.sdf) < 1e-6
