"""Energies over free torsions: a Cartesian energy at fixed or at relaxed local structure."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from rdkit import Chem
from torch import Tensor

from confflow.coordinates.torsional import TorsionalEmbedding
from confflow.domains import wrap_angle
from confflow.energies.base import Energy
from confflow.energies.mmff import MMFFEnergy
from confflow.energies.relax import relax_at_torsions

__all__ = ["RelaxedTorsionalEnergy", "TorsionalEnergy"]


class TorsionalEnergy(Energy):
    """``E(theta) = E_cart(embed(theta))`` in kJ/mol over torsions ``theta [B, K]`` (rad).

    The target of a torsional Boltzmann generator: ``p(theta) ~ exp(-E(theta) / kT)`` with
    respect to ``d theta`` is the Boltzmann distribution conditional on the reference's bonds,
    angles and rigid torsions (see :mod:`confflow.coordinates.torsional`).

    Args:
        cartesian: energy over positions ``[B, N, 3]`` nm (e.g. :class:`MMFFEnergy`).
        embedding: the torsion space.
    """

    def __init__(self, cartesian: Energy, embedding: TorsionalEmbedding) -> None:
        super().__init__()
        if cartesian.n_atoms != embedding.n_atoms:
            raise ValueError(
                f"TorsionalEnergy: energy of {cartesian.n_atoms} atoms, embedding of "
                f"{embedding.n_atoms}"
            )
        self.cartesian = cartesian
        self.embedding = embedding

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(K,)``: one torsion (rad) per rotatable bond."""
        return (self.embedding.dim,)

    def positions(self, theta: Tensor) -> Tensor:
        """The conformers ``[B, N, 3]`` (nm) whose energies this energy returns for ``theta``."""
        return self.embedding.embed(theta)

    def _energy(self, x: Tensor) -> Tensor:
        return self.cartesian.energy(self.embedding.embed(x))


class RelaxedTorsionalEnergy(TorsionalEnergy):
    """The MMFF energy of the relaxed conformer at each torsion set, in kJ/mol.

    ``E(theta) = min_s E_MMFF(theta, s)`` over the local structure ``s`` (bonds, angles, rigid
    torsions), starting from the reference's: the adiabatic torsional energy, found by RDKit's
    minimiser with the free torsions held (:func:`~confflow.energies.relax.relax_at_torsions`).
    ``exp(-E(theta) / kT)`` is much closer to the flexible molecule's torsion marginal than the
    frozen-structure energy of :class:`TorsionalEnergy`, because bond angles open and close
    with the torsions as they do in molecular dynamics; what it leaves out is the change of
    the vibrational entropy of the local structure with the torsions.

    The gradient follows from the envelope theorem: at a constrained minimum,
    ``dE/dtheta = dE_MMFF/dtheta`` with the relaxed local structure held, which is what autograd
    computes here by re-embedding ``theta`` into the relaxed internal coordinates. Each
    evaluation minimises every conformer (a few milliseconds each on one CPU core).

    Args:
        cartesian: the molecule's :class:`MMFFEnergy` (its variant is the minimiser's).
        embedding: the torsion space.
        mol: the RDKit molecule with explicit hydrogens that ``cartesian`` was built from.

    Raises:
        ValueError: ``cartesian`` is not an :class:`MMFFEnergy`, or atoms do not match.
    """

    def __init__(self, cartesian: Energy, embedding: TorsionalEmbedding, mol: Chem.Mol) -> None:
        if not isinstance(cartesian, MMFFEnergy):
            raise ValueError(
                f"RelaxedTorsionalEnergy: relaxation uses MMFF, got {type(cartesian).__name__}"
            )
        super().__init__(cartesian, embedding)
        if mol.GetNumAtoms() != embedding.n_atoms:
            raise ValueError(
                f"RelaxedTorsionalEnergy: molecule of {mol.GetNumAtoms()} atoms, embedding of "
                f"{embedding.n_atoms}"
            )
        self.mol = Chem.Mol(mol)
        self._frozen = False
        self._correction: Callable[[Tensor, Tensor], Tensor] | None = None

    @contextmanager
    def frozen(
        self, correction: Callable[[Tensor, Tensor], Tensor] | None = None
    ) -> Iterator[None]:
        """Within the block, the frozen-structure energy of :class:`TorsionalEnergy`.

        Cheap stand-ins for the relaxed energy: the frozen target is close to it near the
        reference, and closer still with a learned estimate of the relaxation energy subtracted.

        Args:
            correction: maps torsions ``[B, K]`` (rad) and their frozen energies ``[B]``
                (kJ/mol) to ``[B]`` kJ/mol subtracted from the frozen energy (an estimate of
                ``E_frozen - E_relaxed``), or ``None``.
        """
        self._frozen, self._correction = True, correction
        try:
            yield
        finally:
            self._frozen, self._correction = False, None

    def positions(self, theta: Tensor) -> Tensor:
        """Relaxed conformers ``[B, N, 3]`` in nm (float64, device of ``theta``), no gradient.

        Warns when a minimisation stopped at its iteration limit (its energy is then too high).
        """
        if self._frozen:
            return super().positions(theta)
        with torch.no_grad():
            start = self.embedding.embed(theta.detach().double())
            relaxed, unconverged = relax_at_torsions(
                self.mol, start, self.embedding.torsions, variant=self.cartesian.variant
            )
        if unconverged:
            warnings.warn(
                f"RelaxedTorsionalEnergy: {unconverged} of {theta.shape[0]} minimisations "
                "stopped at the iteration limit",
                RuntimeWarning,
                stacklevel=2,
            )
        return relaxed.to(start)

    def _energy(self, x: Tensor) -> Tensor:
        if self._frozen:
            frozen = super()._energy(x)
            return frozen if self._correction is None else frozen - self._correction(x, frozen)
        with torch.no_grad():
            z, _ = self.embedding.ic.inverse(self.positions(x))
        z = z.to(x.dtype).index_copy(
            1, self.embedding.slots, wrap_angle(x)
        )  # theta keeps its gradient
        positions, _ = self.embedding.ic(z)
        return self.cartesian.energy(positions)
