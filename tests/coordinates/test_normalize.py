import math

import pytest
import torch

from confflow.coordinates import (
    InternalCoordinates,
    InternalNormalization,
    ZMatrix,
    structurally_rigid,
)
from confflow.domains import Domain, Kind
from confflow.testing import (
    assert_bijective,
    assert_frame_ladj_matches_autograd,
    assert_ladj_matches_autograd,
)
from confflow.transforms.base import Compose

from .conftest import molecule


@pytest.fixture(scope="module")
def aldp():
    mol = molecule("CC(=O)N[C@@H](C)C(=O)NC")
    t = InternalCoordinates(ZMatrix.from_molecule(mol))
    x = mol.embed(16, seed=4)
    z, _ = t.inverse(x)
    return mol, t, z


def test_standardises_everything_but_free_torsions(aldp):
    _, t, z = aldp
    norm = InternalNormalization.from_data(z, t.latent_domain, min_std=1e-6)
    u, ladj = norm.inverse(z)
    free = norm.latent_domain.mask(Kind.CIRCLE)
    rigid = norm.rigid
    assert bool(rigid.any()) and bool(free.any())
    assert set(norm.latent_domain.kinds) == {Kind.REAL, Kind.CIRCLE}
    assert not bool((free & rigid).any())
    # bonds and angles exactly standardised; rigid torsions centred at the circular mean
    standard = ~free & ~rigid
    torch.testing.assert_close(u[:, standard].mean(0), torch.zeros_like(u[0, standard]))
    torch.testing.assert_close(u[:, ~free].std(0), torch.ones_like(u[0, ~free]))
    assert float(u[:, rigid].mean(0).abs().max()) < 0.5
    assert float(u[:, free].abs().max()) <= math.pi
    assert ladj.shape == (16,) and bool(torch.isfinite(ladj).all())
    assert not bool(norm.latent_domain.outside(u).any())


def test_rigid_torsions_follow_the_data():
    domain = Domain.circle(3)
    gen = torch.Generator().manual_seed(0)
    narrow = math.pi - 0.2 * torch.rand(200, generator=gen)  # across the cut at +-pi
    narrow = torch.where(torch.arange(200) % 2 == 0, narrow, -narrow)
    wide = 2 * math.pi * torch.rand(200, generator=gen) - math.pi
    two_wells = torch.where(torch.arange(200) % 3 == 0, 0.1, 2.0) + 0.05 * torch.randn(200)
    z = torch.stack([narrow, wide, two_wells], 1).double()
    norm = InternalNormalization.from_data(z, domain)
    assert norm.rigid.tolist() == [True, False, True]
    assert abs(float(norm.mean[0])) == pytest.approx(math.pi, abs=0.02)
    u, _ = norm.inverse(z)
    assert float(u[:, 0].abs().max()) < 3.0  # centred, not split at +-pi
    forced = InternalNormalization.from_data(z, domain, rigid=torch.zeros(3, dtype=torch.bool))
    assert forced.latent_domain.kinds == (Kind.CIRCLE,) * 3


def test_structural_rigid_torsions(aldp):
    mol, t, _ = aldp
    rigid = structurally_rigid(mol, t)
    n_torsions = t.n_atoms - 3
    assert not bool(rigid[:-n_torsions].any())  # bonds and angles
    refs = {r[0]: (r[1], r[2]) for r in t.zmatrix.rows}
    rows = t.zmatrix.rows[3:]
    for (atom, j, k, ref), flag in zip(rows, rigid[-n_torsions:].tolist(), strict=True):
        bond = mol.rdkit_mol.GetBondBetweenAtoms(j, k)
        rotor = bond.GetBondTypeAsDouble() == 1 and not bond.IsInRing()
        assert flag == (refs[ref] == (j, k) or not rotor), (atom, j, k, ref)
    # the methyl rotors and the backbone torsions stay free, every sibling hydrogen is rigid
    assert 0 < int(rigid.sum()) < n_torsions
    norm = InternalNormalization.from_molecule(mol, t, n_conformers=4, seed=1)
    assert torch.equal(norm.rigid, rigid)


def test_bijective_with_exact_log_det(aldp):
    _, t, z = aldp
    norm = InternalNormalization.from_data(z, t.latent_domain)
    u, _ = norm.inverse(z)
    assert_bijective(norm, u)
    assert_ladj_matches_autograd(norm, u[:3])


def test_any_latent_point_maps_inside_the_domain(aldp):
    _, t, z = aldp
    norm = InternalNormalization.from_data(z, t.latent_domain)
    u = 4.0 * torch.randn(64, norm.features, dtype=torch.float64)
    circle = norm.latent_domain.mask(Kind.CIRCLE)
    u = torch.where(circle, torch.remainder(u, 2 * math.pi) - math.pi, u)
    x, ladj = norm.forward(u)
    assert not bool(t.latent_domain.outside(x).any())
    assert bool(torch.isfinite(ladj).all())


def test_composes_with_the_internal_map(aldp):
    mol, t, z = aldp
    norm = InternalNormalization.from_molecule(mol, t, n_conformers=6, seed=1)
    flow = Compose([norm, t])
    x, _ = t.forward(z)
    u, ladj = flow.inverse(x)
    assert_bijective(flow, u)
    assert_frame_ladj_matches_autograd(flow, u[:2], t.frame_atoms)
    _, ladj_t = t.inverse(x)
    _, ladj_n = norm.inverse(z)
    torch.testing.assert_close(ladj, ladj_t + ladj_n)


def test_stats_round_trip(aldp):
    _, t, z = aldp
    norm = InternalNormalization.from_data(z, t.latent_domain)
    again = InternalNormalization.from_stats(t.latent_domain, norm.stats())
    torch.testing.assert_close(again.inverse(z)[0], norm.inverse(z)[0])
    old = {"mean": norm.stats()["mean"], "std": norm.stats()["std"]}
    with pytest.raises(ValueError, match="older confflow; train the model again"):
        InternalNormalization.from_stats(t.latent_domain, old)


def test_errors():
    domain = Domain.real(2) + Domain.circle(1)
    with pytest.raises(ValueError, match="mean/std/rigid need 3 entries, got 2/3/3"):
        InternalNormalization(domain, torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match="std must be finite and positive"):
        InternalNormalization(domain, torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="only circular features can be rigid"):
        InternalNormalization(domain, torch.zeros(3), torch.ones(3), torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match=r"need z \[M >= 2, 3\], got \(1, 3\)"):
        InternalNormalization.from_data(torch.zeros(1, 3), domain)
    with pytest.raises(ValueError, match="z contains NaN"):
        InternalNormalization.from_data(torch.full((4, 3), float("nan")), domain)
