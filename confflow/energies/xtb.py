"""GFN2-xTB and GFN1-xTB energies over positions in nm, in kJ/mol, through tblite.

``XTBEnergy(numbers, "gfn2:water")`` follows the :class:`~confflow.energies.Energy` contract:
``energy(x [B, N, 3] nm) -> [B] kJ/mol``, differentiable with tblite's analytic gradient. Each
structure is one tblite calculator (tblite's defaults: SAD guess, accuracy 1.0, electronic
temperature 300 K), so the numbers are exactly those of ``tblite.interface.Calculator`` on the
same structure. Batches run in ``workers`` threads (tblite releases the GIL).

A structure whose SCF fails cannot have an energy: :meth:`XTBEnergy.evaluate` records it
(NaN energy and its message), :meth:`XTBEnergy.energy` raises a ``RunError`` naming it.

Example:
    >>> energy = XTBEnergy((8, 1, 1), "gfn2")
    >>> water = [[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]]  # nm
    >>> x = torch.tensor([water], dtype=torch.float64)
    >>> round(float(energy.energy(x)[0]) / HARTREE_KJ_MOL, 4)  # water, Hartree
    -5.0704
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from confflow.energies.base import Energy
from confflow.errors import RunError
from confflow.xtb import Settings, XTBLevel, check_structure, single_points

__all__ = ["BOHR_NM", "HARTREE_KJ_MOL", "XTBEnergy", "XTBResult"]

#: Bohr radius in nm (CODATA 2018).
BOHR_NM = 0.0529177210903
#: Hartree in kJ/mol (CODATA 2018).
HARTREE_KJ_MOL = 2625.4996394799


@dataclass
class XTBResult:
    """Energies of a batch with the failed structures marked.

    Attributes:
        energy: ``[B]`` float64 kJ/mol, NaN where the calculation failed.
        gradient: ``[B, N, 3]`` float64 kJ/mol/nm, NaN where it failed.
        failures: index of each failed structure -> tblite's message.
    """

    energy: Tensor
    gradient: Tensor
    failures: dict[int, str]

    @property
    def ok(self) -> Tensor:
        """``[B]`` bool, the structures with an energy."""
        return torch.isfinite(self.energy)


class _XTB(torch.autograd.Function):
    """Energy whose backward is the analytic gradient computed with it."""

    @staticmethod
    def forward(ctx, x, energy_fn):
        result = energy_fn(x)
        ctx.save_for_backward(result.gradient.to(x))
        return result.energy.to(x)

    @staticmethod
    def backward(ctx, grad_energy):
        (gradient,) = ctx.saved_tensors
        return grad_energy[:, None, None] * gradient, None


@contextmanager
def _progress_bar(enabled: bool, total: int, label: str):
    """Yields a callback ``advance(k)`` of a rich progress bar on stderr (or a no-op)."""
    if not enabled:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda k: bar.advance(task, k)


class XTBEnergy(Energy):
    """GFN-xTB energy of one molecule (fixed atoms, charge and spin) over positions in nm.

    Args:
        numbers: ``N`` atomic numbers.
        level: an :class:`~confflow.xtb.XTBLevel` or its name (``"gfn2"``, ``"gfn2:water"``).
        charge: total charge in e.
        uhf: unpaired electrons.
        workers: threads per batch.
        accuracy: tblite's numerical accuracy (default 1.0).
        max_iter: SCF iterations before a structure counts as failed.
        progress: show a progress bar on stderr for batches.

    Raises:
        InputError: an element without parameters, a charge and spin no structure can have,
            an unknown level or solvent.
    """

    def __init__(
        self,
        numbers: Sequence[int],
        level: XTBLevel | str = "gfn2",
        *,
        charge: int = 0,
        uhf: int = 0,
        workers: int = 1,
        accuracy: float = 1.0,
        max_iter: int = 250,
        progress: bool = False,
    ) -> None:
        super().__init__()
        level = level if isinstance(level, XTBLevel) else XTBLevel.parse(level)
        numbers = tuple(int(z) for z in numbers)
        self.settings = Settings(level, numbers, int(charge), int(uhf), accuracy, max_iter)
        check_structure(self.settings)
        self.n_atoms = len(numbers)
        self.workers = max(1, int(workers))
        self.progress = progress

    @classmethod
    def from_molecule(cls, molecule, level: XTBLevel | str = "gfn2", **options) -> XTBEnergy:
        """The energy of a :class:`~confflow.chem.Molecule` (explicit hydrogens).

        The charge is the sum of the formal charges; the molecule is closed-shell (confflow's
        molecules have no radicals).

        Args:
            molecule: the molecule.
            level: the level or its name.
            **options: ``workers``, ``accuracy``, ``max_iter``, ``progress``.
        """
        charge = sum(atom.GetFormalCharge() for atom in molecule.rdkit_mol.GetAtoms())
        return cls(molecule.atomic_numbers, level, charge=charge, **options)

    @property
    def level(self) -> XTBLevel:
        """The level of theory."""
        return self.settings.level

    def evaluate(self, x: Tensor) -> XTBResult:
        """Energies and gradients of conformers ``x [B, N, 3]`` (nm); failures recorded.

        Raises:
            ValueError: wrong shape or non-finite positions.
        """
        self._validate(x)
        bohr = x.detach().to("cpu", torch.float64).numpy() / BOHR_NM
        with _progress_bar(self.progress, len(bohr), self.level.name) as advance:
            points = single_points(self.settings, bohr, self.workers, advance)
        energy = torch.from_numpy(points.energy * HARTREE_KJ_MOL)
        gradient = torch.from_numpy(points.gradient * (HARTREE_KJ_MOL / BOHR_NM))
        return XTBResult(energy, gradient, points.failures)

    def _strict(self, x: Tensor) -> XTBResult:
        result = self.evaluate(x)
        if result.failures:
            index, message = min(result.failures.items())
            more = len(result.failures) - 1
            also = f" (and {more} more)" if more else ""
            raise RunError(f"{self.level.name}: conformer {index}: {message}{also}")
        return result

    def energy_and_forces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``[B]`` kJ/mol and forces ``[B, N, 3]`` kJ/mol/nm (dtype of ``x``)."""
        result = self._strict(x)
        return result.energy.to(x), -result.gradient.to(x)

    def _energy(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _XTB.apply(x, self._strict)
        return self._strict(x).energy.to(x)
