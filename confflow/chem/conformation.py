r"""Readable names of conformations: ring puckers, axial/equatorial substituents, isomers.

Ring puckering follows Cremer and Pople (J. Am. Chem. Soc. 97, 1354, 1975). For a ring of
``M`` atoms in ring order, centred on their centroid, the mean-plane normal is
:math:`n \propto R' \times R''` with :math:`R' = \sum_j r_j \sin(2\pi j/M)` and
:math:`R'' = \sum_j r_j \cos(2\pi j/M)`; the displacements :math:`z_j = r_j \cdot n` give the
amplitudes and phases

.. math::

    q_m \cos\phi_m = \sqrt{2/M} \sum_j z_j \cos(2\pi m j/M), \quad
    q_m \sin\phi_m = -\sqrt{2/M} \sum_j z_j \sin(2\pi m j/M),

for :math:`2 \le m \le (M-1)/2`, and for even ``M`` :math:`q_{M/2} = \sqrt{1/M} \sum_j
(-1)^j z_j`. The total amplitude is :math:`Q = (\sum_j z_j^2)^{1/2}`. For six-membered rings
:math:`q_2 = Q \sin\theta`, :math:`q_3 = Q \cos\theta`: :math:`\theta = 0` and :math:`\pi` are
the two chairs, :math:`\theta = \pi/2` the boat/twist-boat equator (boats at
:math:`\phi_2 = k \cdot 60°`, twist-boats in between). Five-membered rings have envelopes at
:math:`\phi_2 = k \cdot 36°` and twists in between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rdkit import Chem
from torch import Tensor

from confflow.chem.molecule import Molecule
from confflow.chem.states import StateElements, state_descriptor

__all__ = [
    "AXIAL_ANGLE",
    "PLANAR_Q",
    "ConformationLabeler",
    "Puckering",
    "cremer_pople",
    "ring_conformation",
    "substituent_position",
]

#: Total puckering amplitude (nm) below which a ring is called planar (cyclohexane's chair
#: has Q = 0.056 nm, cyclopentane 0.043 nm).
PLANAR_Q = 0.01
#: A substituent is axial when its bond makes less than this angle (rad) with the ring normal.
AXIAL_ANGLE = math.radians(45.0)


@dataclass(frozen=True)
class Puckering:
    """Cremer-Pople coordinates of one ring in ``B`` conformers.

    Attributes:
        normal: ``[B, 3]`` unit normal of the mean plane.
        z: ``[B, M]`` displacements (nm) of the ring atoms from the mean plane.
        amplitude: ``[B]`` total puckering amplitude ``Q`` (nm).
        q: ``[B, P]`` amplitudes ``q_m`` (nm), ``m = 2..M//2``.
        phi: ``[B, P']`` phases ``phi_m`` (rad, ``[0, 2 pi)``), ``m = 2..(M-1)//2``.
        theta: ``[B]`` polar angle (rad, ``[0, pi]``) of six-membered rings, else NaN.
    """

    normal: Tensor
    z: Tensor
    amplitude: Tensor
    q: Tensor
    phi: Tensor
    theta: Tensor


def cremer_pople(x: Tensor, ring: Sequence[int]) -> Puckering:
    """Cremer-Pople puckering of ``ring`` (atom indices in ring order) in ``x [B, N, 3]`` nm."""
    r = x[:, list(ring)].double()
    r = r - r.mean(1, keepdim=True)
    m = len(ring)
    j = torch.arange(m, dtype=torch.float64, device=x.device)
    angle = 2 * math.pi * j / m
    r1 = (r * torch.sin(angle)[None, :, None]).sum(1)
    r2 = (r * torch.cos(angle)[None, :, None]).sum(1)
    normal = torch.linalg.cross(r1, r2)
    normal = normal / normal.norm(dim=-1, keepdim=True)
    z = (r * normal[:, None]).sum(-1)
    qs, phis = [], []
    for k in range(2, (m - 1) // 2 + 1):
        c = math.sqrt(2 / m) * (z * torch.cos(k * angle)).sum(1)
        s = -math.sqrt(2 / m) * (z * torch.sin(k * angle)).sum(1)
        qs.append(torch.hypot(c, s))
        phis.append(torch.remainder(torch.atan2(s, c), 2 * math.pi))
    if m % 2 == 0:
        qs.append(math.sqrt(1 / m) * (z * torch.cos(math.pi * j)).sum(1))
    q = torch.stack(qs, 1) if qs else z.new_zeros(z.shape[0], 0)
    phi = torch.stack(phis, 1) if phis else z.new_zeros(z.shape[0], 0)
    theta = torch.full_like(z[:, 0], math.nan)
    if m == 6:
        theta = torch.atan2(q[:, 0], q[:, 1])
    return Puckering(normal, z, z.norm(dim=1), q, phi, theta)


def _nearest(phi: Tensor, period: float) -> Tensor:
    """Whether ``phi`` lies nearer a multiple of ``period`` than a half-period point."""
    frac = torch.remainder(phi / period, 1.0)
    return (frac < 0.25) | (frac > 0.75)


def ring_conformation(x: Tensor, ring: Sequence[int]) -> list[str]:
    """The name of the ring's conformation in each conformer ``x [B, N, 3]`` (nm).

    ``"planar"`` below :data:`PLANAR_Q`; 4-rings ``"puckered"``; 5-rings ``"envelope"`` or
    ``"twist"``; 6-rings ``"chair"`` (``theta`` within 30 degrees of a pole), ``"boat"`` or
    ``"twist-boat"`` (within 30 degrees of the equator), else ``"envelope"`` or
    ``"half-chair"``; larger rings ``"puckered"``.
    """
    p = cremer_pople(x, ring)
    m = len(ring)
    names = []
    for b in range(x.shape[0]):
        if float(p.amplitude[b]) < PLANAR_Q:
            names.append("planar")
        elif m == 5:
            envelope = bool(_nearest(p.phi[b, 0], math.radians(36.0)))
            names.append("envelope" if envelope else "twist")
        elif m == 6:
            theta = math.degrees(float(p.theta[b]))
            boat_like = bool(_nearest(p.phi[b, 0], math.radians(60.0)))
            if theta < 30.0 or theta > 150.0:
                names.append("chair")
            elif 60.0 <= theta <= 120.0:
                names.append("boat" if boat_like else "twist-boat")
            else:
                names.append("envelope" if boat_like else "half-chair")
        else:
            names.append("puckered")
    return names


def substituent_position(x: Tensor, ring: Sequence[int], atom: int, substituent: int) -> Tensor:
    """``[B]`` bool, True where the bond ``atom -> substituent`` is axial.

    Axial: the bond makes less than :data:`AXIAL_ANGLE` with the ring's mean-plane normal
    (either direction); equatorial otherwise.

    Args:
        x: ``[B, N, 3]`` positions in nm.
        ring: the ring's atoms in ring order.
        atom: a ring atom.
        substituent: its exocyclic neighbour.
    """
    normal = cremer_pople(x, ring).normal
    bond = (x[:, substituent] - x[:, atom]).double()
    cos = (bond * normal).sum(-1).abs() / bond.norm(dim=-1)
    return cos > math.cos(AXIAL_ANGLE)


class ConformationLabeler:
    """One readable label per conformer of a molecule.

    Per flexible ring (:class:`~confflow.chem.states.StateElements`): its atoms, its
    conformation and the axial/equatorial position of every exocyclic heavy substituent of an
    sp3 ring atom and of the hydrogen on a ring nitrogen; per amide/ester bond: cis or trans.
    E.g. ``"ring 1-2-3-4-5-6 chair (0 eq); amide 3-2 trans"`` (atoms 0-based). The two chairs
    of a symmetric ring read the same.

    Args:
        molecule: the molecule.
    """

    def __init__(self, molecule: Molecule) -> None:
        self.elements = StateElements.from_molecule(molecule)
        mol = molecule.rdkit_mol
        self.substituents: list[list[tuple[int, int]]] = []
        for ring in self.elements.rings:
            members, pairs = set(ring), []
            for a in ring:
                atom = mol.GetAtomWithIdx(a)
                for n in atom.GetNeighbors():
                    i = n.GetIdx()
                    sp3 = atom.GetHybridization() == Chem.HybridizationType.SP3
                    heavy = n.GetAtomicNum() > 1 and sp3
                    nh = n.GetAtomicNum() == 1 and atom.GetAtomicNum() == 7
                    if i not in members and (heavy or nh):
                        pairs.append((a, i))
            self.substituents.append(pairs)

    def labels(self, x: Tensor) -> list[str]:
        """Labels of conformers ``x [B, N, 3]`` (nm)."""
        parts: list[list[str]] = []
        for ring, pairs in zip(self.elements.rings, self.substituents, strict=True):
            names = ring_conformation(x, ring)
            sides = [substituent_position(x, ring, a, s) for a, s in pairs]
            atoms = "-".join(map(str, ring))
            column = []
            for b, name in enumerate(names):
                where = ", ".join(
                    f"{s} {'ax' if bool(side[b]) else 'eq'}"
                    for (_, s), side in zip(pairs, sides, strict=True)
                )
                column.append(f"ring {atoms} {name}" + (f" ({where})" if where else ""))
            parts.append(column)
        if self.elements.isomer_bonds:
            cis = state_descriptor(self.elements, x).cis
            for i, (_, c, far, _) in enumerate(self.elements.isomer_bonds):
                parts.append(
                    [f"amide {c}-{far} {'cis' if bool(v) else 'trans'}" for v in cis[:, i]]
                )
        if not parts:
            return ["-"] * x.shape[0]
        return ["; ".join(p) for p in zip(*parts, strict=True)]
