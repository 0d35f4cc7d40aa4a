"""What every equivariant vector field on one molecule's positions shares.

A field ``v(t, x)`` sees the molecule through invariant context (an integer type per atom, the
bonded pairs) and works in network units, positions divided by ``length_scale``. Its velocity
is projected onto the centre-of-mass-free subspace and scaled back to nm per unit time.
Subclasses implement :meth:`MoleculeField._velocity` in network units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MoleculeField", "bond_matrix"]


def bond_matrix(n_atoms: int, bonds: Sequence[tuple[int, int]]) -> Tensor:
    """Symmetric ``[N, N]`` float 0/1 adjacency from bonded pairs.

    Raises:
        ValueError: an atom index outside ``[0, N)`` or a bond of an atom to itself.
    """
    adjacency = torch.zeros(n_atoms, n_atoms)
    for i, j in bonds:
        if not (0 <= i < n_atoms and 0 <= j < n_atoms) or i == j:
            raise ValueError(f"bonds: invalid bond ({i}, {j}) for {n_atoms} atoms")
        adjacency[i, j] = adjacency[j, i] = 1.0
    return adjacency


class MoleculeField(nn.Module):
    """Base of the vector fields ``v(t, x)`` for ``x [B, N, 3]`` of one molecule.

    Args:
        atom_types: ``[N]`` integer type per atom, ``N >= 2``, non-negative.
        length_scale: positions are divided by this (nm) inside the network and velocities
            multiplied by it; the subclass checks that it is positive.

    Attributes:
        n_atoms: ``N``.
        types: ``[N]`` long buffer of the atom types.

    Raises:
        ValueError: ``atom_types`` not a list of at least two non-negative integers.
    """

    def __init__(self, atom_types: Sequence[int] | Tensor, length_scale: float) -> None:
        super().__init__()
        types = torch.as_tensor(atom_types, dtype=torch.long)
        if types.dim() != 1 or types.numel() < 2 or int(types.min()) < 0:
            raise ValueError(f"atom_types: need >= 2 non-negative integers, got {atom_types!r}")
        self.n_atoms = types.numel()
        self.length_scale = float(length_scale)
        self.register_buffer("types", types, persistent=False)

    def forward(self, t: Tensor | float, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Velocity ``[B, N, 3]`` (nm per unit time), mean-free over atoms.

        Args:
            t: scalar or ``[B]`` flow time in ``[0, 1]``.
            x: ``[B, N, 3]`` positions in nm.
            context: unused; accepted for the vector-field interface.

        Raises:
            ValueError: ``x`` not ``[B, N, 3]`` for this molecule.
        """
        if x.dim() != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"x: expected [B, {self.n_atoms}, 3], got {tuple(x.shape)}")
        v = self._velocity(t, x / self.length_scale)
        return (v - v.mean(dim=1, keepdim=True)) * self.length_scale

    def _velocity(self, t: Tensor | float, y: Tensor) -> Tensor:
        """Velocity ``[B, N, 3]`` in network units at positions ``y [B, N, 3]`` (network units)."""
        raise NotImplementedError
