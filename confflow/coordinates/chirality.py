"""Per-sample stereo checks: tetrahedral centres by signed volume, double bonds by cis/trans.

A flow over internal coordinates can invert a stereocentre (an improper torsion that crosses
zero) or flip a double bond; such samples belong to another stereoisomer. :class:`StereoCheck`
compares every sample with a reference conformer:

* a tetrahedral centre ``c`` with neighbours ``n1 < n2 < n3`` (the three lowest indices) has
  signed volume ``(n1 - c) . ((n2 - c) x (n3 - c))``; its sign must match the reference's;
* a stereo double bond ``b=c`` with lowest-index substituents ``a`` on ``b`` and ``d`` on ``c``
  is cis when the projections of ``a - b`` and ``d - c`` perpendicular to the bond point the
  same way; that must match the reference too.

Mirror images flip every signed volume and keep double bonds; a rotation about a double bond
flips only the bond.
"""

from __future__ import annotations

import torch
from rdkit import Chem
from torch import Tensor

from confflow.chem.checks import as_positions
from confflow.chem.molecule import Molecule

__all__ = ["StereoCheck"]


class StereoCheck:
    """Checks the stereo of samples against a reference conformer.

    Args:
        molecule: the molecule.
        reference: ``[N, 3]`` nm reference conformer. When given, every potential stereo
            element is checked (specified or not: the reference defines it). When ``None``,
            the molecule's first stored conformer is used, else one ETKDGv3 conformer
            (``seed``); then only elements whose stereo the molecule specifies are checked,
            since ETKDG picks unspecified ones at random.
        seed: ETKDG seed for the default reference.

    Attributes:
        centres: ``[C, 4]`` long tensor of ``(centre, n1, n2, n3)`` atoms.
        double_bonds: ``[D, 4]`` long tensor of ``(a, b, c, d)`` atoms for ``a-b=c-d``.
        reference_signs: ``[C + D]`` signs (+1/-1) of the reference: volumes, then cis (+1)
            or trans (-1).
    """

    def __init__(self, molecule: Molecule, reference: Tensor | None = None, seed: int = 0) -> None:
        mol = molecule.rdkit_mol
        self.molecule = molecule
        only_specified = reference is None
        if reference is None:
            stored = molecule.positions
            reference = stored[0] if stored is not None else molecule.embed(1, seed=seed)[0]
        ref = as_positions(reference, molecule.n_atoms, molecule.source).double()
        centres, bonds = [], []
        for info in Chem.FindPotentialStereo(mol):
            if only_specified and info.specified != Chem.StereoSpecified.Specified:
                continue
            if info.type == Chem.StereoType.Atom_Tetrahedral:
                atom = mol.GetAtomWithIdx(info.centeredOn)
                nbrs = sorted(n.GetIdx() for n in atom.GetNeighbors())
                if len(nbrs) >= 3:
                    centres.append([info.centeredOn, *nbrs[:3]])
            elif info.type == Chem.StereoType.Bond_Double:
                bond = mol.GetBondWithIdx(info.centeredOn)
                b, c = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
                a = min(n.GetIdx() for n in bond.GetBeginAtom().GetNeighbors() if n.GetIdx() != c)
                d = min(n.GetIdx() for n in bond.GetEndAtom().GetNeighbors() if n.GetIdx() != b)
                bonds.append([a, b, c, d])
        self.centres = torch.tensor(centres, dtype=torch.long).reshape(-1, 4)
        self.double_bonds = torch.tensor(bonds, dtype=torch.long).reshape(-1, 4)
        self.reference_signs = torch.sign(self._signed(ref))[0]

    @property
    def n_elements(self) -> int:
        """Number of checked stereo elements ``C + D``."""
        return self.centres.shape[0] + self.double_bonds.shape[0]

    def _signed(self, x: Tensor) -> Tensor:
        """``[B, C + D]`` signed volumes (nm^3) and cis/trans dot products (nm^2)."""
        c = self.centres.to(x.device)
        centre = x[:, c[:, 0]]
        v1, v2, v3 = (x[:, c[:, m]] - centre for m in (1, 2, 3))
        volumes = (v1 * torch.linalg.cross(v2, v3, dim=-1)).sum(-1)
        d = self.double_bonds.to(x.device)
        pa, pb, pc, pd = (x[:, d[:, m]] for m in range(4))
        axis = pc - pb
        axis = axis / axis.norm(dim=-1, keepdim=True)
        ua, ud = pa - pb, pd - pc
        ua = ua - (ua * axis).sum(-1, keepdim=True) * axis
        ud = ud - (ud * axis).sum(-1, keepdim=True) * axis
        return torch.cat([volumes, (ua * ud).sum(-1)], dim=-1)

    def mismatches(self, x: Tensor) -> Tensor:
        """Which stereo elements of each sample differ from the reference.

        Args:
            x: ``[B, N, 3]`` positions in nm.

        Returns:
            ``[B, C + D]`` bool: centres first (in :attr:`centres` order), then double bonds.
        """
        x = as_positions(x, self.molecule.n_atoms, self.molecule.source)
        signs = torch.sign(self._signed(x))
        return signs != self.reference_signs.to(device=x.device, dtype=signs.dtype)

    def flag(self, x: Tensor) -> Tensor:
        """``[B]`` bool: True where any stereo element of the sample differs from the reference."""
        return self.mismatches(x).any(dim=-1)

    def drop(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Removes the samples whose stereo differs.

        Args:
            x: ``[B, N, 3]`` positions in nm.

        Returns:
            ``(kept, keep)``: ``[K, N, 3]`` positions and the ``[B]`` bool mask that selected them.
        """
        keep = ~self.flag(x)
        return x[keep], keep
