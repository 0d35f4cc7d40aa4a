"""The discrete conformational states of a molecule: ring puckers, invertomers, amide isomers.

Conformers of one molecule fall into states separated by barriers that neither local
relaxation nor short MD crosses (40-90 kJ/mol): the puckers of saturated rings (chair, boat,
twist-boat, envelope; the axial/equatorial placements they imply), the invertomers of
pyramidal nitrogens, and the cis/trans isomers about amide, carbamate and ester bonds.
:class:`StateElements` lists where a molecule has them; :func:`state_descriptor` measures them
in conformers and :func:`group_states` groups conformers into states.

Atoms are labelled: two conformers that differ only by a permutation of symmetric atoms (the
two chairs of cyclohexane) are different states, as they are different regions of the labelled
configuration space that a flow samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rdkit import Chem
from torch import Tensor

from confflow.chem.molecule import Molecule
from confflow.domains import wrap_angle

__all__ = [
    "MAX_RING",
    "RING_TOLERANCE",
    "StateDescriptor",
    "StateElements",
    "flip_isomer_bonds",
    "group_states",
    "state_descriptor",
]

#: Largest ring (atoms) whose puckers are states; larger rings are macrocycles.
MAX_RING = 8
#: Largest difference (rad) of an endocyclic torsion between conformers of one ring state.
RING_TOLERANCE = 0.6

#: A single, acyclic bond from a carbonyl (or thiocarbonyl) carbon to N or O with a substituent.
_ISOMER_BOND = Chem.MolFromSmarts("[CX3](=[OX1,SX1])-!@[NX3,OX2]")


@dataclass(frozen=True)
class StateElements:
    """Where a molecule has discrete conformational states (atom indices, RDKit order).

    Attributes:
        rings: flexible rings, each its atoms in ring order: rings of 4 to :data:`MAX_RING`
            atoms with at least one sp3 atom (so never aromatic; the saturated ring of a
            tetralin or indane is one).
        macrocycles: smallest rings of more than :data:`MAX_RING` atoms, in ring order.
        centres: ``(n, a, b, c)``, atoms whose local chirality (the sign of the volume of
            ``a - n, b - n, c - n``) is a state: invertible nitrogens (sp3, uncharged, three
            neighbours, hydrogens included; ``a < b < c``; not acyclic ones with two alike
            neighbours, whose invertomers differ by a relabelling) and sp3 ring atoms with two ring
            neighbours ``a < b`` and two exocyclic neighbours of different canonical rank, ``c``
            the higher-ranked one (the side of a substituent: axial or equatorial in a chair).
        isomer_bonds: amide, carbamate, urea, thioamide and ester bonds as torsions
            ``(r1, c, x, r2)`` about the acyclic ``c-x`` bond (``c`` the carbonyl carbon):
            ``r1`` the carbon's neighbour other than the carbonyl O/S and ``x``, ``r2`` the
            neighbour of ``x`` other than ``c`` with the most heavy neighbours (heavy atoms
            first, then the lowest index): for a peptide bond the torsion is omega, and
            trans (``|omega| > pi/2``) is the usual trans. cis when ``|torsion| < pi/2``.
    """

    rings: tuple[tuple[int, ...], ...]
    macrocycles: tuple[tuple[int, ...], ...]
    centres: tuple[tuple[int, int, int, int], ...]
    isomer_bonds: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def from_molecule(cls, molecule: Molecule) -> StateElements:
        """The state elements of ``molecule``."""
        mol = molecule.rdkit_mol
        rings, macrocycles = [], []
        for ring in mol.GetRingInfo().AtomRings():
            atoms = [mol.GetAtomWithIdx(i) for i in ring]
            if len(ring) > MAX_RING:
                macrocycles.append(tuple(ring))
            elif len(ring) >= 4 and any(
                a.GetHybridization() == Chem.HybridizationType.SP3 for a in atoms
            ):
                rings.append(tuple(ring))
        centres = [*_nitrogens(mol), *_ring_centres(mol, rings)]
        bonds = set()
        for c, o, x in mol.GetSubstructMatches(_ISOMER_BOND):
            r1 = min(
                n.GetIdx() for n in mol.GetAtomWithIdx(c).GetNeighbors() if n.GetIdx() not in (o, x)
            )
            others = [n for n in mol.GetAtomWithIdx(x).GetNeighbors() if n.GetIdx() != c]
            heavy = [n for n in others if n.GetAtomicNum() > 1]
            # the most substituted heavy neighbour (proline's C-alpha, not its C-delta)
            branch = max(heavy or others, key=lambda n: (_heavy_degree(n), -n.GetIdx()))
            r2 = branch.GetIdx()
            bonds.add((r1, c, x, r2))
        return cls(tuple(rings), tuple(macrocycles), tuple(sorted(centres)), tuple(sorted(bonds)))

    @property
    def empty(self) -> bool:
        """No flexible ring, invertible nitrogen or isomer bond: one state only."""
        return not (self.rings or self.centres or self.isomer_bonds)

    def ring_torsions(self) -> tuple[tuple[int, int, int, int], ...]:
        """The endocyclic torsions of every flexible ring, ring after ring."""
        quads = []
        for ring in self.rings:
            m = len(ring)
            quads += [tuple(ring[(i + k) % m] for k in range(4)) for i in range(m)]
        return tuple(quads)


def _heavy_degree(atom: Chem.Atom) -> tuple[int, int]:
    """(heavy atom?, number of heavy neighbours): the order of an amide's N substituents."""
    heavy = sum(n.GetAtomicNum() > 1 for n in atom.GetNeighbors())
    return (int(atom.GetAtomicNum() > 1), heavy)


def _nitrogens(mol: Chem.Mol) -> list[tuple[int, int, int, int]]:
    """Invertible nitrogens as centres ``(n, a, b, c)``.

    An acyclic one with two alike neighbours (a dimethylamino group) is left out: its
    invertomers are the same state with those neighbours relabelled.
    """
    rank = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    out = []
    for atom in mol.GetAtoms():
        if (
            atom.GetAtomicNum() == 7
            and atom.GetDegree() == 3
            and atom.GetFormalCharge() == 0
            and not atom.GetIsAromatic()
            and atom.GetHybridization() == Chem.HybridizationType.SP3
        ):
            around = sorted(n.GetIdx() for n in atom.GetNeighbors())
            alike = len({rank[i] for i in around}) < 3
            if alike and not atom.IsInRing():
                continue
            out.append((atom.GetIdx(), around[0], around[1], around[2]))
    return out


def _ring_centres(mol: Chem.Mol, rings: list[tuple[int, ...]]) -> list[tuple[int, int, int, int]]:
    rank = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    out = []
    for ring in rings:
        members = set(ring)
        for centre in ring:
            atom = mol.GetAtomWithIdx(centre)
            if atom.GetAtomicNum() == 7 or atom.GetDegree() != 4:
                continue
            inside = [n.GetIdx() for n in atom.GetNeighbors() if n.GetIdx() in members]
            outside = [n.GetIdx() for n in atom.GetNeighbors() if n.GetIdx() not in members]
            if len(inside) == 2 and len(outside) == 2 and rank[outside[0]] != rank[outside[1]]:
                a, b = sorted(inside)
                c = max(outside, key=lambda j: rank[j])
                out.append((centre, a, b, c))
    return sorted(set(out))


@dataclass(frozen=True)
class StateDescriptor:
    """What decides the state of ``B`` conformers.

    Attributes:
        ring_torsions: ``[B, T]`` endocyclic torsions (rad) of
            :meth:`StateElements.ring_torsions`.
        chirality: ``[B, V]`` sign (+1/-1) of the signed volume of each centre.
        cis: ``[B, A]`` bool, the isomer bonds that are cis.
    """

    ring_torsions: Tensor
    chirality: Tensor
    cis: Tensor


def _dihedrals(x: Tensor, quads: tuple[tuple[int, ...], ...]) -> Tensor:
    """``[B, Q]`` torsions (rad, ``[-pi, pi]``) of positions ``[B, N, 3]``."""
    if not quads:
        return x.new_zeros(x.shape[0], 0)
    idx = torch.tensor(quads, dtype=torch.long, device=x.device)
    p0, p1, p2, p3 = (x[:, idx[:, k]] for k in range(4))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = torch.cross(b0, b1, dim=-1), torch.cross(b1, b2, dim=-1)
    m1 = torch.cross(n1, b1 / b1.norm(dim=-1, keepdim=True), dim=-1)
    return torch.atan2((m1 * n2).sum(-1), (n1 * n2).sum(-1))


def state_descriptor(elements: StateElements, x: Tensor) -> StateDescriptor:
    """Measures the state elements in conformers ``x [B, N, 3]`` (nm)."""
    x = x.double()
    rings = _dihedrals(x, elements.ring_torsions())
    if elements.centres:
        idx = torch.tensor(elements.centres, dtype=torch.long, device=x.device)
        centre = x[:, idx[:, 0]]
        arms = torch.stack([x[:, idx[:, k]] - centre for k in (1, 2, 3)], dim=-2)
        chirality = torch.sign(torch.linalg.det(arms)).to(torch.int8)
    else:
        chirality = torch.zeros(x.shape[0], 0, dtype=torch.int8, device=x.device)
    cis = _dihedrals(x, elements.isomer_bonds).abs() < torch.pi / 2
    return StateDescriptor(rings, chirality, cis)


def group_states(descriptor: StateDescriptor, tolerance: float = RING_TOLERANCE) -> Tensor:
    """Groups conformers into states: ``[B]`` labels ``0..S-1`` in order of first appearance.

    Two conformers share a state when their centres have the same chirality signs, their
    isomer bonds the same cis/trans, and a chain of conformers links them whose endocyclic
    torsions differ by at most ``tolerance`` rad each (single linkage, so a continuous
    pseudorotation valley is one state).

    Args:
        descriptor: the conformers' :class:`StateDescriptor`.
        tolerance: rad.
    """
    n = descriptor.ring_torsions.shape[0]
    discrete = torch.cat([descriptor.chirality.long(), descriptor.cis.long()], dim=1)
    torsions = descriptor.ring_torsions
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        same = (discrete == discrete[i]).all(1)
        gap = wrap_angle(torsions - torsions[i]).abs()
        close = (gap <= tolerance).all(1)
        for j in torch.nonzero(same & close).squeeze(1).tolist():
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = [root(i) for i in range(n)]
    first: dict[int, int] = {}
    return torch.tensor([first.setdefault(r, len(first)) for r in roots], dtype=torch.long)


def flip_isomer_bonds(molecule: Molecule, elements: StateElements, x: Tensor) -> Tensor:
    """Conformers with one isomer bond turned by 180 degrees: cis <-> trans proposals.

    For each isomer bond ``c-x`` the atoms on ``x``'s side rotate rigidly by pi about the
    bond (to be minimised again: the result has the other isomer, strained elsewhere).

    Args:
        molecule: the molecule.
        elements: its state elements.
        x: ``[B, N, 3]`` positions (nm).

    Returns:
        ``[A * B, N, 3]``: bond after bond, every conformer of ``x`` with that bond turned.
    """
    adjacency: dict[int, set[int]] = {i: set() for i in range(molecule.n_atoms)}
    for a, b in molecule.bonds:
        adjacency[a].add(b)
        adjacency[b].add(a)
    out = []
    for _, c, far, _ in elements.isomer_bonds:
        side, todo = {far}, [far]
        while todo:
            for j in adjacency[todo.pop()] - side - {c}:
                side.add(j)
                todo.append(j)
        moved = sorted(side - {far})
        axis = x[:, far] - x[:, c]
        axis = axis / axis.norm(dim=-1, keepdim=True)
        rel = x[:, moved] - x[:, far, None]
        along = (rel * axis[:, None]).sum(-1, keepdim=True) * axis[:, None]
        turned = x.clone()
        turned[:, moved] = x[:, far, None] + 2 * along - rel  # rotation by pi about the bond
        out.append(turned)
    return torch.cat(out) if out else x.new_zeros(0, *x.shape[1:])
