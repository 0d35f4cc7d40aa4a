"""Batched energies and forces of any :class:`openmm.System` through OpenMM itself.

:class:`OpenMMBridge` evaluates a batch of configurations with one
:class:`openmm.Context` per worker, either in this process (``n_workers=0``) or in worker
processes started with the ``spawn`` method, each owning its own Context. Worker processes
always end:

* :meth:`OpenMMBridge.close` (or leaving a ``with`` block) stops them, first politely, then
  with ``terminate`` and ``kill`` if they do not answer within a few seconds;
* an exception or ``KeyboardInterrupt`` while a batch is in flight stops them too (a later call
  starts fresh ones), because their replies can no longer be matched to requests;
* at interpreter exit a :func:`weakref.finalize` hook stops them, and they are daemonic, so
  ``multiprocessing`` never waits for them;
* if the parent dies without any of that (``SIGKILL``), each worker notices the closed pipe or
  its changed parent id within a second and exits;
* workers ignore ``SIGINT``: a Ctrl-C that reaches the whole process group interrupts only the
  caller, which then shuts the workers down in order.

:class:`OpenMMEnergy` wraps the bridge as an :class:`~confflow.energies.base.Energy` whose
gradient comes from OpenMM's forces through an ``autograd.Function``.

Example:
    >>> from confflow.energies.systems import alanine_dipeptide
    >>> ref = alanine_dipeptide("aldp-vacuum")
    >>> with OpenMMBridge(ref.system, platform="Reference") as bridge:
    ...     energies, forces = bridge.energies_and_forces(ref.positions[None])
    >>> energies.shape, forces.shape
    ((1,), (1, 22, 3))
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import weakref
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor

from confflow.energies.base import Energy

__all__ = ["OpenMMBridge", "OpenMMEnergy", "available_platforms"]

_KJ_MOL = unit.kilojoule_per_mole
_KJ_MOL_NM = unit.kilojoule_per_mole / unit.nanometer
_STOP_TIMEOUT_S = 5.0


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms available here, e.g. ``["Reference", "CPU"]``."""
    return [
        openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
    ]


def _make_context(
    system: openmm.System, platform: str, properties: dict[str, str]
) -> openmm.Context:
    integrator = openmm.VerletIntegrator(0.001)
    return openmm.Context(
        system, integrator, openmm.Platform.getPlatformByName(platform), properties
    )


def _evaluate(context: openmm.Context, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[b]`` (kJ/mol) and forces ``[b, N, 3]`` (kJ/mol/nm) of ``[b, N, 3]`` nm."""
    energies = np.empty(len(positions))
    forces = np.empty(positions.shape)
    for i, x in enumerate(positions):
        context.setPositions(x)
        state = context.getState(getEnergy=True, getForces=True)
        energies[i] = state.getPotentialEnergy().value_in_unit(_KJ_MOL)
        forces[i] = state.getForces(asNumpy=True).value_in_unit(_KJ_MOL_NM)
    return energies, forces


def _worker_main(
    conn: Connection, system_xml: str, platform: str, properties: dict[str, str], parent: int
) -> None:
    """Worker loop: answers ``positions`` with ``("ok", E, F)`` until ``None`` or parent loss."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            system = openmm.XmlSerializer.deserialize(system_xml)
            context = _make_context(system, platform, properties)
        except Exception as err:  # e.g. a platform that fails in this process
            conn.send(("error", f"{type(err).__name__}: {err}"))
            return
        conn.send(("ready", os.getpid()))
        while True:
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return
                continue
            message = conn.recv()
            if message is None:
                return
            try:
                conn.send(("ok", *_evaluate(context, message)))
            except Exception as err:  # report OpenMM failures to the caller, keep serving
                conn.send(("error", f"{type(err).__name__}: {err}"))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return


def _stop(processes: list[BaseProcess], connections: list[Connection]) -> None:
    """Stops workers: sentinel, then terminate, then kill; closes the pipes. Idempotent."""
    for conn in connections:
        with contextlib.suppress(OSError, ValueError):
            conn.send(None)
    for proc in processes:
        proc.join(_STOP_TIMEOUT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
    for conn in connections:
        conn.close()
    processes.clear()
    connections.clear()


class OpenMMBridge:
    """Energies and forces of an :class:`openmm.System` for batches of configurations.

    Args:
        system: any OpenMM system (it is serialized for the workers).
        platform: an OpenMM platform name: ``"Reference"``, ``"CPU"``, ``"CUDA"``, ...
        n_workers: 0 evaluates in this process; ``k > 0`` splits each batch over ``k``
            spawned worker processes (started lazily, at the first batch).
        platform_properties: OpenMM platform properties, e.g. ``{"Threads": "1"}``.

    Raises:
        ValueError: unknown platform or negative ``n_workers``.
    """

    def __init__(
        self,
        system: openmm.System,
        platform: str = "Reference",
        n_workers: int = 0,
        platform_properties: dict[str, str] | None = None,
    ) -> None:
        if platform not in available_platforms():
            raise ValueError(
                f"platform: OpenMM platform {platform!r} is not available here; "
                f"choose one of {', '.join(available_platforms())}"
            )
        if n_workers < 0:
            raise ValueError(f"n_workers: must be >= 0, got {n_workers}")
        self.n_atoms = system.getNumParticles()
        self.platform = platform
        self.n_workers = n_workers
        self._properties = dict(platform_properties or {})
        self._system_xml = openmm.XmlSerializer.serialize(system)
        self._context = None if n_workers else _make_context(system, platform, self._properties)
        self._processes: list[BaseProcess] = []
        self._connections: list[Connection] = []
        self._finalizer = weakref.finalize(self, _stop, self._processes, self._connections)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (empty before the first batch or after close)."""
        return [p.pid for p in self._processes if p.pid is not None]

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        for _ in range(self.n_workers):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(child_end, self._system_xml, self.platform, self._properties, os.getpid()),
                daemon=True,
                name="confflow-openmm-worker",
            )
            self._processes.append(proc)
            self._connections.append(parent_end)
            proc.start()
            child_end.close()
        for conn in self._connections:
            self._receive(conn)

    def _receive(self, conn: Connection) -> tuple:
        try:
            reply = conn.recv()
        except EOFError as err:
            raise RuntimeError("OpenMMBridge: a worker process died unexpectedly") from err
        if reply[0] == "error":
            raise RuntimeError(f"OpenMMBridge: OpenMM failed in a worker: {reply[1]}")
        return reply

    def energies_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Evaluates a batch.

        Args:
            positions: ``[B, N, 3]`` positions in nm (any float dtype; used as float64).

        Returns:
            ``[B]`` energies in kJ/mol and ``[B, N, 3]`` forces in kJ/mol/nm, float64.

        Raises:
            ValueError: wrong shape.
            RuntimeError: OpenMM failed, or a worker died.
        """
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        if positions.ndim != 3 or positions.shape[1:] != (self.n_atoms, 3):
            raise ValueError(
                f"positions: expected shape [B, {self.n_atoms}, 3], got {positions.shape}"
            )
        if self._context is not None:
            return _evaluate(self._context, positions)
        try:
            if not self._processes:
                self._start()
            chunks = np.array_split(positions, len(self._connections))
            for conn, chunk in zip(self._connections, chunks, strict=True):
                conn.send(chunk)
            replies = [self._receive(conn) for conn in self._connections]
        except BaseException:
            self.close()
            raise
        return np.concatenate([r[1] for r in replies]), np.concatenate([r[2] for r in replies])

    def close(self) -> None:
        """Stops the worker processes (a later batch starts new ones)."""
        _stop(self._processes, self._connections)

    def __enter__(self) -> OpenMMBridge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _BridgeFunction(torch.autograd.Function):
    """Energies from OpenMM; backward uses OpenMM's forces (first derivatives only)."""

    @staticmethod
    def forward(ctx, x: Tensor, bridge: OpenMMBridge) -> Tensor:
        energies, forces = bridge.energies_and_forces(x.detach().to("cpu", torch.float64).numpy())
        ctx.save_for_backward(torch.as_tensor(forces, dtype=x.dtype, device=x.device))
        return torch.as_tensor(energies, dtype=x.dtype, device=x.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_energy: Tensor) -> tuple[Tensor, None]:
        (forces,) = ctx.saved_tensors
        return -grad_energy[:, None, None] * forces, None


class OpenMMEnergy(Energy):
    """An :class:`openmm.System` as an :class:`Energy`, evaluated by OpenMM.

    Args:
        system: any OpenMM system.
        platform: OpenMM platform name (``"Reference"``, ``"CPU"``, ``"CUDA"``).
        n_workers: worker processes (0: in this process); see :class:`OpenMMBridge`.
        platform_properties: OpenMM platform properties.

    ``energy(x)`` maps ``[B, N, 3]`` positions in nm to ``[B]`` kJ/mol; its gradient is
    minus OpenMM's forces. Call :meth:`close` (or use ``with``) to stop worker processes.
    """

    def __init__(
        self,
        system: openmm.System,
        platform: str = "Reference",
        n_workers: int = 0,
        platform_properties: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.bridge = OpenMMBridge(system, platform, n_workers, platform_properties)
        self.n_atoms = self.bridge.n_atoms

    def _energy(self, x: Tensor) -> Tensor:
        return _BridgeFunction.apply(x, self.bridge)

    def energy_and_forces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``[B]`` in kJ/mol and forces ``[B, N, 3]`` in kJ/mol/nm, from OpenMM."""
        self._validate(x)
        energies, forces = self.bridge.energies_and_forces(
            x.detach().to("cpu", torch.float64).numpy()
        )
        return (
            torch.as_tensor(energies, dtype=x.dtype, device=x.device),
            torch.as_tensor(forces, dtype=x.dtype, device=x.device),
        )

    def close(self) -> None:
        """Stops the bridge's worker processes."""
        self.bridge.close()

    def __enter__(self) -> OpenMMEnergy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
