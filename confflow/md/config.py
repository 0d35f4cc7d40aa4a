"""Run settings for Langevin MD and replica exchange, validated once at the edge.

Times are given in the units people think in (fs for the time step, ps for strides, ns for run
lengths) and converted to integer step counts here, so the drivers only see steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import openmm

from confflow.errors import InputError

__all__ = [
    "MDConfig",
    "MDInputError",
    "ReplicaConfig",
    "choose_platform",
]


class MDInputError(InputError):
    """A run setting or input confflow cannot use; the message names the input and the cause."""


def choose_platform(name: str, system: openmm.System) -> str:
    """Resolves ``"auto"`` to a platform for ``system``; other names pass through.

    Measured on a 2-core x86-64 CPU, idle (``benchmarks/md.py``, see benchmarks/README.md):
    the Reference platform is 2-40x faster than CPU for alanine dipeptide with standard forces
    and for MMFF94 systems of 33-65 atoms (custom bonded and non-bonded forces), while a
    ``CustomGBForce`` (the ff96 OBC1 solvent of ``aldp-ff96``) runs 1.7x faster on CPU.
    ``"auto"`` picks CUDA when present, else CPU for systems with a ``CustomGBForce``, else
    Reference.
    """
    if name != "auto":
        return name
    # imported here: confflow.energies loads torch, which a bare `import confflow.md` does not
    from confflow.energies.bridge import available_platforms

    platforms = available_platforms()
    if "CUDA" in platforms:
        return "CUDA"
    custom_gb = any(isinstance(f, openmm.CustomGBForce) for f in system.getForces())
    return "CPU" if custom_gb and "CPU" in platforms else "Reference"


@dataclass(frozen=True)
class MDConfig:
    """Settings of one Langevin MD run (OpenMM ``LangevinMiddleIntegrator``).

    Attributes:
        temperature: bath temperature in K.
        ns: production length in ns (after equilibration).
        timestep_fs: integration time step in fs.
        friction_per_ps: Langevin collision rate in 1/ps.
        stride_ps: time between stored frames in ps.
        chunk_frames: frames per atomic output chunk (one checkpoint per chunk).
        equilibration_ps: unrecorded MD before the first frame, in ps.
        minimize: minimise the starting structure with OpenMM before equilibration.
        platform: OpenMM platform name, or ``"auto"`` (see :func:`choose_platform`).
        seed: seed of the integrator's random numbers and of the initial velocities (>= 1).
    """

    temperature: float = 300.0
    ns: float = 1.0
    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    stride_ps: float = 1.0
    chunk_frames: int = 100
    equilibration_ps: float = 10.0
    minimize: bool = True
    platform: str = "auto"
    seed: int = 1

    def __post_init__(self) -> None:
        positive = ("temperature", "ns", "timestep_fs", "friction_per_ps", "stride_ps")
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise MDInputError(f"{name}: must be positive, got {value}")
        if self.equilibration_ps < 0:
            raise MDInputError(
                f"equilibration_ps: must be zero or positive, got {self.equilibration_ps}"
            )
        if self.chunk_frames < 1:
            raise MDInputError(f"chunk_frames: must be >= 1, got {self.chunk_frames}")
        if self.seed < 1:
            raise MDInputError(f"seed: must be >= 1 (OpenMM treats 0 as random), got {self.seed}")
        # imported here: confflow.energies loads torch, which a bare `import confflow.md` does not
        from confflow.energies.bridge import available_platforms

        if self.platform != "auto" and self.platform not in available_platforms():
            raise MDInputError(
                f"platform: OpenMM platform {self.platform!r} is not available here; "
                f"choose auto or one of {', '.join(available_platforms())}"
            )
        if self.stride_steps < 1:
            raise MDInputError(
                f"stride_ps: {self.stride_ps} ps is shorter than one {self.timestep_fs} fs step"
            )
        if self.n_frames < 1:
            raise MDInputError(
                f"ns: {self.ns} ns is shorter than one frame stride ({self.stride_ps} ps)"
            )

    @property
    def stride_steps(self) -> int:
        """Integration steps between stored frames."""
        return round(self.stride_ps * 1000.0 / self.timestep_fs)

    @property
    def n_frames(self) -> int:
        """Number of stored frames, ``floor(ns / stride)``."""
        return int(self.ns * 1e6 / self.timestep_fs + 1e-6) // self.stride_steps

    @property
    def equilibration_steps(self) -> int:
        """Unrecorded steps before the first frame."""
        return round(self.equilibration_ps * 1000.0 / self.timestep_fs)

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReplicaConfig:
    """Temperature replica exchange on top of an :class:`MDConfig`.

    The ``MDConfig`` temperature is the lowest rung and the replica written out.

    Attributes:
        n_replicas: number of temperatures (>= 2).
        t_max: highest temperature in K; the ladder is geometric from ``MDConfig.temperature``.
        exchange_ps: time between exchange attempts in ps; the frame stride must be a multiple.
    """

    n_replicas: int = 4
    t_max: float = 1000.0
    exchange_ps: float = 1.0

    def __post_init__(self) -> None:
        if self.n_replicas < 2:
            raise MDInputError(
                f"n_replicas: a temperature ladder needs at least 2 replicas, got {self.n_replicas}"
            )
        if not self.t_max > 0:
            raise MDInputError(f"t_max: must be positive, got {self.t_max}")
        if not self.exchange_ps > 0:
            raise MDInputError(f"exchange_ps: must be positive, got {self.exchange_ps}")

    def exchange_steps(self, md: MDConfig) -> int:
        """Steps between exchange attempts, checked against ``md``'s time step and stride.

        Raises:
            MDInputError: the ladder does not rise above ``md.temperature``, or the stride is
                not a whole multiple of the exchange interval.
        """
        if not self.t_max > md.temperature:
            raise MDInputError(
                f"t_max: {self.t_max} K must exceed the target temperature {md.temperature} K"
            )
        steps = round(self.exchange_ps * 1000.0 / md.timestep_fs)
        if steps < 1 or md.stride_steps % steps:
            raise MDInputError(
                f"exchange_ps: the frame stride ({md.stride_ps} ps) must be a whole multiple of "
                f"the exchange interval ({self.exchange_ps} ps)"
            )
        return steps

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)
