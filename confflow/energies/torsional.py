"""An energy over free torsions: a Cartesian energy evaluated at fixed local structure."""

from __future__ import annotations

from torch import Tensor

from confflow.coordinates.torsional import TorsionalEmbedding
from confflow.energies.base import Energy

__all__ = ["TorsionalEnergy"]


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

    def _energy(self, x: Tensor) -> Tensor:
        return self.cartesian.energy(self.embedding.embed(x))
