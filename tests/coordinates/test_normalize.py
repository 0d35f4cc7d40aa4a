import math

import pytest
import torch

from confflow.coordinates import InternalCoordinates, InternalNormalization, ZMatrix
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


def test_standardises_data_and_keeps_torsions_circular(aldp):
    _, t, z = aldp
    norm = InternalNormalization.from_data(z, t.latent_domain, min_std=1e-6)
    u, ladj = norm.inverse(z)
    circle = t.latent_domain.mask(Kind.CIRCLE)
    assert torch.allclose(u[:, ~circle].mean(0), torch.zeros(1, dtype=u.dtype), atol=1e-10)
    assert torch.allclose(u[:, ~circle].std(0), torch.ones(1, dtype=u.dtype), atol=1e-10)
    assert float(u[:, circle].abs().max()) <= math.pi
    assert norm.latent_domain.kinds == t.latent_domain.kinds
    assert ladj.shape == (16,)
    assert torch.allclose(ladj, -norm.std.log().sum().expand(16))
    assert not bool(norm.latent_domain.outside(u).any())


def test_bijective_with_exact_log_det(aldp):
    _, t, z = aldp
    norm = InternalNormalization.from_data(z, t.latent_domain)
    u, _ = norm.inverse(z)
    assert_bijective(norm, u)
    assert_ladj_matches_autograd(norm, u[:3])


def test_composes_with_the_internal_map(aldp):
    mol, t, z = aldp
    norm = InternalNormalization.from_molecule(mol, t, n_conformers=6, seed=1)
    flow = Compose([norm, t])
    x, _ = t.forward(z)
    u, ladj = flow.inverse(x)
    assert_bijective(flow, u)
    assert_frame_ladj_matches_autograd(flow, u[:2], t.frame_atoms)
    _, ladj_t = t.inverse(x)
    assert torch.allclose(ladj, ladj_t - norm.std.log().sum(), atol=1e-10)


def test_circular_mean_centres_torsions_across_the_cut():
    domain = Domain.real(1) + Domain.circle(1)
    z = torch.tensor([[1.0, math.pi - 0.1], [2.0, -math.pi + 0.1], [3.0, math.pi - 0.05]])
    norm = InternalNormalization.from_data(z.double(), domain)
    assert abs(float(norm.mean[1])) == pytest.approx(math.pi - 0.05 / 3, abs=1e-3)
    u, _ = norm.inverse(z.double())
    assert float(u[:, 1].abs().max()) < 0.2  # centred, not split at +-pi


def test_errors():
    domain = Domain.real(2) + Domain.circle(1)
    with pytest.raises(ValueError, match="mean/std need 3 entries, got 2/3"):
        InternalNormalization(domain, torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match="std must be finite and positive"):
        InternalNormalization(domain, torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"need z \[M >= 2, 3\], got \(1, 3\)"):
        InternalNormalization.from_data(torch.zeros(1, 3), domain)
    with pytest.raises(ValueError, match="z contains NaN"):
        InternalNormalization.from_data(torch.full((4, 3), float("nan")), domain)
