"""The stages called in-process, one after the other (no cluster)."""

import dataclasses
import json

import pytest
from rdkit import Chem

from confflow.generate import run_generate
from confflow.generate.stages import N_SEEDS
from confflow.pipeline import STAGES
from confflow.pipeline.stages import is_complete


def _run(root, smiles, config):
    state = {
        "name": "m",
        "smiles": smiles,
        "dir": str(root),
        "key": config.fingerprint(smiles),
        "status": "running",
        "timings": {},
        "metrics": {},
    }
    for stage in STAGES.values():
        state = stage(state, config)
    return state


@pytest.mark.parametrize(
    ("smiles", "reason"),
    [
        ("not-a-smiles", "GenerateError: SMILES 'not-a-smiles': invalid SMILES"),
        ("C[Se]C", "GenerateError: SMILES 'C[Se]C': unsupported element(s) Se (MMFF94 covers"),
    ],
)
def test_failure_is_recorded_and_passes_through_later_stages(tmp_path, tiny, smiles, reason):
    state = _run(tmp_path / "m", smiles, tiny)
    assert state["status"] == "failed"
    assert state["failed_stage"] == "featurize"
    assert state["error"].startswith(reason)
    assert list(state["timings"]) == ["featurize"]
    assert not (tmp_path / "m" / "seeds.npz").exists()


def test_same_settings_reuse_other_settings_incomplete(tmp_path, tiny):
    root = tmp_path / "m"
    first = _run(root, "CCO", tiny)
    assert first["status"] == "done", first.get("error")
    assert first["metrics"]["train_nll_steps"] > 0
    assert first["metrics"]["n_kept"] + first["metrics"]["stereo_rejected"] <= tiny.n_samples
    again = _run(root, "CCO", tiny)
    assert again["reused"] == list(STAGES)
    record = json.loads((root / "result.json").read_text())
    assert record["key"] == tiny.fingerprint("CCO")
    assert set(record["files"]) >= {"ensemble.sdf", "train/model.pt", "samples.npz"}
    assert is_complete(root, tiny.fingerprint("CCO")) == record
    # other settings: the folder is not complete for them, so every stage would run again
    more = dataclasses.replace(tiny, n_samples=tiny.n_samples + 8)
    assert is_complete(root, more.fingerprint("CCO")) is None


def test_reference_md_feeds_training(tmp_path, tiny):
    config = dataclasses.replace(tiny, md_ns=0.002, replicas=1)
    state = _run(tmp_path / "m", "CCO", config)
    assert state["status"] == "done", state.get("error")
    assert state["metrics"]["reference"] == "md"
    assert state["metrics"]["n_reference"] >= 2
    assert (tmp_path / "m" / "md" / "metadata.json").exists()


def test_pipeline_record_matches_generate_report(tmp_path, tiny):
    """One molecule through the pipeline's tasks and through ``run_generate``, same settings:
    the same report fields and SD tags, and the same seed-determined values."""
    config = dataclasses.replace(tiny, n_seeds=N_SEEDS, unique=0.05, bootstrap=20)
    root = tmp_path / "m"
    state = _run(root, "CCCO", config)
    assert state["status"] == "done", state.get("error")
    generated = run_generate(config.generate_config("CCCO", tmp_path / "generate.sdf"))
    ours = json.loads((root / "ensemble.json").read_text())
    theirs = json.loads(generated.report.read_text())
    assert set(ours) == set(theirs)
    assert set(ours["training"]) == set(theirs["training"])
    assert set(ours["config"]) == set(theirs["config"])
    assert {tuple(sorted(c)) for c in ours["clusters"]} == {tuple(sorted(theirs["clusters"][0]))}
    same = ("smiles", "molecule", "n_atoms", "rotatable_torsions", "temperature_K", "energy")
    same += ("model", "relax_steps", "free_torsions", "n_seeds", "md_frames", "samples_drawn")
    for key in same:
        assert ours[key] == theirs[key], key
    assert ours["model"] == "torsional" and ours["free_torsions"]
    assert ours["n_seeds"] == ours["md_frames"] == N_SEEDS  # no MD: trained on the seeds
    assert {k: v for k, v in ours["config"].items() if k != "out"} == {
        k: v for k, v in theirs["config"].items() if k != "out"
    }
    assert ours["training"]["skipped"] is theirs["training"]["skipped"] is False
    assert set(ours["timings_s"]) == {"featurize", "reference", "train", "sample"}
    # the record carries the report's numbers; both SDFs have the same tags
    record = json.loads((root / "result.json").read_text())
    assert record["metrics"]["ess"] == ours["ess"]
    assert record["metrics"]["records_written"] == ours["records_written"] == len(ours["clusters"])
    tags = [
        set(next(iter(Chem.SDMolSupplier(str(path), removeHs=False))).GetPropNames())
        for path in (root / "ensemble.sdf", generated.sdf)
    ]
    assert tags[0] == tags[1] >= {"weight", "log_population", "free_energy_kT", "cluster_size"}


def test_level_reweights_in_the_reweight_stage(tmp_path, tiny):
    config = dataclasses.replace(tiny, level="gfn2:water", unique=0.05, bootstrap=20)
    assert config.fingerprint("CCO") != tiny.fingerprint("CCO")
    root = tmp_path / "m"
    state = _run(root, "CCO", config)
    assert state["status"] == "done", state.get("error")
    report = json.loads((root / "ensemble.json").read_text())
    assert report["level"]["name"] == "gfn2:water"
    assert report["level"]["failed"] == 0
    assert report["timings_s"]["level"] > 0
    clusters = report["clusters"]
    assert sum(c["population_force_field"] for c in clusters) == pytest.approx(1.0)
    record = next(iter(Chem.SDMolSupplier(str(root / "ensemble.sdf"), removeHs=False)))
    assert record.HasProp("energy_gfn2_kJ_mol") and record.HasProp("log_w_force_field")
