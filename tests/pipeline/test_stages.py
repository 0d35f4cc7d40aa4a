"""The stages called in-process, one after the other (no cluster)."""

import dataclasses
import json

import pytest

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
