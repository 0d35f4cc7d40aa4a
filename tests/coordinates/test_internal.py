import math

import pytest
import torch

from confflow.coordinates import InternalCoordinates, ZMatrix, aligned_rmsd, kabsch_align
from confflow.domains import Kind, wrap_angle
from confflow.testing import (
    ROUND_TRIP_TOL,
    assert_bijective,
    assert_frame_ladj_matches_autograd,
)

from .conftest import molecule

ALDP = "CC(=O)N[C@@H](C)C(=O)NC"


def random_rotation(generator: torch.Generator, batch: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 0] *= det.unsqueeze(-1)
    return q


def transform_for(smiles: str):
    mol = molecule(smiles)
    return mol, InternalCoordinates(ZMatrix.from_molecule(mol))


def distorted(x: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + scale * torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.mark.slow
def test_round_trip_on_the_diverse_set(diverse_conformers):
    assert len(diverse_conformers) >= 200
    worst = 0.0
    for seed, (name, mol, x) in enumerate(diverse_conformers):
        t = InternalCoordinates(ZMatrix.from_molecule(mol))
        batch = torch.cat([x, distorted(x.expand(4, -1, -1), 0.01, seed), distorted(x, 0.03, seed)])
        z, ladj_inv = t.inverse(batch)
        back, ladj_fwd = t.forward(z)
        err = float((kabsch_align(back, batch) - batch).norm(dim=-1).max())
        assert err <= 1e-6, f"{name}: round trip error {err:.2e} nm"
        assert torch.allclose(ladj_inv, -ladj_fwd, rtol=0, atol=1e-9), name
        worst = max(worst, err)
    assert worst < 1e-9  # float64 NeRF is far inside the 1e-6 nm acceptance bound


def test_log_det_matches_autograd_on_20_molecules(diverse_conformers):
    chosen = [entry for entry in diverse_conformers if 8 <= entry[1].n_atoms <= 40][::6][:20]
    assert len(chosen) == 20
    names = set()
    for seed, (name, mol, x) in enumerate(chosen):
        t = InternalCoordinates(ZMatrix.from_molecule(mol))
        z, _ = t.inverse(torch.cat([x, distorted(x, 0.01, seed)]))
        assert_frame_ladj_matches_autograd(t, z, t.frame_atoms)
        names.add(name)
    assert len(names) == 20


@pytest.mark.parametrize("smiles", [ALDP, "N#Cc1ccc(cc1)C#CC", "O", "C1CC2CCC1C2"])
def test_bijective_and_canonical_pose(smiles):
    mol, t = transform_for(smiles)
    x = mol.embed(3, seed=1)
    z, _ = t.inverse(x)
    assert_bijective(t, z)
    pose, _ = t.forward(z)
    a0, a1, a2 = t.frame_atoms
    assert torch.all(pose[:, a0] == 0)
    assert torch.all(pose[:, a1, 1:] == 0) and torch.all(pose[:, a1, 0] > 0)
    assert torch.all(pose[:, a2, 2] == 0) and torch.all(pose[:, a2, 1] > 0)
    assert float(aligned_rmsd(pose, x).max()) < 1e-10


def test_domain_layout_and_values():
    mol, t = transform_for(ALDP)
    n = mol.n_atoms
    d = t.latent_domain
    assert t.features == d.dim == 3 * n - 6 == 60
    assert d.indices(Kind.REAL) == tuple(range(n - 1))
    assert d.indices(Kind.INTERVAL) == tuple(range(n - 1, 2 * n - 3))
    assert d.circular_indices == tuple(range(2 * n - 3, 3 * n - 6))
    assert d.high[n - 1] == pytest.approx(math.pi)
    z, _ = t.inverse(mol.embed(2, seed=0))
    bonds, angles, torsions = z[:, : n - 1], z[:, n - 1 : 2 * n - 3], z[:, 2 * n - 3 :]
    assert torch.all((bonds > 0.09) & (bonds < 0.16))  # nm: C-H ~0.109 ... C-C ~0.153
    assert torch.all((angles > 1.5) & (angles < math.pi))
    assert torch.all(torsions.abs() <= math.pi)
    assert not bool(d.outside(z).any())


def test_invariance_to_rotation_and_translation():
    mol, t = transform_for("O=C(O)[C@@H](N)Cc1ccc(Cl)cc1")
    x = mol.embed(4, seed=3)
    g = torch.Generator().manual_seed(0)
    rot = random_rotation(g, 4)
    shift = torch.randn(4, 1, 3, generator=g, dtype=torch.float64)
    moved = x @ rot.transpose(-1, -2) + shift
    z, ladj = t.inverse(x)
    z_moved, ladj_moved = t.inverse(moved)
    diff = (z_moved - z).abs()
    circle = t.latent_domain.mask(Kind.CIRCLE)
    diff[:, circle] = torch.minimum(diff[:, circle], 2 * math.pi - diff[:, circle])
    assert float(diff.max()) < 1e-10
    assert torch.allclose(ladj, ladj_moved, atol=1e-10)
    # a reflection is not a rotation: torsions change sign
    z_mirror, _ = t.inverse(-x)
    assert torch.allclose(z_mirror[:, circle], -z[:, circle], atol=1e-10)


def test_torsions_wrap_across_pi():
    mol, t = transform_for("CCCC")
    x = mol.embed(1, seed=0)
    z, _ = t.inverse(x)
    n = mol.n_atoms
    idx = 2 * n - 3  # first torsion
    below, above = z.clone(), z.clone()
    below[:, idx] = math.pi - 1e-4
    above[:, idx] = -math.pi + 1e-4
    xb, _ = t.forward(below)
    xa, _ = t.forward(above)
    assert 0 < float((xb - xa).norm(dim=-1).max()) < 1e-3  # continuous across the cut
    # +pi and -pi are the same point of the circle
    plus, minus = z.clone(), z.clone()
    plus[:, idx], minus[:, idx] = math.pi, -math.pi
    assert torch.allclose(t.forward(plus)[0], t.forward(minus)[0], atol=1e-12)
    # a torsion rotated just past +pi comes back just above -pi
    back, _ = t.inverse(xb)
    assert float(back[0, idx]) == pytest.approx(math.pi - 1e-4, abs=1e-9)
    rotated = below.clone()
    rotated[:, idx] = math.pi - 1e-4 + 2e-4 - 2 * math.pi
    back, _ = t.inverse(t.forward(rotated)[0])
    assert float(back[0, idx]) == pytest.approx(-math.pi + 1e-4, abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(dtype):
    mol, t = transform_for(ALDP)
    x = mol.embed(8, seed=0).to(dtype)
    z, ladj = t.inverse(x)
    assert z.dtype == dtype and ladj.dtype == dtype and ladj.shape == (8,)
    back, _ = t.forward(z)
    assert float(aligned_rmsd(back.double(), x.double()).max()) < 100 * ROUND_TRIP_TOL[dtype]


def test_input_errors():
    mol, t = transform_for("CCO")
    z, _ = t.inverse(mol.embed(2))
    with pytest.raises(ValueError, match=r"InternalCoordinates.forward: expected 21 features"):
        t.forward(z[:, :-1])
    bad = z.clone()
    bad[1, 3] = -0.1
    with pytest.raises(
        ValueError, match=r"InternalCoordinates\.forward: bond feature 3 is not positive"
    ):
        t.forward(bad)
    bad = z.clone()
    bad[0, 10] = 3.5
    with pytest.raises(ValueError, match=r"feature 10 has values outside its interval domain"):
        t.forward(bad)
    with pytest.raises(
        ValueError, match=r"InternalCoordinates.inverse: expected positions \[B, 9, 3\]"
    ):
        t.inverse(torch.zeros(2, 8, 3))
    nan = mol.embed(1)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"InternalCoordinates\.inverse: positions contain NaN"):
        t.inverse(nan)
    with pytest.raises(
        ValueError, match=r"InternalCoordinates\.inverse: expected a floating-point"
    ):
        t.inverse(torch.zeros(1, 9, 3, dtype=torch.long))


def test_user_zmatrix_transform_matches_its_definition():
    mol = molecule("OCC=O")  # O0 C1 C2 O3 H4 H5 H6 H7
    rows = [
        (1, -1, -1, -1),
        (0, 1),
        (2, 1, 0),
        (3, 2, 1, 0),
        (4, 0, 1, 2),
        (5, 1, 0, 4),
        (6, 1, 0, 5),
        (7, 2, 1, 3),
    ]
    t = InternalCoordinates(ZMatrix.from_rows(rows))
    x = mol.embed(1, seed=0)
    z, _ = t.inverse(x)
    n = mol.n_atoms
    assert float(z[0, 0]) == pytest.approx(float((x[0, 0] - x[0, 1]).norm()))
    u, v = x[0, 3] - x[0, 2], x[0, 1] - x[0, 2]
    assert float(z[0, n]) == pytest.approx(float(torch.arccos(u @ v / (u.norm() * v.norm()))))
    import mdtraj

    from confflow.chem import to_mdtraj

    phi = mdtraj.compute_dihedrals(to_mdtraj(mol, x), [[3, 2, 1, 0]], opt=False)
    assert float(z[0, 2 * n - 3]) == pytest.approx(float(phi[0, 0]), abs=1e-5)
    assert_bijective(t, z)


#: Z-matrices of OCC=O whose row 2 hangs on row 0's atom (``sign`` +1) or on row 1's (-1).
_ROWS_ON_ROW_0 = [(1,), (0, 1), (2, 1, 0), (3, 2, 1, 0), (4, 0, 1, 2), (5, 1, 0, 4), (6, 1, 0, 5)]
_ROWS_ON_ROW_1 = [(0,), (1, 0), (2, 1, 0), (3, 2, 1, 0), (4, 0, 1, 2), (5, 1, 0, 4), (6, 1, 2, 5)]


@pytest.mark.parametrize("rows", [_ROWS_ON_ROW_0, _ROWS_ON_ROW_1, None])
def test_forward_gradient_matches_finite_differences(rows):
    """The placement's hand-written adjoint against central differences, float64."""
    if rows is None:
        mol, t = transform_for("CC(C)(C)NC[C@H](O)c1ccc(O)c(CO)c1")
    else:
        mol = molecule("OCC=O")
        t = InternalCoordinates(ZMatrix.from_rows([*rows, (7, 2, 1, 3)]))
    z, _ = t.inverse(mol.embed(2, seed=0).double())
    z.requires_grad_(True)
    cut = 2 * mol.n_atoms - 3  # torsions wrapped: a difference step may cross pi

    def place(v: torch.Tensor) -> torch.Tensor:
        return t.forward(torch.cat([v[:, :cut], wrap_angle(v[:, cut:])], 1))[0]

    assert torch.autograd.gradcheck(place, (z,), eps=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        x, _ = t.forward(z)
        (g,) = torch.autograd.grad(x.square().sum(), z, create_graph=True)
        g.sum().backward()


def test_block_size_does_not_change_results():
    mol = molecule(ALDP)
    zm = ZMatrix.from_molecule(mol)
    x = mol.embed(10, seed=0)
    z_small, ladj_small = InternalCoordinates(zm, block_size=3).inverse(x)
    z_big, ladj_big = InternalCoordinates(zm).inverse(x)
    # blocks change only the order of the log-det's sum: equal up to rounding
    torch.testing.assert_close(z_small, z_big, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ladj_small, ladj_big, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        InternalCoordinates(zm, block_size=0)


def test_inverse_wrapper_swaps_directions():
    from confflow.transforms.base import Inverse

    mol, t = transform_for(ALDP)
    x = mol.embed(2, seed=0)
    flipped = Inverse(t)
    z, ladj = flipped.forward(x)
    z_ref, ladj_ref = t.inverse(x)
    assert torch.equal(z, z_ref) and torch.equal(ladj, ladj_ref)
    back, _ = flipped.inverse(z)
    assert float(aligned_rmsd(back, x).max()) < 1e-10
    with pytest.raises(ValueError, match=r"expected positions \[B, 22, 3\]"):
        flipped.forward(z)
