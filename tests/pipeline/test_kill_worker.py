"""A worker process killed with SIGKILL in the middle of training: every molecule completes."""

import dataclasses
import os
import signal
import threading
import time

import pytest
from distributed import Client, LocalCluster

from confflow.pipeline import run_pipeline

from .conftest import write_lines


def _executing(dask_worker) -> list[str]:
    return [str(ts.key) for ts in dask_worker.state.executing]


@pytest.mark.slow
def test_killed_worker_tasks_are_retried(tmp_path, tiny):
    config = dataclasses.replace(tiny, budget=3.0)  # training runs for seconds
    smi = write_lines(tmp_path / "in.smi", ["CCO ethanol", "COC dme", "CC(C)O isopropanol"])
    out = tmp_path / "out"
    result = {}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        thread = threading.Thread(
            target=lambda: result.update(summary=run_pipeline(smi, out, config, client))
        )
        thread.start()
        victim = None
        deadline = time.monotonic() + 240
        while victim is None and thread.is_alive() and time.monotonic() < deadline:
            for address, keys in client.run(_executing).items():
                if any(key.startswith("train-") for key in keys):
                    victim = address
                    break
            else:
                time.sleep(0.2)
        assert victim is not None, "no training task was seen running"
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert victim not in client.scheduler_info()["workers"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    summary = result["summary"]
    assert [r["status"] for r in summary.records] == ["done"] * 3, summary.records
    assert all(r["ess"] is not None for r in summary.records)
