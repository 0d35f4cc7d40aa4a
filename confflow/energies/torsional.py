"""Energies over free torsions: a Cartesian energy at frozen or locally relaxed structure.

:class:`TorsionalEnergy` is the force field at its own (frozen or relaxed) conformers;
:class:`LevelTorsionalEnergy` is another energy (e.g. GFN2-xTB) at those same conformers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from confflow.coordinates.torsional import TorsionalEmbedding
from confflow.energies.base import Energy
from confflow.energies.local_relax import LocalRelaxation, check_same_atoms

__all__ = ["LevelTorsionalEnergy", "TorsionalEnergy"]


class TorsionalEnergy(Energy):
    """``E(theta) = E_cart(embed(theta))`` in kJ/mol over torsions ``theta [B, K]`` (rad).

    The target of a torsional Boltzmann generator: ``p(theta) ~ exp(-E(theta) / kT)`` with
    respect to ``d theta`` is the Boltzmann distribution conditional on the reference's bonds,
    angles and rigid torsions (see :mod:`confflow.coordinates.torsional`).

    With ``relax_steps > 0`` the local structure is not frozen but relaxed at each torsion set
    by that many preconditioned gradient steps (:class:`~confflow.energies.LocalRelaxation`):
    ``E(theta) = E_cart(embed(theta, s(theta)))``, the target is the Boltzmann distribution of
    torsions with the local structure following them, which is much closer to the flexible
    molecule's torsion marginals. The gradient holds ``s`` fixed (envelope theorem).

    Args:
        cartesian: energy over positions ``[B, N, 3]`` nm (e.g. :class:`MMFFEnergy`).
        embedding: the torsion space.
        relax_steps: relaxation steps of the local structure per evaluation (0: frozen).
    """

    def __init__(
        self, cartesian: Energy, embedding: TorsionalEmbedding, relax_steps: int = 0
    ) -> None:
        super().__init__()
        check_same_atoms("TorsionalEnergy", cartesian, embedding)
        self.cartesian = cartesian
        self.embedding = embedding
        self.relaxation = (
            LocalRelaxation(cartesian, embedding, relax_steps) if relax_steps > 0 else None
        )

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(K,)``: one torsion (rad) per rotatable bond."""
        return (self.embedding.dim,)

    def positions(self, theta: Tensor) -> Tensor:
        """The conformers ``[B, N, 3]`` (nm) whose energies this energy returns for ``theta``."""
        if self.relaxation is None:
            return self.embedding.embed(theta)
        with torch.no_grad():
            z = self.relaxation.internal(theta, self.relaxation.relax(theta))
            x, _ = self.embedding.ic(z)
        return x

    def energy_and_terms(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``[B]`` and the force field's separate terms ``[B, T]`` (kJ/mol) at ``theta``.

        Both are differentiable in ``theta [B, K]`` (rad) with the local structure held: the
        energy as :meth:`energy`, the terms (``term_energies`` of the Cartesian energy, e.g.
        :meth:`MMFFEnergy.term_energies`) by autograd at the conformers :meth:`positions`
        returns, not through their relaxation.

        Raises:
            TypeError: the Cartesian energy has no separate terms.
        """
        terms_of = getattr(self.cartesian, "term_energies", None)
        if terms_of is None:
            raise TypeError(f"{type(self.cartesian).__name__} has no separate terms")
        self._validate(theta)
        if self.relaxation is None:
            x = self.embedding.embed(theta)
            energy = self.cartesian.energy(x)
        else:
            energy, local = self.relaxation.relaxed(theta)
            x, _ = self.embedding.ic(self.relaxation.internal(theta, local))
        return energy, torch.stack(list(terms_of(x).values()), dim=1)

    def _energy(self, x: Tensor) -> Tensor:
        if self.relaxation is None:
            return self.cartesian.energy(self.embedding.embed(x))
        return self.relaxation.energy(x)


class LevelTorsionalEnergy(Energy):
    """Another energy at a torsional energy's conformers, over torsions ``theta [B, K]`` (rad).

    ``E(theta) = E_level(x(theta))`` in kJ/mol, with ``x(theta)`` the conformer of
    ``torsional`` (nm): its local structure frozen, or relaxed on ``torsional``'s own energy (a
    force field) and held fixed in the gradient. The target of a torsional flow refined at a
    level of theory (e.g. GFN2-xTB) whose conformers stay those the flow writes.

    Args:
        torsional: the torsional energy whose conformers are evaluated.
        level: energy over positions ``[B, N, 3]`` nm, kJ/mol (evaluated in float64).
    """

    def __init__(self, torsional: TorsionalEnergy, level: Energy) -> None:
        super().__init__()
        check_same_atoms("LevelTorsionalEnergy", level, torsional.embedding)
        self.torsional = torsional
        self.level = level

    @property
    def embedding(self) -> TorsionalEmbedding:
        """The torsion space (that of ``torsional``)."""
        return self.torsional.embedding

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(K,)``: one torsion (rad) per rotatable bond."""
        return self.torsional.event_shape

    def _energy(self, x: Tensor) -> Tensor:
        relaxation = self.torsional.relaxation
        if relaxation is None:
            positions = self.embedding.embed(x)
        else:
            local = relaxation.relax(x)  # no gradient: held fixed (envelope theorem)
            positions, _ = self.embedding.ic(relaxation.internal(x, local))
        return self.level.energy(positions.double()).to(x.dtype)
