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


def test_same_settings_reuse_and_new_settings_redo(tmp_path, tiny):
    root = tmp_path / "m"
    first = _run(root, "CCO", tiny)
    assert first["status"] == "done", first.get("error")
    assert first["metrics"]["train_nll_steps"] > 0
    assert first["metrics"]["n_kept"] + first["metrics"]["stereo_rejected"] <= tiny.n_samples
    again = _run(root, "CCO", tiny)
    assert again["reused"] == list(STAGES)
    more = dataclasses.replace(tiny, n_samples=tiny.n_samples + 8)
    second = _run(root, "CCO", more)
    assert second["status"] == "done", second.get("error")
    assert "reused" not in second
    assert second["metrics"]["n_drawn"] == tiny.n_samples + 8
    record = json.loads((root / "result.json").read_text())
    assert record["key"] == more.fingerprint("CCO")
    assert set(record["files"]) >= {"ensemble.sdf", "train/model.pt", "samples.npz"}
