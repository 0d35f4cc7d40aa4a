r"""Umbrella sampling along one torsion: the windows, running them, and reading them back.

Basins separated by a barrier of many kT, such as phi > 0 and phi < 0 of alanine dipeptide,
exchange rarely in plain MD, so the free energy between them converges slowly: at 300 K plain
``aldp`` MD stays in phi < 0 for 10 ns, and 2.6 ns of 4-replica exchange still leave an error
of 0.5 kT. Umbrella sampling runs one Langevin MD per window :math:`k` with a harmonic
restraint on the torsion :math:`\theta(x)`,

.. math:: B_k(x) = \tfrac{1}{2} K\, d(\theta(x), \theta_k)^2,

with :math:`d` the periodic difference in rad (:math:`|d| \le \pi`), :math:`K` in
kJ/mol/rad\ :sup:`2` and centres :math:`\theta_k` evenly spaced over the circle, and MBAR
(:mod:`confflow.md.mbar`) removes the biases. Every window is ordinary OpenMM MD of the System
plus a ``CustomTorsionForce`` (same integrator, run directories and resume as
:func:`~confflow.md.run_md`; stored energies include the bias). A chain runs the windows one
after another around the circle, each starting from the last frame of the previous one and
minimised under its own restraint. Several independent chains (own seeds; odd chains go around
the circle the other way, so they meet every barrier from the other side) can run side by side
in worker processes; MBAR pools them, and their separate estimates check the error bar.

The free energy of torsion basins and its block-bootstrap error come from
:func:`~confflow.md.umbrella_analysis.umbrella_free_energy` (also importable from here).

Cost: ``n_chains x n_windows x (ns + equilibration)`` of MD; with the Reference platform
``aldp`` runs at about 2,500 ns/day per core.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import mdtraj
import numpy as np
import openmm

from confflow import __version__
from confflow.atomic import write_text
from confflow.md.config import MDConfig, MDInputError, choose_platform
from confflow.md.io import read_frames
from confflow.md.langevin import GAS_CONSTANT
from confflow.md.runner import MDResult, run_md
from confflow.md.systems import MDSystem
from confflow.md.umbrella_analysis import UmbrellaEstimate, umbrella_free_energy

__all__ = [
    "UmbrellaConfig",
    "UmbrellaEstimate",
    "UmbrellaResult",
    "biased_system",
    "read_umbrella",
    "run_umbrella",
    "umbrella_free_energy",
]

_SETTINGS = "umbrella.json"
_TWO_PI = 2.0 * math.pi
_BIAS = "0.5*k_umbrella*d^2; d = min(dt, 6.283185307179586 - dt); dt = abs(theta - theta0)"


@dataclass(frozen=True)
class UmbrellaConfig:
    """Windows of an umbrella-sampling run along one torsion.

    Attributes:
        atoms: the torsion's four atom indices (0-based).
        n_windows: windows, centred at ``-pi + (k + 1/2) 2 pi / n_windows`` rad.
        force_constant: restraint constant ``K`` in kJ/mol/rad^2 (the default holds a window
            to about 6 degrees at 300 K and overlaps 10-degree neighbours well).
        n_chains: independent chains over all windows (own seeds, alternate directions).
    """

    atoms: tuple[int, int, int, int]
    n_windows: int = 36
    force_constant: float = 200.0
    n_chains: int = 1

    def __post_init__(self) -> None:
        if len(self.atoms) != 4 or len(set(self.atoms)) != 4 or min(self.atoms) < 0:
            raise MDInputError(f"atoms: need four distinct atom indices >= 0, got {self.atoms}")
        if self.n_windows < 2:
            raise MDInputError(f"n_windows: need at least 2 windows, got {self.n_windows}")
        if not self.force_constant > 0:
            raise MDInputError(f"force_constant: must be positive, got {self.force_constant}")
        if self.n_chains < 1:
            raise MDInputError(f"n_chains: need at least 1 chain, got {self.n_chains}")

    def centers(self) -> np.ndarray:
        """``[n_windows]`` window centres in rad, ascending in ``(-pi, pi)``."""
        return -math.pi + (np.arange(self.n_windows) + 0.5) * _TWO_PI / self.n_windows

    def bias_kt(self, theta: np.ndarray, temperature: float) -> np.ndarray:
        """Reduced biases ``[n_windows, T]`` (kT at ``temperature`` K) of torsions ``theta [T]``."""
        d = np.asarray(theta, dtype=np.float64)[None, :] - self.centers()[:, None]
        d = (d + math.pi) % _TWO_PI - math.pi
        return 0.5 * self.force_constant * d**2 / (GAS_CONSTANT * temperature)

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return {
            "atoms": list(self.atoms),
            "n_windows": self.n_windows,
            "force_constant": self.force_constant,
            "n_chains": self.n_chains,
        }

    def seed(self, base: int, chain: int, window: int) -> int:
        """The integrator seed of ``window`` in ``chain``, distinct over the whole run."""
        return base + chain * self.n_windows + window


def biased_system(md_system: MDSystem, atoms: tuple[int, ...], center: float, k: float) -> MDSystem:
    """A copy of ``md_system`` with a harmonic torsion restraint added.

    Args:
        md_system: the unbiased system (left unchanged).
        atoms: the torsion's four atom indices.
        center: restraint centre in rad.
        k: force constant in kJ/mol/rad^2.

    Raises:
        MDInputError: an atom index outside the system.
    """
    n = md_system.system.getNumParticles()
    if max(atoms) >= n:
        raise MDInputError(f"atoms: torsion {tuple(atoms)} is outside the {n}-atom system")
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(md_system.system))
    force = openmm.CustomTorsionForce(_BIAS)
    force.addPerTorsionParameter("k_umbrella")
    force.addPerTorsionParameter("theta0")
    force.addTorsion(*[int(a) for a in atoms], [k, center])
    system.addForce(force)
    name = f"{md_system.name} + umbrella({math.degrees(center):.1f} deg, {k:g} kJ/mol/rad^2)"
    return replace(md_system, name=name, system=system)


def _window_dir(out: Path, chain: int, k: int) -> Path:
    return out / f"chain_{chain}" / f"window_{k:03d}"


def _chain(centers: np.ndarray, theta_start: float, backwards: bool) -> list[int]:
    """Window order around the circle from the centre closest to ``theta_start``.

    Ascending angles, or descending ones with ``backwards``.
    """
    d = np.abs((centers - theta_start + math.pi) % _TWO_PI - math.pi)
    first = int(np.argmin(d))
    step = -1 if backwards else 1
    return [(first + step * i) % len(centers) for i in range(len(centers))]


def _torsion(positions: np.ndarray, atoms: tuple[int, ...]) -> np.ndarray:
    """Torsion ``[T]`` in rad of positions ``[T, N, 3]`` nm."""
    traj = mdtraj.Trajectory(np.asarray(positions, dtype=np.float32), None)
    return mdtraj.compute_dihedrals(traj, [list(atoms)], periodic=False)[:, 0].astype(np.float64)


@dataclass(frozen=True)
class UmbrellaResult:
    """What an umbrella-sampling run produced.

    Attributes:
        directory: the run directory (``umbrella.json`` and ``chain_C/window_KKK/`` run
            directories).
        windows: the window runs, chain by chain, each chain in centre order.
        n_frames: frames over all windows.
        wall_s: MD wall time of this invocation in s, summed over the windows.
    """

    directory: Path
    windows: tuple[MDResult, ...]
    n_frames: int
    wall_s: float


def _run_chain(
    md_system: MDSystem,
    config: MDConfig,
    umbrella: UmbrellaConfig,
    out: Path,
    chain: int,
    progress: bool,
) -> list[MDResult]:
    """Runs (or finishes) one chain; its window runs in centre order."""
    centers = umbrella.centers()
    theta0 = float(_torsion(md_system.positions[None], umbrella.atoms)[0])
    results: dict[int, MDResult] = {}
    start = md_system.positions
    for k in _chain(centers, theta0, backwards=chain % 2 == 1):
        window = biased_system(
            md_system, umbrella.atoms, float(centers[k]), umbrella.force_constant
        )
        directory = _window_dir(out, chain, k)
        results[k] = run_md(
            replace(window, positions=start),
            replace(config, seed=umbrella.seed(config.seed, chain, k)),
            directory,
            resume=(directory / "metadata.json").exists(),
            progress=progress,
        )
        start = read_frames(results[k].trajectory).positions[-1].astype(np.float64)
    return [results[k] for k in range(len(centers))]


def run_umbrella(
    md_system: MDSystem,
    config: MDConfig,
    umbrella: UmbrellaConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    workers: int = 1,
) -> UmbrellaResult:
    """Runs every window of every chain (``config`` each) into ``out``.

    Window ``k`` of chain ``c`` uses the seed ``umbrella.seed(config.seed, c, k)``.

    Args:
        md_system: the unbiased system and its starting positions.
        config: settings of each window (length, stride, equilibration, platform, seed).
        umbrella: torsion, windows and chains.
        out: run directory.
        resume: finish an interrupted run; complete windows are kept as they are.
        progress: progress bar per window on stderr (only with one worker).
        workers: chains run side by side in this many worker processes (one core each with
            the Reference platform); 1 runs them one after another in this process.

    Raises:
        MDInputError: bad settings, an unwritable ``out``, a fresh start over an existing run,
            or a resume with other settings.
    """
    if workers < 1:
        raise MDInputError(f"workers: need at least 1, got {workers}")
    out = Path(out)
    settings = {
        "system": md_system.name,
        "umbrella": umbrella.as_dict(),
        "config": config.as_dict(),
        "confflow_version": __version__,
    }
    path = out / _SETTINGS
    if path.exists():
        stored = json.loads(path.read_text())
        if not resume:
            raise MDInputError(
                f"out: {out} already holds an umbrella run; pass resume to finish it"
            )
        same = {k: stored.get(k) for k in ("system", "umbrella", "config")}
        if same != {k: settings[k] for k in same}:
            raise MDInputError(f"resume: the umbrella run in {out} has other settings")
    else:
        try:
            write_text(path, json.dumps(settings, indent=2))  # creates ``out``
        except OSError as err:
            raise MDInputError(f"out: cannot write {out}: {err.strerror or err}") from err
    # the restraint is a custom force, which would send "auto" to the CPU platform; one small
    # torsion term does not change which platform is fastest for the system itself
    config = replace(config, platform=choose_platform(config.platform, md_system.system))
    chains = range(umbrella.n_chains)
    workers = min(workers, umbrella.n_chains)
    if workers == 1:
        runs = [_run_chain(md_system, config, umbrella, out, c, progress) for c in chains]
    else:
        # spawn: a fork would copy OpenMM and torch thread pools into the children
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_run_chain, md_system, config, umbrella, out, c, False) for c in chains
            ]
            runs = [future.result() for future in futures]
    windows = tuple(w for run in runs for w in run)
    return UmbrellaResult(
        out, windows, sum(w.n_frames for w in windows), sum(w.wall_s for w in windows)
    )


def read_umbrella(
    out: str | Path, chains: Sequence[int] | None = None
) -> tuple[UmbrellaConfig, float, list[np.ndarray]]:
    """The settings, temperature (K) and per-window torsion series (rad) of a finished run.

    Args:
        out: the run directory.
        chains: read these chains (default: all); a window's series is the concatenation of
            its chains' series, chain by chain (pass ``n_segments=len(chains)`` to
            :func:`umbrella_free_energy`).

    Raises:
        MDInputError: not an umbrella run, an unknown chain, or a window without its trajectory.
    """
    out = Path(out)
    if not (out / _SETTINGS).exists():
        raise MDInputError(f"umbrella: {out} holds no umbrella run ({_SETTINGS} missing)")
    stored = json.loads((out / _SETTINGS).read_text())
    cfg = stored["umbrella"]
    umbrella = UmbrellaConfig(
        tuple(cfg["atoms"]), cfg["n_windows"], cfg["force_constant"], cfg.get("n_chains", 1)
    )
    chains = range(umbrella.n_chains) if chains is None else list(chains)
    if not chains or not set(chains) <= set(range(umbrella.n_chains)):
        raise MDInputError(f"chains: {list(chains)} not among the {umbrella.n_chains} of {out}")
    series = []
    for k in range(umbrella.n_windows):
        parts = []
        for chain in chains:
            trajectory = _window_dir(out, chain, k) / "trajectory.h5"
            if not trajectory.exists():
                raise MDInputError(
                    f"umbrella: window {k} of chain {chain} in {out} is not finished ({trajectory})"
                )
            parts.append(_torsion(read_frames(trajectory).positions, umbrella.atoms))
        series.append(np.concatenate(parts))
    return umbrella, float(stored["config"]["temperature"]), series
