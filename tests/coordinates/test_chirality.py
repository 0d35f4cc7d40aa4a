import math

import pytest
import torch
from rdkit import Chem

from confflow.coordinates import InternalCoordinates, StereoCheck, ZMatrix

from .conftest import diverse_smiles, molecule


def chiral_molecules():
    out = []
    for smiles, name in diverse_smiles():
        mol = molecule(smiles)
        centres = Chem.FindMolChiralCenters(mol.rdkit_mol, useLegacyImplementation=False)
        if centres and not mol.unspecified_stereo and len(mol.heavy_atoms) <= 30:
            out.append((name, mol))
    return out


CHIRAL = chiral_molecules()


def test_enough_chiral_molecules():
    assert len(CHIRAL) >= 30


def test_mirror_images_detected_and_etkdg_conformers_pass():
    n_centres = 0
    for name, mol in CHIRAL:
        check = StereoCheck(mol, seed=1)
        assert check.centres.shape[0] > 0, name
        x = mol.embed(4, seed=2, num_threads=1)
        assert not bool(check.flag(x).any()), f"{name}: false alarm on ETKDG conformers"
        mirrored = x.clone()
        mirrored[..., 0] = -mirrored[..., 0]
        wrong = check.mismatches(mirrored)
        n = check.centres.shape[0]
        assert bool(wrong[:, :n].all()), f"{name}: a mirrored stereocentre was missed"
        assert not bool(wrong[:, n:].any()), f"{name}: mirroring cannot change E/Z"
        n_centres += n
    assert n_centres >= 50


def test_double_bond_flip_is_detected():
    mol = molecule("C/C=C/C(=O)O")
    check = StereoCheck(mol)
    assert check.double_bonds.shape == (1, 4) and check.centres.shape == (0, 4)
    t = InternalCoordinates(ZMatrix.from_molecule(mol))
    x = mol.embed(4, seed=0)
    assert not bool(check.flag(x).any())
    z, _ = t.inverse(x)
    a, b, c, d = check.double_bonds[0].tolist()
    n = mol.n_atoms
    rows = t.zmatrix.rows
    row = next(
        r for r, (i, j, k, _) in enumerate(rows) if r >= 3 and {j, k} == {b, c} and i in (a, d)
    )
    flipped = z.clone()
    col = 2 * n - 3 + row - 3
    flipped[:, col] = torch.remainder(flipped[:, col] + 2 * math.pi, 2 * math.pi) - math.pi
    # moving one substituent across the bond moves it and its dependants
    xf, _ = t.forward(flipped)
    assert bool(check.flag(xf).all())
    kept, keep = check.drop(torch.cat([x, xf]))
    assert keep.tolist() == [True] * 4 + [False] * 4
    assert kept.shape == (4, n, 3)


def test_reference_conformer_defines_unspecified_centres():
    mol = molecule("CC(O)CC")
    x = mol.embed(1, seed=0)
    check = StereoCheck(mol, reference=x[0])
    assert check.centres.shape[0] == 1
    assert not bool(check.flag(x).any())
    assert bool(check.flag(-x).all())
    assert StereoCheck(mol).n_elements == 0  # nothing specified, nothing checked by default


def test_input_errors():
    mol = molecule("C[C@H](O)CC")
    check = StereoCheck(mol)
    with pytest.raises(ValueError, match=r"positions must be \[C, 15, 3\] nm"):
        check.flag(torch.zeros(2, 14, 3))
