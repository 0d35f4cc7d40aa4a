"""Langevin MD with OpenMM's ``LangevinMiddleIntegrator``: one Context, seeded, checkpointable.

:class:`LangevinDriver` owns the Context; :func:`confflow.md.runner.run_md` drives it into a
run directory. Positions are snapped to float32 at every stored frame (a change of at most
~1e-7 nm, far below thermal motion) so that the stored float32 frame and its stored energy
belong to exactly the same configuration. Stored potential energies always come from a
double-precision Reference-platform evaluation of the stored frame, whatever platform
integrates (the CPU and CUDA platforms compute energies in single or mixed precision).
"""

from __future__ import annotations

import numpy as np
import openmm
from openmm import unit

from confflow.md.config import MDConfig, choose_platform
from confflow.md.io import Frames
from confflow.md.systems import MDSystem

__all__ = [
    "GAS_CONSTANT",
    "LangevinDriver",
    "degrees_of_freedom",
    "evaluator",
    "frames_from_records",
    "make_context",
    "snapshot",
    "start_context",
]

_KJ_MOL = unit.kilojoule_per_mole

#: Molar gas constant in kJ/(mol K), OpenMM's value (this package does not import torch).
GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(_KJ_MOL / unit.kelvin)


def degrees_of_freedom(system: openmm.System) -> int:
    """Kinetic degrees of freedom: 3 per massive particle, less constraints and CM motion."""
    massive = sum(
        1
        for i in range(system.getNumParticles())
        if system.getParticleMass(i).value_in_unit(unit.dalton) > 0
    )
    dof = 3 * massive - system.getNumConstraints()
    if any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces()):
        dof -= 3
    return dof


def make_context(
    system: openmm.System, temperature: float, config: MDConfig, seed: int
) -> openmm.Context:
    """A Context with a seeded ``LangevinMiddleIntegrator`` at ``temperature`` K."""
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin,
        config.friction_per_ps / unit.picosecond,
        config.timestep_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(seed)
    platform = openmm.Platform.getPlatformByName(choose_platform(config.platform, system))
    return openmm.Context(system, integrator, platform)


def evaluator(system: openmm.System, platform: str) -> openmm.Context | None:
    """A Reference Context for frame energies, or ``None`` when MD already runs on Reference."""
    if platform == "Reference":
        return None
    reference = openmm.Platform.getPlatformByName("Reference")
    return openmm.Context(system, openmm.VerletIntegrator(0.001), reference)


def snapshot(
    context: openmm.Context, dof: int, reference: openmm.Context | None = None
) -> tuple[np.ndarray, float, float, float]:
    """Snaps the Context's positions to float32 and reads one frame.

    Args:
        context: the MD Context.
        dof: kinetic degrees of freedom (:func:`degrees_of_freedom`).
        reference: a Reference Context of the same System for the potential energy
            (:func:`evaluator`); ``None`` uses ``context`` itself.

    Returns:
        ``(positions [N, 3] nm float64, potential kJ/mol, kinetic kJ/mol, temperature K)``.
    """
    state = context.getState(getPositions=True, getEnergy=True)
    kinetic = state.getKineticEnergy().value_in_unit(_KJ_MOL)
    x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    context.setPositions(x)
    energy_context = context if reference is None else reference
    if reference is not None:
        reference.setPositions(x)
    potential = energy_context.getState(getEnergy=True).getPotentialEnergy()
    return x, potential.value_in_unit(_KJ_MOL), kinetic, 2.0 * kinetic / (dof * GAS_CONSTANT)


def start_context(
    context: openmm.Context, x: np.ndarray, temperature: float, config: MDConfig, seed: int
) -> None:
    """Sets ``x`` [N, 3] nm, minimises if asked, draws velocities at ``temperature`` K."""
    context.setPositions(x)
    if config.minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 5000)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)


class LangevinDriver:
    """Langevin MD of one system at ``config.temperature``.

    Args:
        md_system: the system and its starting positions.
        config: run settings.
    """

    def __init__(self, md_system: MDSystem, config: MDConfig) -> None:
        self.config = config
        self.md_system = md_system
        self.context = make_context(md_system.system, config.temperature, config, config.seed)
        self.dof = degrees_of_freedom(md_system.system)
        self.reference = evaluator(md_system.system, self.context.getPlatform().getName())

    def start(self) -> None:
        """Fresh start: positions, optional minimisation, seeded velocities, equilibration."""
        config = self.config
        start_context(
            self.context, self.md_system.positions, config.temperature, config, config.seed
        )
        if self.config.equilibration_steps:
            self.context.getIntegrator().step(self.config.equilibration_steps)

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Restores the Context (positions, velocities, random state) from :meth:`checkpoint`."""
        self.context.loadCheckpoint(state["checkpoint"].tobytes())

    def checkpoint(self) -> dict[str, np.ndarray]:
        """The Context's OpenMM checkpoint as ``{"checkpoint": uint8 array}``."""
        return {"checkpoint": np.frombuffer(self.context.createCheckpoint(), dtype=np.uint8)}

    def advance(self, n_frames: int, first_frame: int) -> Frames:
        """Runs ``n_frames`` strides and returns the frames (frame ``k`` at ``(k+1)`` strides).

        Args:
            n_frames: frames to produce.
            first_frame: index of the first of them in the whole run (for the time axis).
        """
        records = []
        integrator = self.context.getIntegrator()
        for _ in range(n_frames):
            integrator.step(self.config.stride_steps)
            records.append(snapshot(self.context, self.dof, self.reference))
        return frames_from_records(records, first_frame, self.config.stride_ps)

    def summary(self) -> dict[str, object]:
        """Extra metadata for the finished run (none for plain MD)."""
        return {}


def frames_from_records(
    records: list[tuple[np.ndarray, float, float, float]], first_frame: int, stride_ps: float
) -> Frames:
    """Stacks :func:`snapshot` records into :class:`Frames` (frame ``k`` at ``(k+1)`` strides)."""
    return Frames(
        positions=np.stack([r[0] for r in records]),
        time=(first_frame + 1 + np.arange(len(records))) * stride_ps,
        potential_energy=np.array([r[1] for r in records]),
        kinetic_energy=np.array([r[2] for r in records]),
        temperature=np.array([r[3] for r in records]),
    )
