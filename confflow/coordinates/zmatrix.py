"""Z-matrices for any connected molecular graph: which atoms define each atom's position.

A Z-matrix is a placement order of the ``N`` atoms and, for each atom ``i``, up to three
reference atoms placed before it: ``j`` (bond ``i-j``), ``k`` (angle ``i-j-k``) and ``l``
(torsion ``i-j-k-l``). Row 0 has no reference, row 1 only ``j``, row 2 ``j`` and ``k``; these
three atoms fix the rigid-body frame (see :mod:`confflow.coordinates.internal`).

The builder (:meth:`ZMatrix.from_molecule`) is deterministic and works on chains, branches,
fused, bridged and macro-rings alike, because it only needs a spanning tree:

1. The root is the heavy atom with the most heavy neighbours (ties: most neighbours, then the
   lowest index) among atoms that are not linear (sp with two neighbours). Row 1 is its first
   neighbour (heavy first, lowest index), row 2 its next neighbour.
2. The other heavy atoms follow in breadth-first order over heavy-atom bonds (neighbours by
   increasing index); then every hydrogen, grouped by parent in the parents' placement order.
3. ``j`` is the atom's tree parent and ``k`` the parent's parent (row 1 for children of the root).
4. ``l``: the first atom placed with the same ``(j, k)`` is the *first sibling*; it takes a
   placed neighbour of ``k`` (else of ``j``, else the earliest placed atom) that is not on the
   line through ``j`` and ``k``. Every later sibling uses the first sibling as ``l``, an
   improper-like torsion that keeps branches and stereocentres narrow and stable.

Atoms are never referenced through a straight line: linear centres (sp atoms with two
neighbours: nitriles, alkynes, allenes, azides) and chains of them are perceived from the graph,
and no ``(j, k, l)`` triple is chosen from one straight chain.

Example:
    >>> from confflow.chem import Molecule
    >>> zm = ZMatrix.from_molecule(Molecule.from_smiles("CCO"))
    >>> zm.rows[:3]
    ((1, -1, -1, -1), (0, 1, -1, -1), (2, 1, 0, -1))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rdkit import Chem

from confflow.chem.molecule import Molecule
from confflow.errors import InputError

__all__ = ["ZMatrix", "ZMatrixError"]


class ZMatrixError(InputError):
    """A Z-matrix or molecular graph that cannot define internal coordinates."""


@dataclass(frozen=True)
class ZMatrix:
    """A validated Z-matrix.

    Attributes:
        rows: one ``(atom, j, k, l)`` per atom in placement order; ``-1`` marks an unused
            reference (row 0: ``j, k, l``; row 1: ``k, l``; row 2: ``l``).
        n_atoms: number of atoms ``N``.
    """

    rows: tuple[tuple[int, int, int, int], ...]

    def __post_init__(self) -> None:
        _validate_rows(self.rows)

    @property
    def n_atoms(self) -> int:
        """Number of atoms ``N``."""
        return len(self.rows)

    @property
    def order(self) -> tuple[int, ...]:
        """Placement order of the atoms."""
        return tuple(r[0] for r in self.rows)

    @property
    def generations(self) -> tuple[tuple[int, ...], ...]:
        """Rows grouped for batched placement, excluding the frame rows 0-2.

        Generation ``g`` holds the rows whose references all lie in rows 0-2 or earlier
        generations, so all its atoms can be placed in one vectorised step.
        """
        row_of = {r[0]: n for n, r in enumerate(self.rows)}
        gen = [0, 0, 0]
        for _, *refs in self.rows[3:]:
            gen.append(1 + max(gen[row_of[r]] for r in refs))
        n_gen = max(gen)
        return tuple(
            tuple(n for n in range(3, len(gen)) if gen[n] == g) for g in range(1, n_gen + 1)
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]]) -> ZMatrix:
        """A user-supplied Z-matrix, validated.

        Args:
            rows: ``N`` rows ``(atom, j, k, l)`` (``-1`` or missing for unused references).

        Raises:
            ZMatrixError: naming the first bad row and why.
        """
        out = []
        for n, row in enumerate(rows):
            r = [int(v) for v in row] + [-1] * (4 - len(row))
            if len(r) != 4:
                raise ZMatrixError(f"Z-matrix row {n}: expected at most 4 entries, got {len(row)}")
            out.append((r[0], r[1], r[2], r[3]))
        return cls(tuple(out))

    @classmethod
    def from_molecule(cls, molecule: Molecule | Chem.Mol) -> ZMatrix:
        """Builds the Z-matrix of a molecule's graph (see the module docstring for the rules).

        Raises:
            ZMatrixError: fewer than 3 atoms, a disconnected graph, or a linear molecule.
        """
        mol = molecule.rdkit_mol if isinstance(molecule, Molecule) else molecule
        return cls(_build(mol))


def _validate_rows(rows: Sequence[tuple[int, int, int, int]]) -> None:
    n = len(rows)
    if n < 3:
        raise ZMatrixError(f"Z-matrix: needs at least 3 atoms, got {n}")
    atoms = [r[0] for r in rows]
    if sorted(atoms) != list(range(n)):
        raise ZMatrixError(f"Z-matrix: atoms must be 0..{n - 1} each exactly once")
    placed: set[int] = set()
    for row, (atom, *refs) in enumerate(rows):
        used = min(row, 3)
        if any(r != -1 for r in refs[used:]):
            raise ZMatrixError(f"Z-matrix row {row}: only {used} reference(s) allowed, got {refs}")
        active = refs[:used]
        if len(set(active)) != used or atom in active:
            raise ZMatrixError(f"Z-matrix row {row}: references {active} of atom {atom} repeat")
        missing = [r for r in active if r not in placed]
        if missing:
            raise ZMatrixError(
                f"Z-matrix row {row}: atom {atom} references {missing} before they are placed"
            )
        placed.add(atom)


def _collinear_groups(mol: Chem.Mol) -> list[set[int]]:
    """Sets of atoms on one straight line, from sp centres with exactly two neighbours."""
    groups: list[set[int]] = []
    for atom in mol.GetAtoms():
        if atom.GetDegree() == 2 and atom.GetHybridization() == Chem.HybridizationType.SP:
            groups.append({atom.GetIdx(), *(n.GetIdx() for n in atom.GetNeighbors())})
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if len(groups[a] & groups[b]) >= 2:
                    groups[a] |= groups.pop(b)
                    merged = True
                    break
            if merged:
                break
    return groups


def _build(mol: Chem.Mol) -> tuple[tuple[int, int, int, int], ...]:
    n = mol.GetNumAtoms()
    if n < 3:
        raise ZMatrixError(f"molecule {Chem.MolToSmiles(mol)!r}: needs at least 3 atoms, got {n}")
    heavy = [a.GetAtomicNum() > 1 for a in mol.GetAtoms()]
    nbrs = [sorted(x.GetIdx() for x in a.GetNeighbors()) for a in mol.GetAtoms()]
    groups = _collinear_groups(mol)

    def collinear(a: int, b: int, c: int) -> bool:
        return any({a, b, c} <= g for g in groups)

    def sorted_nbrs(u: int) -> list[int]:
        return sorted(nbrs[u], key=lambda v: (not heavy[v], v))

    linear = {a for g in groups for a in g if len([v for v in nbrs[a] if v in g]) == 2}
    candidates = [a for a in range(n) if len(nbrs[a]) >= 2 and a not in linear]
    if not candidates:
        raise ZMatrixError(
            f"molecule {Chem.MolToSmiles(mol)!r}: linear molecule, 3N-6 coordinates do not apply"
        )
    root = max(
        candidates,
        key=lambda a: (heavy[a], sum(heavy[v] for v in nbrs[a]), len(nbrs[a]), -a),
    )
    first, *rest = sorted_nbrs(root)
    second = next((v for v in rest if not collinear(v, root, first)), rest[0])
    order = [root, first, second]
    parent: dict[int, int | None] = {root: None, first: root, second: root}
    queue = deque(a for a in order if heavy[a])
    while queue:
        u = queue.popleft()
        for v in nbrs[u]:
            if heavy[v] and v not in parent:
                parent[v] = u
                order.append(v)
                queue.append(v)
    for u in list(order):
        for v in nbrs[u]:
            if v not in parent:
                parent[v] = u
                order.append(v)
    if len(order) != n:
        raise ZMatrixError(
            f"molecule {Chem.MolToSmiles(mol)!r}: graph is disconnected "
            f"({n - len(order)} atoms unreachable)"
        )

    rank = {a: r for r, a in enumerate(order)}
    rows = [(root, -1, -1, -1), (first, root, -1, -1), (second, root, first, -1)]
    first_sibling: dict[tuple[int, int], int] = {(root, first): second}
    for i in order[3:]:
        j = parent[i]
        k = parent[j] if parent[j] is not None else first
        key = (j, k)
        sibling = first_sibling.get(key)
        if sibling is not None and not collinear(j, k, sibling):
            torsion_ref = sibling
        else:
            pool = [v for v in nbrs[k] if v != j] + [v for v in nbrs[j] if v != k] + order
            placed = [v for v in pool if rank[v] < rank[i] and v not in (i, j, k)]
            torsion_ref = next((v for v in placed if not collinear(j, k, v)), None)
            if torsion_ref is None:
                raise ZMatrixError(
                    f"molecule {Chem.MolToSmiles(mol)!r}: no torsion reference off the line "
                    f"{j}-{k} for atom {i}"
                )
            first_sibling.setdefault(key, i)
        rows.append((i, j, k, torsion_ref))
    return tuple(rows)
