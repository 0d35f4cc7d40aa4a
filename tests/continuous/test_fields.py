"""Equivariant vector fields (EGNN, e3nn) and the invariance of CNF log-densities."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from confflow.distributions import Flow, MeanFreeNormal
from confflow.nn import EGNN
from confflow.nn.e3nn_field import E3NNField
from confflow.nn.egnn import EGNNLayer, bond_matrix
from confflow.testing import assert_equivariant, assert_invariant
from confflow.transforms import CNF, ODEConfig

F64 = torch.float64
# Methane-like graph: a centre bonded to four identical atoms, which any permutation of
# the four exchanges without changing types or bonds.
TYPES = [0, 1, 1, 1, 1]
BONDS = [(0, 1), (0, 2), (0, 3), (0, 4)]


def _randomise(module: nn.Module, scale: float) -> nn.Module:
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _egnn() -> nn.Module:
    return _randomise(EGNN(TYPES, BONDS, hidden=8, layers=2, frequencies=1).to(F64), 0.3)


def _e3nn() -> nn.Module:
    field = E3NNField(TYPES, BONDS, scalars=4, vectors=2, layers=2, lmax=2, radial=4, frequencies=1)
    return _randomise(field.to(F64), 0.3)


FIELDS = {"egnn": _egnn, "e3nn": _e3nn}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_vector_field_is_equivariant(name):
    field = FIELDS[name]()
    x = torch.randn(4, 5, 3, dtype=F64)
    t = torch.tensor(0.3, dtype=F64)
    v = field(t, x)
    assert float(v.detach().abs().max()) > 1e-3  # not trivially zero
    assert float(v.sum(1).abs().max()) <= 1e-12  # centre-of-mass free
    assert_equivariant(lambda y: field(t, y), x, classes=TYPES, trials=4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_bonds_break_permutation_symmetry(name):
    field = FIELDS[name]()
    x = torch.randn(2, 5, 3, dtype=F64)
    t = torch.tensor(0.5, dtype=F64)
    # Exchanging the centre (bonded to all) with an outer atom is not a symmetry.
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda y: field(t, y), x, classes=[0] * 5, trials=4)


def test_egnn_layer_matches_the_concatenated_edge_input():
    # The layer applies its first edge weights to h_i, h_j, d2 and the bond flag separately;
    # the map must equal the textbook form that concatenates them per edge.
    layer = _randomise(EGNNLayer(6).to(F64), 0.4)
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(3, 5, 6, generator=gen, dtype=F64)
    x = torch.randn(3, 5, 3, generator=gen, dtype=F64)
    bonds = bond_matrix(5, BONDS).to(F64)
    mask = 1.0 - torch.eye(5, dtype=F64)
    h_out, x_out = layer(h, x, bonds, mask)

    diff = x[:, :, None] - x[:, None, :]
    d2 = (diff * diff).sum(-1, keepdim=True)
    pair = torch.cat(
        [
            h[:, :, None].expand(3, 5, 5, 6),
            h[:, None, :].expand(3, 5, 5, 6),
            d2,
            bonds[None, :, :, None].expand(3, 5, 5, 1),
        ],
        dim=-1,
    )
    m = layer.edge(pair) * mask[None, :, :, None]
    weight = torch.tanh(layer.coord(m)) * mask[None, :, :, None]
    x_ref = x + (diff * weight / torch.sqrt(d2 + 1.0)).sum(2) / 4
    h_ref = h + layer.node(torch.cat([h, m.sum(2) / 4], dim=-1))
    assert float((x_out - x_ref).abs().max()) <= 1e-12
    assert float((h_out - h_ref).abs().max()) <= 1e-12
    assert float((x_out - x).abs().max()) > 1e-3  # the coordinate update is not trivial


class Anisotropic(nn.Module):
    """A user field that scales the axes differently: translation- but not rotation-safe."""

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None = None) -> Tensor:
        c = x - x.mean(1, keepdim=True)
        return c * torch.tensor([1.0, 2.0, 3.0], dtype=x.dtype)


def test_assert_equivariant_catches_non_equivariant_field():
    x = torch.randn(3, 4, 3, dtype=F64)
    with pytest.raises(AssertionError, match=r"not equivariant: trial 0 .* > 1\.0e-05"):
        assert_equivariant(lambda y: Anisotropic()(0.0, y), x)
    with pytest.raises(ValueError, match="classes: expected 4 labels"):
        assert_equivariant(lambda y: Anisotropic()(0.0, y), x, classes=[0, 1])


def test_assert_invariant_catches_non_invariant_function():
    x = torch.randn(3, 4, 3, dtype=F64)
    assert_invariant(lambda y: torch.cdist(y, y).sum((1, 2)), x)
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(lambda y: y[:, 0, 0], x)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_cnf_log_density_is_invariant(name):
    field = _randomise(FIELDS[name](), 0.15)
    cnf = CNF(field, (5, 3), ODEConfig(rtol=1e-7, atol=1e-7), mean_free=True)
    flow = Flow(MeanFreeNormal(5).to(F64), cnf)
    x = torch.randn(2, 5, 3, dtype=F64)
    with torch.no_grad():
        log_q = flow.log_prob(x)
    assert bool(torch.isfinite(log_q).all())
    assert cnf.nfe > 0
    assert_invariant(lambda y: flow.log_prob(y), x, classes=TYPES, trials=2, atol=1e-4)


def test_field_shape_errors():
    with pytest.raises(ValueError, match=r"x: expected \[B, 5, 3\]"):
        EGNN(TYPES, BONDS, hidden=4, layers=1)(0.0, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"x: expected \[B, 5, 3\]"):
        E3NNField(TYPES, BONDS, scalars=2, vectors=1, layers=1)(0.0, torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match=r"bonds: invalid bond \(0, 7\)"):
        EGNN(TYPES, [(0, 7)])
    with pytest.raises(ValueError, match="atom_types: need >= 2"):
        EGNN([0])
    with pytest.raises(ValueError, match=r"t: expected a scalar or \[2\] times"):
        EGNN(TYPES, BONDS, hidden=4, layers=1)(torch.zeros(3), torch.zeros(2, 5, 3))
