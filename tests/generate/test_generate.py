"""End-to-end tests of ``confflow generate`` on small molecules with tiny budgets.

One run per model (2-pentanol: a stereocentre, rotatable torsions; Cartesian, torsional with
the local structure relaxed at each torsion set (the default) and torsional at the frozen local
structure) is shared by the checks of its outputs; the SDF is read back with RDKit and its energies
re-evaluated with RDKit's MMFF94.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from confflow.generate import GenerateConfig, GenerateError, run_generate
from confflow.generate.molecule import load_molecule, rotatable_torsions
from confflow.generate.stages import COMPILE_MIN_BUDGET, start_compiling
from confflow.md.io import read_frames

SMILES = "C[C@H](O)CCC"
KJ_PER_KCAL = 4.184


def _config(out, **kw) -> GenerateConfig:
    settings = {"budget": 4.0, "md_ns": 0.004, "n": 300, "progress": False, "device": "cpu"}
    return GenerateConfig(SMILES, out, **{**settings, **kw})


@pytest.fixture(scope="module", params=["cartesian", "torsional", "frozen"])
def run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "pentanol.sdf"
    torch.set_num_threads(1)
    if request.param == "frozen":
        return run_generate(_config(out, model="torsional", relax_steps=0))
    return run_generate(_config(out, model=request.param))


def _records(run) -> list[Chem.Mol]:
    return list(Chem.SDMolSupplier(str(run.sdf), removeHs=False))


def _bond_lengths(records: list[Chem.Mol]) -> torch.Tensor:
    """``[R, bonds]`` bond lengths in Angstrom of SDF records."""
    return torch.tensor(
        [
            [
                Chem.rdMolTransforms.GetBondLength(
                    r.GetConformer(), b.GetBeginAtomIdx(), b.GetEndAtomIdx()
                )
                for b in r.GetBonds()
            ]
            for r in records
        ]
    )


def test_every_record_is_readable_and_tagged(run):
    records = list(Chem.SDMolSupplier(str(run.sdf), removeHs=False))
    assert len(records) == run.n_written > 0
    assert all(r is not None for r in records)
    for name in ("energy_kJ_mol", "log_q", "log_w", "weight"):
        assert all(r.HasProp(name) for r in records), name


def test_energies_match_rdkit_mmff(run):
    for rec in list(Chem.SDMolSupplier(str(run.sdf), removeHs=False))[:50]:
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(rec)
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(rec, props)
        expected = ff.CalcEnergy()
        assert float(rec.GetProp("energy_kJ_mol")) / KJ_PER_KCAL == pytest.approx(
            expected, abs=1e-3
        )


def test_weights_are_normalised_and_match_log_weights(run):
    records = list(Chem.SDMolSupplier(str(run.sdf), removeHs=False))
    w = torch.tensor([float(r.GetProp("weight")) for r in records], dtype=torch.float64)
    log_w = torch.tensor([float(r.GetProp("log_w")) for r in records], dtype=torch.float64)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-9)
    torch.testing.assert_close(w, torch.softmax(log_w, 0), rtol=1e-9, atol=1e-12)


def test_log_w_is_minus_reduced_energy_minus_log_q(run):
    rec = next(iter(Chem.SDMolSupplier(str(run.sdf), removeHs=False)))
    kt = 8.314462618e-3 * 300.0
    expected = -float(rec.GetProp("energy_kJ_mol")) / kt - float(rec.GetProp("log_q"))
    assert float(rec.GetProp("log_w")) == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_written_conformers_keep_the_input_stereo(run):
    want = Chem.FindMolChiralCenters(Chem.MolFromSmiles(SMILES), useLegacyImplementation=False)
    for rec in Chem.SDMolSupplier(str(run.sdf), removeHs=False):
        Chem.AssignStereochemistryFrom3D(rec)
        got = Chem.FindMolChiralCenters(rec, useLegacyImplementation=False)
        assert got == want


def test_report_contents(run):
    report = json.loads(run.report.read_text())
    for key in ("ess", "target_evaluations", "wall_s", "stereo_rejected", "config", "versions"):
        assert key in report, key
    assert set(report["timings_s"]) >= {"molecule", "seeds", "md", "training", "sampling"}
    assert 0 < report["ess"] <= 1
    assert report["samples_kept"] + report["stereo_rejected"] + report["nonfinite_rejected"] == 300
    assert report["target_evaluations"] >= 300
    assert report["config"]["smiles"] == SMILES
    assert report["records_written"] == run.n_written
    assert report["model"] == report["config"]["model"]
    assert report["compiled_mmff"] is False  # a 4 s budget is too short to compile for


def test_training_positions_are_the_md_frames_and_the_seeds(run):
    report = json.loads(run.report.read_text())
    md_dir = run.sdf.with_name(run.sdf.stem + "_run") / "md"
    frames = read_frames(next(md_dir.glob("*.h5"))).positions.shape[0]
    assert frames >= 10
    assert report["md_frames"] == frames + report["n_seeds"]


def test_frozen_torsional_records_share_the_reference_local_structure(run):
    """Frozen torsional samples differ only in their free torsions: bond lengths are the same."""
    report = run.report_data
    if report["model"] != "torsional" or report["relax_steps"] > 0:
        pytest.skip("bonds vary in Cartesian and relaxed torsional samples")
    assert len(report["free_torsions"]) == 5  # C-C, C-O, C-C, C-C, C-CH3 rotors
    lengths = _bond_lengths(_records(run))
    # SDF coordinates carry 1e-4 Angstrom
    assert float((lengths - lengths[0]).abs().max()) < 5e-4


def test_relaxed_torsional_records_are_near_minima_at_their_torsions(run):
    """Relaxed records: bonds differ between records, and RDKit's minimisation with the free
    torsions held lowers a record's energy by little (the relaxation has done most of it)."""
    report = run.report_data
    if report["model"] != "torsional" or report["relax_steps"] == 0:
        pytest.skip("only relaxed torsional samples are relaxed")
    assert report["relax_steps"] == GenerateConfig.relax_steps  # the default
    records = _records(run)[:20]
    lengths = _bond_lengths(records)
    assert float((lengths - lengths[0]).abs().max()) > 1e-3
    drops = []
    for record in records:
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(record)
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(record, props)
        before = ff.CalcEnergy()
        for quad in report["free_torsions"]:
            angle = Chem.rdMolTransforms.GetDihedralDeg(record.GetConformer(), *quad)
            ff.MMFFAddTorsionConstraint(*quad, False, angle, angle, 100.0)
        ff.Initialize()
        ff.Minimize(maxIts=2000)
        drops.append(before - ff.CalcEnergy())
    assert sorted(drops)[len(drops) // 2] < 0.01  # kcal/mol


def test_checkpoint_reuse_skips_training_and_clusters(run, tmp_path):
    out = tmp_path / "again.sdf"
    again = run_generate(_config(out, checkpoint=run.checkpoint, unique=0.05, bootstrap=20))
    report = again.report_data
    assert report["training"]["skipped"] is True
    assert report["compiled_mmff"] is False  # nothing to train, nothing compiled
    assert report["model"] == run.report_data["model"]
    assert "md" not in report["timings_s"]
    clusters = report["clusters"]
    assert len(clusters) == again.n_written >= 1
    assert sum(c["population"] for c in clusters) == pytest.approx(1.0, abs=1e-9)
    assert clusters[0]["free_energy_kT"] == 0.0
    # populations can underflow float64 (e^-738 is subnormal): compare in log space
    for c in clusters:
        assert c["population"] == pytest.approx(math.exp(c["log_population"]), rel=1e-9, abs=1e-300)
        assert c["log_population"] <= clusters[0]["log_population"] + 1e-12
    for c in clusters[1:]:
        if math.isfinite(c["free_energy_kT"]):
            expected = clusters[0]["log_population"] - c["log_population"]
            assert c["free_energy_kT"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert sum(c["size"] for c in clusters) == report["samples_kept"]
    # one SD record per cluster, tagged with the report's (log) population
    records = _records(again)
    for record, c in zip(records, clusters, strict=True):
        assert float(record.GetProp("log_population")) == c["log_population"]
        assert float(record.GetProp("weight")) == c["population"]


def test_checkpoint_of_another_molecule_is_refused(run, tmp_path):
    config = GenerateConfig("CCCCO", tmp_path / "x.sdf", checkpoint=run.checkpoint, n=10)
    with pytest.raises(GenerateError, match="another molecule or force field"):
        run_generate(config)


def test_rotatable_torsions_of_pentanol():
    assert rotatable_torsions(load_molecule(SMILES)) == [(0, 1, 3, 4), (1, 3, 4, 5)]


def test_auto_model_is_torsional_unless_nothing_rotates(tmp_path):
    from confflow.generate.model import resolve_model

    auto = _config(tmp_path / "x.sdf")
    assert auto.model == "auto"
    assert resolve_model(load_molecule(SMILES), auto) == "torsional"
    assert resolve_model(load_molecule("c1ccccc1"), auto) == "cartesian"
    forced = _config(tmp_path / "x.sdf", model="cartesian")
    assert resolve_model(load_molecule(SMILES), forced) == "cartesian"


def test_compiling_starts_from_its_budget_and_serves_float32(tmp_path):
    molecule = load_molecule(SMILES)
    cpu = torch.device("cpu")
    assert start_compiling(molecule, _config(tmp_path / "a.sdf"), cpu) is None  # 4 s budget
    off = _config(tmp_path / "b.sdf", budget=COMPILE_MIN_BUDGET, compile=False)
    assert start_compiling(molecule, off, cpu) is None
    on = _config(tmp_path / "c.sdf", budget=COMPILE_MIN_BUDGET)
    assert start_compiling(molecule, on, cpu).result(timeout=600) is True
