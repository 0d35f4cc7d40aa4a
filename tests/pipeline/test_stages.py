"""The stages called in-process, one after the other (no cluster)."""

import dataclasses
import json

import pytest

from confflow.pipeline import STAGES


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
        ("not-a-smiles", "MoleculeError: SMILES 'not-a-smiles': invalid SMILES"),
        ("C[Se]C", "MoleculeError: SMILES 'C[Se]C': MMFF94 has no parameters"),
    ],
)
def test_failure_is_recorded_and_passes_through_later_stages(tmp_path, tiny, smiles, reason):
    state = _run(tmp_path / "m", smiles, tiny)
    assert state["status"] == "failed"
    assert state["failed_stage"] == "featurize"
    assert state["error"].startswith(reason)
    assert list(state["timings"]) == ["featurize"]
    assert not (tmp_path / "m" / "seeds.npz").exists()


def test_new_settings_retrain_from_scratch_and_same_settings_reuse(tmp_path, tiny):
    root = tmp_path / "m"
    first = _run(root, "CCO", tiny)
    assert first["status"] == "done" and first["metrics"]["train_steps"] == tiny.steps
    again = _run(root, "CCO", tiny)
    assert again["reused"] == list(STAGES)
    # another flow architecture: the old checkpoint must not be resumed (it would not load)
    wider = dataclasses.replace(tiny, layers=4, steps=tiny.steps + 2)
    second = _run(root, "CCO", wider)
    assert second["status"] == "done", second.get("error")
    assert "reused" not in second
    assert second["metrics"]["train_steps"] == tiny.steps + 2
    assert second["metrics"]["train_resumed_from"] is None
    record = json.loads((root / "result.json").read_text())
    assert record["key"] == wider.fingerprint("CCO")
    assert set(record["files"]) >= {"ensemble.sdf", "train/checkpoint.pt", "samples.npz"}
