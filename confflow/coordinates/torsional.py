"""Torsion space at fixed local structure: rotatable torsions -> Cartesian positions.

A molecule's conformers differ mostly by rotations about single bonds; bond lengths, bond
angles, ring geometry and the placement of branches vary little. :class:`TorsionalEmbedding`
fixes all of those at the values of a reference conformer and keeps one free torsion per
rotatable bond, so that ``embed`` maps ``theta [B, K]`` (rad, on the circle) to positions
``[B, N, 3]`` (nm, canonical pose of :class:`~confflow.coordinates.InternalCoordinates`).

Rotatable bond: a single, acyclic bond between two atoms that each have another neighbour
(hydrogens count, so methyl, hydroxyl and amino rotors are included), not part of a triple
bond. For each such bond ``j-k`` the Z-matrix holds exactly one *proper* torsion ``i-j-k-l``
(``l`` bonded to ``k``) of a first sibling; every other atom on ``i``'s side hangs on it
through improper-like torsions (:mod:`confflow.coordinates.zmatrix`), so changing that one
internal coordinate rotates the whole side rigidly about the bond.

Statistical mechanics. The Cartesian <-> internal Jacobian ``b_2 prod b^2 sin(theta)`` does not
depend on torsions, so the Boltzmann density over ``theta`` with the rest held fixed is
``p(theta) ~ exp(-E(embed(theta)) / kT)`` with respect to ``d theta``: the conditional
distribution of the flexible molecule given its local structure (the setting of torsional
Boltzmann generators). It is not the marginal of the flexible molecule: relaxation of bonds and
angles is left out.
"""

from __future__ import annotations

import torch
from rdkit import Chem
from torch import Tensor, nn

from confflow.chem.molecule import Molecule
from confflow.coordinates.internal import InternalCoordinates
from confflow.coordinates.zmatrix import ZMatrix
from confflow.domains import Domain, wrap_angle

__all__ = ["TorsionalEmbedding", "rotatable_bonds"]

#: Single, acyclic bond between non-terminal atoms, neither in a triple bond.
_ROTATABLE = Chem.MolFromSmarts("[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]")


def rotatable_bonds(molecule: Molecule) -> list[tuple[int, int]]:
    """Rotatable bonds ``(a, b)`` with ``a < b`` (hydrogen rotors included), sorted."""
    mol = molecule.rdkit_mol
    return sorted({tuple(sorted(m)) for m in mol.GetSubstructMatches(_ROTATABLE)})


class TorsionalEmbedding(nn.Module):
    """Free torsions ``theta [B, K]`` (rad) <-> positions ``[B, N, 3]`` (nm).

    Args:
        molecule: the molecule.
        reference: ``[N, 3]`` positions in nm whose bonds, angles and non-rotatable torsions
            are kept (e.g. an MMFF-minimised conformer).
        rigid_bonds: rotatable bonds ``(a, b)`` held at the reference like the rest of the
            local structure (e.g. amide bonds, whose cis/trans isomer is a state).

    Attributes:
        torsions: ``K`` atom quadruples ``(i, j, k, l)`` of the free torsions, one per rotatable
            bond ``j-k``, in Z-matrix placement order.
        domain: ``K`` circle coordinates.
        n_atoms: ``N``.

    Raises:
        ValueError: ``reference`` of the wrong shape or not finite, a rigid bond that is not
            rotatable, or a rotatable bond without a proper Z-matrix torsion (a Z-matrix the
            builder should never produce).
    """

    def __init__(
        self,
        molecule: Molecule,
        reference: Tensor,
        rigid_bonds: tuple[tuple[int, int], ...] = (),
    ) -> None:
        super().__init__()
        zmatrix = ZMatrix.from_molecule(molecule)
        self.ic = InternalCoordinates(zmatrix)
        self.n_atoms = molecule.n_atoms
        ref = torch.as_tensor(reference, dtype=torch.float64)
        if ref.shape != (self.n_atoms, 3) or not bool(torch.isfinite(ref).all()):
            raise ValueError(
                f"TorsionalEmbedding: reference must be finite positions [{self.n_atoms}, 3] "
                f"in nm, got shape {tuple(ref.shape)}"
            )
        bonds = set(rotatable_bonds(molecule))
        rigid = {(min(a, b), max(a, b)) for a, b in rigid_bonds}
        if rigid - bonds:
            raise ValueError(
                f"TorsionalEmbedding: rigid bonds {sorted(rigid - bonds)} do not rotate"
            )
        bonds -= rigid
        neighbours = {a: set() for a in range(self.n_atoms)}
        for a, b in molecule.bonds:
            neighbours[a].add(b)
            neighbours[b].add(a)
        offset = 2 * self.n_atoms - 3
        slots, quads, seen = [], [], set()
        for row, (i, j, k, far) in enumerate(zmatrix.rows[3:], start=3):
            bond = (min(j, k), max(j, k))
            if bond in bonds and far in neighbours[k] and bond not in seen:
                seen.add(bond)
                slots.append(offset + row - 3)
                quads.append((i, j, k, far))
        missing = sorted(bonds - seen)
        if missing:
            raise ValueError(f"TorsionalEmbedding: no proper Z-matrix torsion for bonds {missing}")
        self.torsions: tuple[tuple[int, int, int, int], ...] = tuple(quads)
        self.domain = Domain.circle(len(quads))
        z_ref, _ = self.ic.inverse(ref[None])
        self.register_buffer("z_ref", z_ref[0])
        self.register_buffer("_slots", torch.tensor(slots, dtype=torch.long), persistent=False)

    @property
    def dim(self) -> int:
        """Number of free torsions ``K``."""
        return len(self.torsions)

    @property
    def slots(self) -> Tensor:
        """``[K]`` positions of the free torsions in the internal-coordinate vector."""
        return self._slots

    def embed(self, theta: Tensor) -> Tensor:
        """Positions of the reference's local structure with the free torsions ``theta``.

        Args:
            theta: ``[B, K]`` torsions in rad (any real values; wrapped onto the circle).

        Returns:
            ``[B, N, 3]`` positions in nm (canonical pose), dtype of ``theta``, differentiable.
        """
        if theta.dim() != 2 or theta.shape[1] != self.dim:
            raise ValueError(
                f"TorsionalEmbedding.embed: expected torsions [B, {self.dim}], "
                f"got {tuple(theta.shape)}"
            )
        z = self.z_ref.to(theta).expand(theta.shape[0], -1)
        z = z.index_copy(1, self._slots, wrap_angle(theta))
        x, _ = self.ic(z)
        return x

    def project(self, x: Tensor) -> Tensor:
        """The free torsions ``[B, K]`` (rad, in ``[-pi, pi)``) of positions ``[B, N, 3]`` nm."""
        z, _ = self.ic.inverse(x)
        return z.index_select(1, self._slots)
