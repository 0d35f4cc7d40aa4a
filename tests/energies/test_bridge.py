import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from confflow.energies.bridge import OpenMMBridge, OpenMMEnergy, available_platforms
from confflow.energies.openmm_torch import OpenMMSystemEnergy
from confflow.energies.systems import alanine_dipeptide

REPO = Path(__file__).resolve().parents[2]
# Generous limits: a loaded 2-core machine needs tens of seconds to start torch in 3 processes.
STARTUP_S, EXIT_S = 240.0, 180.0


@pytest.fixture(scope="module")
def aldp():
    ref = alanine_dipeptide("aldp")
    x = ref.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((6, 22, 3))
    return ref, x


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if not gone(p)]


def test_in_process_bridge_matches_torch_and_gradient_is_minus_forces(aldp):
    ref, x = aldp
    energy = OpenMMEnergy(ref.system)
    xt = torch.as_tensor(x).requires_grad_(True)
    e = energy(xt)
    (grad,) = torch.autograd.grad(e.sum(), xt)
    e2, f2 = energy.energy_and_forces(xt.detach())
    assert torch.equal(e.detach(), e2)
    assert torch.equal(grad, -f2)
    e_torch, f_torch = OpenMMSystemEnergy(ref.system).energy_and_forces(xt.detach())
    assert (e2 - e_torch).abs().max() < 1e-6
    assert (f2 - f_torch).abs().max() < 1e-6
    e32 = energy(xt.detach().float())
    assert e32.dtype == torch.float32


def test_two_workers_match_in_process_and_stop_on_close(aldp):
    ref, x = aldp
    expected = OpenMMBridge(ref.system).energies_and_forces(x)
    with OpenMMBridge(ref.system, n_workers=2) as bridge:
        assert bridge.worker_pids == []  # started lazily
        energies, forces = bridge.energies_and_forces(x)
        pids = bridge.worker_pids
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        assert np.array_equal(energies, expected[0]) and np.array_equal(forces, expected[1])
    assert bridge.worker_pids == []
    assert wait_gone(pids, timeout=30) == []


def test_other_platform_agrees(aldp):
    ref, x = aldp
    platform = next(p for p in available_platforms() if p != "Reference")
    e_ref, f_ref = OpenMMBridge(ref.system).energies_and_forces(x)
    e, f = OpenMMBridge(ref.system, platform=platform).energies_and_forces(x)
    assert np.abs(e - e_ref).max() < 1e-3 * np.abs(e_ref).max()
    assert np.abs(f - f_ref).max() < 1e-3 * np.abs(f_ref).max()


def test_bad_arguments_are_rejected(aldp):
    ref, _ = aldp
    with pytest.raises(ValueError, match="platform 'Nonexistent' is not available"):
        OpenMMBridge(ref.system, platform="Nonexistent")
    with pytest.raises(ValueError, match="n_workers: must be >= 0"):
        OpenMMBridge(ref.system, n_workers=-1)
    with pytest.raises(ValueError, match=r"positions: expected shape \[B, 22, 3\]"):
        OpenMMBridge(ref.system).energies_and_forces(np.zeros((2, 3)))


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from confflow.energies.bridge import OpenMMEnergy
    from confflow.energies.systems import alanine_dipeptide
    import torch

    if __name__ == "__main__":
        mode = sys.argv[1]
        ref = alanine_dipeptide("aldp-vacuum")
        x = torch.as_tensor(np.repeat(ref.positions[None], 64, axis=0))
        energy = OpenMMEnergy(ref.system, n_workers=2)
        energy(x)
        print("PIDS", *energy.bridge.worker_pids, flush=True)
        if mode == "with":
            with energy:
                energy(x)
        elif mode == "exception":
            raise RuntimeError("caller failed")
        elif mode == "interrupt":
            while True:
                energy(x)
        # mode "exit": leave without closing; the interpreter exit must stop the workers
    """
)


def run_script(tmp_path: Path, mode: str, sig: int | None = None) -> tuple[int, list[int], str]:
    script = tmp_path / "caller.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=STARTUP_S), f"caller printed nothing in {STARTUP_S} s"
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), f"no worker pids printed: {line!r} {proc.stderr.read()}"
        pids = [int(p) for p in line.split()[1:]]
        if sig is not None:
            time.sleep(0.5)
            proc.send_signal(sig)
        returncode = proc.wait(timeout=EXIT_S)  # no hang at interpreter exit
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    return returncode, pids, stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["with", "exit", "exception"])
def test_no_worker_survives_the_caller(tmp_path, mode):
    returncode, pids, stderr = run_script(tmp_path, mode)
    assert len(pids) == 2
    assert (returncode != 0) == (mode == "exception"), stderr
    if mode == "exception":
        assert "RuntimeError: caller failed" in stderr
    assert wait_gone(pids) == [], f"workers left behind after mode {mode!r}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_worker_survives_an_interrupted_caller(tmp_path):
    returncode, pids, stderr = run_script(tmp_path, "interrupt", signal.SIGINT)
    assert returncode != 0 and "KeyboardInterrupt" in stderr, stderr
    assert wait_gone(pids) == [], "workers left behind after SIGINT"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_workers_exit_when_the_caller_is_killed(tmp_path):
    returncode, pids, _ = run_script(tmp_path, "interrupt", signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert wait_gone(pids) == [], "workers outlived a killed caller"
