r"""Temperature replica exchange (parallel tempering) with OpenMM Langevin dynamics.

One :class:`openmm.Context` (with its own seeded ``LangevinMiddleIntegrator``) per rung of a
geometric temperature ladder :math:`T_k = T_0 (T_{max}/T_0)^{k/(K-1)}`. Every exchange
interval all replicas advance, then neighbours :math:`(k, k+1)` try to swap configurations,
even pairs and odd pairs on alternate attempts, with the Metropolis probability

.. math:: p = \min\{1, \exp[(\beta_k - \beta_{k+1})(U_k - U_{k+1})]\}.

An accepted swap exchanges positions and velocities, the velocities rescaled by
:math:`\sqrt{T_{new}/T_{old}}`. Configurations move, temperatures stay: Context 0 always
holds the target temperature and is the replica written out.

Cost: ``K`` replicas cost ``K`` times plain MD of the same length (each Context integrates
every step), plus ``K`` energy evaluations and the Python bookkeeping of every exchange. On
alanine dipeptide (``aldp``, Reference platform, one core, swaps every 0.1 ps) 4 replicas
cost 5.5x plain MD per ns of the 300 K replica (benchmarks/README.md, section md).
"""

from __future__ import annotations

import json

import numpy as np
from openmm import unit

from confflow.md.config import MDConfig, ReplicaConfig
from confflow.md.io import Frames
from confflow.md.langevin import (
    GAS_CONSTANT,
    degrees_of_freedom,
    evaluator,
    frames_from_records,
    make_context,
    snapshot,
    start_context,
)
from confflow.md.systems import MDSystem

__all__ = ["ReplicaExchangeDriver", "geometric_ladder"]

_KJ_MOL = unit.kilojoule_per_mole


def geometric_ladder(t_min: float, t_max: float, n: int) -> np.ndarray:
    """``n`` temperatures in K from ``t_min`` to ``t_max``, equal ratios between neighbours."""
    return t_min * (t_max / t_min) ** (np.arange(n) / (n - 1))


class ReplicaExchangeDriver:
    """Parallel tempering of one system; frames come from the lowest temperature.

    Args:
        md_system: the system and its starting positions.
        config: run settings; ``config.temperature`` is the lowest rung and ``config.seed``
            seeds replica ``k``'s integrator with ``seed + k`` and the swap decisions.
        replicas: ladder and exchange interval.

    Raises:
        MDInputError: inconsistent ladder, stride and exchange interval.
    """

    def __init__(self, md_system: MDSystem, config: MDConfig, replicas: ReplicaConfig) -> None:
        self.config = config
        self.md_system = md_system
        self.exchange_steps = replicas.exchange_steps(config)
        self.temperatures = geometric_ladder(
            config.temperature, replicas.t_max, replicas.n_replicas
        )
        self.betas = 1.0 / (GAS_CONSTANT * self.temperatures)
        self.contexts = [
            make_context(md_system.system, float(t), config, config.seed + k)
            for k, t in enumerate(self.temperatures)
        ]
        self.dof = degrees_of_freedom(md_system.system)
        self.reference = evaluator(md_system.system, self.contexts[0].getPlatform().getName())
        self.rng = np.random.default_rng(config.seed)
        self.accepted = np.zeros(len(self.contexts) - 1, dtype=np.int64)
        self.attempted = np.zeros(len(self.contexts) - 1, dtype=np.int64)
        self.cycle = 0

    def start(self) -> None:
        """Fresh start: every replica from the same minimised structure, own velocities."""
        for k, (context, t) in enumerate(zip(self.contexts, self.temperatures, strict=True)):
            x = self.md_system.positions
            start_context(context, x, float(t), self.config, self.config.seed + k)
        if self.config.equilibration_steps:
            for context in self.contexts:
                context.getIntegrator().step(self.config.equilibration_steps)

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Restores every Context, the swap counters and the swap random state."""
        for k, context in enumerate(self.contexts):
            context.loadCheckpoint(state[f"replica_{k}"].tobytes())
        self.rng.bit_generator.state = json.loads(state["rng"].tobytes().decode())
        self.accepted = state["accepted"].copy()
        self.attempted = state["attempted"].copy()
        self.cycle = int(state["cycle"])

    def checkpoint(self) -> dict[str, np.ndarray]:
        """Every Context's OpenMM checkpoint plus the exchange bookkeeping."""
        state = {
            f"replica_{k}": np.frombuffer(c.createCheckpoint(), dtype=np.uint8)
            for k, c in enumerate(self.contexts)
        }
        rng = json.dumps(self.rng.bit_generator.state).encode()
        state["rng"] = np.frombuffer(rng, dtype=np.uint8)
        state["accepted"] = self.accepted.copy()
        state["attempted"] = self.attempted.copy()
        state["cycle"] = np.array(self.cycle)
        return state

    def _exchange(self) -> None:
        energies = np.array(
            [
                c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(_KJ_MOL)
                for c in self.contexts
            ]
        )
        for k in range(self.cycle % 2, len(self.contexts) - 1, 2):
            self.attempted[k] += 1
            log_p = (self.betas[k] - self.betas[k + 1]) * (energies[k] - energies[k + 1])
            if log_p >= 0 or self.rng.random() < np.exp(log_p):
                self.accepted[k] += 1
                self._swap(k, k + 1)
                energies[[k, k + 1]] = energies[[k + 1, k]]
        self.cycle += 1

    def _swap(self, i: int, j: int) -> None:
        si, sj = (self.contexts[n].getState(getPositions=True, getVelocities=True) for n in (i, j))
        scale = np.sqrt(self.temperatures[i] / self.temperatures[j])
        for context, state, factor in (
            (self.contexts[i], sj, scale),
            (self.contexts[j], si, 1 / scale),
        ):
            context.setPositions(state.getPositions(asNumpy=True))
            context.setVelocities(state.getVelocities(asNumpy=True) * factor)

    def advance(self, n_frames: int, first_frame: int) -> Frames:
        """Runs ``n_frames`` strides of exchange cycles; frames of the lowest temperature."""
        records = []
        cycles = self.config.stride_steps // self.exchange_steps
        for _ in range(n_frames):
            for _ in range(cycles):
                for context in self.contexts:
                    context.getIntegrator().step(self.exchange_steps)
                self._exchange()
            records.append(snapshot(self.contexts[0], self.dof, self.reference))
        return frames_from_records(records, first_frame, self.config.stride_ps)

    @property
    def acceptance_rates(self) -> np.ndarray:
        """``[K-1]`` accepted / attempted swaps per neighbour pair (NaN before any attempt)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.accepted / self.attempted

    def summary(self) -> dict[str, object]:
        """Ladder and swap statistics for the metadata."""
        return {
            "temperatures_K": [float(t) for t in self.temperatures],
            "swap_attempts": [int(a) for a in self.attempted],
            "swap_acceptance": [float(r) for r in self.acceptance_rates],
        }
