"""Single points of a tight-binding level with tblite: one calculator per structure, in threads.

Atomic units at this boundary (positions in Bohr, energies in Hartree, gradients in
Hartree/Bohr); :class:`confflow.energies.XTBEnergy` converts to nm and kJ/mol.

A structure whose calculation fails (the SCF does not converge, tblite reports an error) is
recorded with tblite's message, never given an energy.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from confflow.errors import InputError
from confflow.xtb.level import SOLVATION_MODELS, XTBLevel

__all__ = ["MAX_ATOMIC_NUMBER", "Settings", "SinglePoints", "check_structure", "single_points"]

#: Heaviest element with GFN1/GFN2-xTB parameters (radon).
MAX_ATOMIC_NUMBER = 86
#: Structures per task of a worker thread.
_CHUNK = 16


@dataclass(frozen=True)
class Settings:
    """What defines one calculation besides the positions.

    Attributes:
        level: method and solvent.
        numbers: ``[N]`` atomic numbers.
        charge: total charge in e.
        uhf: number of unpaired electrons.
        accuracy: tblite's numerical accuracy (1.0 is its default; smaller is tighter).
        max_iter: SCF iterations before a structure counts as failed.
    """

    level: XTBLevel
    numbers: tuple[int, ...]
    charge: int = 0
    uhf: int = 0
    accuracy: float = 1.0
    max_iter: int = 250


@dataclass
class SinglePoints:
    """Results of a batch of structures.

    Attributes:
        energy: ``[B]`` Hartree, NaN where the calculation failed.
        gradient: ``[B, N, 3]`` Hartree/Bohr, NaN where it failed.
        failures: index of each failed structure -> tblite's message.
    """

    energy: np.ndarray
    gradient: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)


def _calculator(settings: Settings, positions: np.ndarray):
    from tblite.interface import Calculator

    calc = Calculator(
        settings.level.tblite_method,
        np.asarray(settings.numbers, dtype=np.int32),
        positions,
        charge=float(settings.charge),
        uhf=int(settings.uhf),
    )
    calc.set("verbosity", 0)
    calc.set("accuracy", settings.accuracy)
    calc.set("max-iter", settings.max_iter)
    if settings.level.solvent is not None:
        calc.add(SOLVATION_MODELS[settings.level.model], settings.level.solvent)
    return calc


def check_structure(settings: Settings) -> None:
    """Fails now, not per conformer, on what no structure of this molecule can be computed with.

    Checks the elements (Z <= 86), the electron count against charge and unpaired electrons,
    and builds one calculator (no SCF), which refuses a solvent tblite does not know.

    Raises:
        InputError: the message names the element, the charge or the solvent.
    """
    from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError

    name = settings.level.name
    heavy = sorted({z for z in settings.numbers if not 1 <= z <= MAX_ATOMIC_NUMBER})
    if heavy:
        raise InputError(
            f"{name}: no parameters for atomic number(s) {', '.join(map(str, heavy))} "
            f"(GFN-xTB covers Z = 1-{MAX_ATOMIC_NUMBER})"
        )
    electrons = sum(settings.numbers) - settings.charge
    if settings.uhf < 0 or electrons < settings.uhf or (electrons - settings.uhf) % 2:
        raise InputError(
            f"{name}: charge {settings.charge:+d} with {settings.uhf} unpaired electron(s) is "
            f"impossible for {electrons} electrons"
        )
    line = np.zeros((len(settings.numbers), 3))
    line[:, 0] = 3.0 * np.arange(len(settings.numbers))
    try:
        _calculator(settings, line)
    except (TBLiteRuntimeError, TBLiteValueError) as err:
        raise InputError(f"{name}: {err}") from err


def _chunk(settings: Settings, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Energies ``[b]`` (Eh), gradients ``[b, N, 3]`` (Eh/Bohr) and ``(i, message)`` failures."""
    from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError

    energy = np.full(len(positions), np.nan)
    gradient = np.full(positions.shape, np.nan)
    failures = []
    for i, pos in enumerate(positions):
        try:
            result = _calculator(settings, pos).singlepoint()
            energy[i] = result.get("energy")
            gradient[i] = result.get("gradient")
        except (TBLiteRuntimeError, TBLiteValueError) as err:
            failures.append((i, str(err)))
    return energy, gradient, failures


def single_points(
    settings: Settings,
    positions: np.ndarray,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> SinglePoints:
    """Energies and gradients of structures ``[B, N, 3]`` (Bohr).

    Structures run in ``workers`` threads: tblite's C calls release the GIL, so threads scale
    like processes without their start-up cost or a ``__main__`` guard in the caller's script.

    Args:
        settings: level, atoms, charge, unpaired electrons, SCF settings.
        positions: ``[B, N, 3]`` Bohr.
        workers: threads (1: one after the other).
        progress: called with the number of structures finished since the last call.

    Returns:
        The :class:`SinglePoints`; failed structures are recorded, not raised.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    n = len(positions)
    starts = list(range(0, n, _CHUNK))
    out = SinglePoints(np.full(n, np.nan), np.full(positions.shape, np.nan))

    def run(start: int) -> None:
        energy, gradient, failures = _chunk(settings, positions[start : start + _CHUNK])
        stop = start + len(energy)
        out.energy[start:stop], out.gradient[start:stop] = energy, gradient
        out.failures.update({start + i: message for i, message in failures})

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start, _ in zip(starts, pool.map(run, starts), strict=True):
            if progress is not None:
                progress(min(_CHUNK, n - start))
    return out
