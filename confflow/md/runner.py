"""Drive plain MD or replica exchange into a run directory, chunk by chunk, with resume.

Example:
    >>> from confflow.md import MDConfig, named_system, run_md
    >>> result = run_md(named_system("aldp"), MDConfig(ns=0.002, stride_ps=0.1), "out")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from confflow.md.config import MDConfig, ReplicaConfig, choose_platform
from confflow.md.io import Frames, RunDirectory
from confflow.md.langevin import LangevinDriver
from confflow.md.replica_exchange import ReplicaExchangeDriver
from confflow.md.systems import MDSystem

__all__ = ["MDResult", "run_md"]


class _Driver(Protocol):
    def start(self) -> None: ...
    def restore(self, state: dict[str, np.ndarray]) -> None: ...
    def checkpoint(self) -> dict[str, np.ndarray]: ...
    def advance(self, n_frames: int, first_frame: int) -> Frames: ...
    def summary(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class MDResult:
    """What a finished run produced.

    Attributes:
        trajectory: path of ``trajectory.h5`` (mdtraj HDF5, nm).
        metadata: path of ``metadata.json``.
        n_frames: frames in the trajectory.
        wall_s: wall time of this invocation in s (0 when the run was already complete).
        ns_per_day: simulated ns per day of wall time in this invocation (all replicas
            together count once; NaN when nothing ran).
        summary: extra driver results, e.g. replica-exchange acceptance rates.
    """

    trajectory: Path
    metadata: Path
    n_frames: int
    wall_s: float
    ns_per_day: float
    summary: dict[str, Any] = field(default_factory=dict)


def _describe(md_system: MDSystem, config: MDConfig, replicas: ReplicaConfig | None) -> dict:
    return {
        "system": md_system.name,
        "forcefield": md_system.forcefield,
        "n_atoms": md_system.topology.n_atoms,
        "integrator": "openmm.LangevinMiddleIntegrator",
        "platform": choose_platform(config.platform, md_system.system),
        "method": "replica-exchange" if replicas else "langevin",
        "config": config.as_dict(),
        "replicas": replicas.as_dict() if replicas else None,
        "stride_steps": config.stride_steps,
        "n_frames": config.n_frames,
        "units": {"positions": "nm", "time": "ps", "energy": "kJ/mol", "temperature": "K"},
    }


def _progress(enabled: bool):
    """A rich progress bar on stderr (rich is imported lazily)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("MD"),
        BarColumn(),
        TextColumn("{task.completed:.3f}/{task.total:.3f} ns"),
        TextColumn("{task.fields[rate]:>8.0f} ns/day"),
        TimeRemainingColumn(),
        disable=not enabled,
        console=Console(file=sys.stderr),
    )
    return progress


def run_md(
    md_system: MDSystem,
    config: MDConfig,
    out: str | Path,
    *,
    replicas: ReplicaConfig | None = None,
    resume: bool = False,
    progress: bool = False,
) -> MDResult:
    """Runs Langevin MD (or replica exchange) and writes a run directory.

    Args:
        md_system: system and starting positions.
        config: run settings (temperature, length, stride, platform, seed).
        out: output directory; see :mod:`confflow.md.io` for its layout.
        replicas: run temperature replica exchange with this ladder instead of plain MD.
        resume: continue the (interrupted) run in ``out`` from its last committed chunk; a
            complete run is returned as is.
        progress: show a progress bar with ns/day on stderr.

    Returns:
        The :class:`MDResult`.

    Raises:
        MDInputError: bad settings, an unwritable ``out``, a fresh start over an existing run,
            or a resume that does not match the stored run.
    """
    run = _describe(md_system, config, replicas)
    directory = RunDirectory(out, md_system.topology, run)
    stored = directory.read_metadata()
    if resume and stored.get("complete") and directory.trajectory_path.exists():
        directory.check_resumable(stored)
        return MDResult(
            directory.trajectory_path,
            directory.metadata_path,
            int(stored["n_frames_done"]),
            0.0,
            float("nan"),
            stored.get("summary", {}),
        )
    driver: _Driver = (
        ReplicaExchangeDriver(md_system, config, replicas)
        if replicas
        else LangevinDriver(md_system, config)
    )
    t0 = time.perf_counter()
    chunk, done, state = directory.start(resume)
    driver.start() if state is None else driver.restore(state)
    frames_run = 0
    ns_per_frame = config.stride_ps * 1e-3
    bar = _progress(progress)
    with bar:
        task = bar.add_task(
            "md", total=config.n_frames * ns_per_frame, completed=done * ns_per_frame, rate=0.0
        )
        t_prod = time.perf_counter()
        while done < config.n_frames:
            n = min(config.chunk_frames, config.n_frames - done)
            frames = driver.advance(n, first_frame=done)
            directory.write_chunk(chunk, frames, driver.checkpoint())
            chunk, done, frames_run = chunk + 1, done + n, frames_run + n
            directory.write_metadata(complete=False, n_frames_done=done)
            rate = frames_run * ns_per_frame * 86400.0 / (time.perf_counter() - t_prod)
            bar.update(task, completed=done * ns_per_frame, rate=rate)
    wall = time.perf_counter() - t0
    elapsed = time.perf_counter() - t_prod
    ns_per_day = frames_run * ns_per_frame * 86400.0 / elapsed if frames_run else float("nan")
    summary = driver.summary()
    trajectory = directory.finish(
        summary=summary, wall_s_last_invocation=wall, ns_per_day=ns_per_day
    )
    return MDResult(trajectory, directory.metadata_path, done, wall, ns_per_day, summary)
