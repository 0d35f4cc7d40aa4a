import pytest
from rdkit import Chem

from confflow.chem import Molecule
from confflow.coordinates import ZMatrix, ZMatrixError
from confflow.coordinates.zmatrix import _collinear_groups

from .conftest import diverse_smiles, molecule

SHAPES = {
    "chain": "CCCCCO",
    "branches": "CC(C)(C)C(O)C(N)=O",
    "fused": "c1ccc2ccccc2c1",
    "bridged": "C1C2CC3CC1CC(C2)C3",
    "macrocycle": "C1CCCCCCCCCCCCC1",
    "alkyne": "CC#CC",
    "nitrile": "N#Cc1ccccc1",
    "water": "O",
}


def check_rows(zm: ZMatrix, mol: Molecule) -> None:
    placed = set()
    for n, (atom, *refs) in enumerate(zm.rows):
        refs = [r for r in refs if r != -1]
        assert len(refs) == min(n, 3)
        assert all(r in placed for r in refs)
        placed.add(atom)
    assert placed == set(range(mol.n_atoms))


@pytest.mark.parametrize("smiles", SHAPES.values(), ids=SHAPES.keys())
def test_builder_rules(smiles):
    mol = molecule(smiles)
    zm = ZMatrix.from_molecule(mol)
    assert zm == ZMatrix.from_molecule(mol)  # deterministic
    check_rows(zm, mol)
    heavy = [a for a in zm.order if mol.elements[a] != "H"]
    n_heavy = len(heavy)
    # heavy atoms first (only the third frame atom may be a hydrogen)
    assert [a for a in zm.order[: n_heavy + 1] if mol.elements[a] != "H"] == heavy
    rd = mol.rdkit_mol
    for atom, j, _, _ in zm.rows[1:]:
        assert rd.GetBondBetweenAtoms(atom, j) is not None  # bonds are real bonds
    for atom, j, k, _ in zm.rows[2:]:
        if rd.GetBondBetweenAtoms(j, k) is None:
            pytest.fail(f"angle {atom}-{j}-{k} does not follow bonds")


def test_later_siblings_use_the_first_sibling():
    mol = molecule("CC(F)(Cl)Br")
    zm = ZMatrix.from_molecule(mol)
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for atom, j, k, tor in zm.rows[2:]:
        groups.setdefault((j, k), []).append((atom, tor))
    methyl_h = [rows for (j, _), rows in groups.items() if j == 0]
    assert methyl_h, "methyl hydrogens must share references"
    for rows in groups.values():
        first = rows[0][0]
        assert all(tor == first for _, tor in rows[1:])
    assert any(len(rows) >= 3 for rows in groups.values())


def test_no_torsion_through_a_straight_line():
    for smiles in ("CC#CC", "CC#CC#CC", "N#CCC#N", "C=C=C", "CN=[N+]=[N-]", "CC#N"):
        mol = Molecule.from_smiles(smiles)
        groups = _collinear_groups(mol.rdkit_mol)
        assert groups
        zm = ZMatrix.from_molecule(mol)
        for _, j, k, tor in zm.rows[3:]:
            assert not any({j, k, tor} <= g for g in groups), smiles
        for a, b, c in (zm.order[:3],):
            assert not any({a, b, c} <= g for g in groups)


def test_generations_place_references_first():
    mol = molecule("CC(=O)N[C@@H](C)C(=O)NC")
    zm = ZMatrix.from_molecule(mol)
    done = set(zm.order[:3])
    for gen in zm.generations:
        for row in gen:
            _, *refs = zm.rows[row]
            assert all(r in done for r in refs)
        done |= {zm.rows[row][0] for row in gen}
    assert done == set(range(mol.n_atoms))
    assert sum(len(g) for g in zm.generations) == mol.n_atoms - 3


def test_every_diverse_molecule_gets_a_valid_zmatrix():
    for smiles, name in diverse_smiles():
        mol = molecule(smiles)
        zm = ZMatrix.from_molecule(mol)
        assert zm.n_atoms == mol.n_atoms, name


def test_user_zmatrix_is_validated():
    rows = [(1, -1, -1, -1), (0, 1), (2, 1, 0), (3, 0, 1, 2)]
    zm = ZMatrix.from_rows(rows)
    assert zm.rows[1] == (0, 1, -1, -1)
    with pytest.raises(ZMatrixError, match="needs at least 3 atoms, got 2"):
        ZMatrix.from_rows([(0,), (1, 0)])
    with pytest.raises(ZMatrixError, match=r"atoms must be 0..3 each exactly once"):
        ZMatrix.from_rows([(1,), (0, 1), (2, 1, 0), (2, 0, 1, 0)])
    with pytest.raises(
        ZMatrixError, match=r"row 3: atom 3 references \[4\] before they are placed"
    ):
        ZMatrix.from_rows([(1,), (0, 1), (2, 1, 0), (3, 0, 1, 4), (4, 0, 1, 2)])
    with pytest.raises(ZMatrixError, match=r"row 2: references \[1, 1\] of atom 2 repeat"):
        ZMatrix.from_rows([(1,), (0, 1), (2, 1, 1), (3, 0, 1, 2)])
    with pytest.raises(ZMatrixError, match=r"row 1: only 1 reference\(s\) allowed"):
        ZMatrix.from_rows([(1,), (0, 1, 2), (2, 1, 0), (3, 0, 1, 2)])
    with pytest.raises(ZMatrixError, match="row 0: expected at most 4 entries, got 5"):
        ZMatrix.from_rows([(1, -1, -1, -1, -1), (0, 1), (2, 1, 0)])


def test_graph_errors():
    with pytest.raises(ZMatrixError, match=r"molecule 'O=C=O': linear molecule"):
        ZMatrix.from_molecule(Molecule.from_smiles("O=C=O"))
    with pytest.raises(ZMatrixError, match="needs at least 3 atoms, got 2"):
        ZMatrix.from_molecule(Molecule.from_smiles("[H][H]"))
    two = Chem.AddHs(Chem.MolFromSmiles("CC.CC"))
    with pytest.raises(ZMatrixError, match=r"graph is disconnected \(8 atoms unreachable\)"):
        ZMatrix.from_molecule(two)
