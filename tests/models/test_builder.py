"""The Boltzmann-generator builder: configs validate and round-trip; molecular models are exact."""

import math

import pytest
import torch

from confflow.coordinates import InternalCoordinates, ZMatrix
from confflow.models import (
    BGConfig,
    ConfigError,
    FlowConfig,
    TargetConfig,
    build_boltzmann_generator,
)
from confflow.testing import LADJ_TOL

FLOW = {"layers": 2, "hidden": [16], "bins": 4}
UNIFORM = {**FLOW, "circular_components": 0}  # a uniform base on the circles


def test_config_round_trip():
    cfg = BGConfig(TargetConfig("double-well", {"dim": 3, "b": 4.0}), 310.0, FlowConfig(layers=4))
    again = BGConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.flow.hidden == (256, 256)


def test_config_without_family_is_a_coupling_flow():
    old = {"target": {"kind": "double-well"}, "flow": {"layers": 2, "hidden": [8]}}
    cfg = BGConfig.from_dict(old)
    assert cfg.flow.family == "coupling" and cfg.flow.options == {}


@pytest.mark.parametrize(
    ("family", "options"),
    [("maf", {"elementwise": "affine"}), ("cnf", {"solver": "rk4", "step_size": 0.25})],
)
def test_family_config_round_trip(family, options):
    flow = FlowConfig(layers=2, family=family, options=options)
    cfg = BGConfig(TargetConfig("double-well", {"dim": 2}), flow=flow)
    assert BGConfig.from_dict(cfg.to_dict()) == cfg
    model = build_boltzmann_generator(cfg)
    x, log_q = model.sample(16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.log_prob(x), log_q, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FlowConfig(family="realnvp"), "flow.family: unknown family 'realnvp'"),
        (lambda: FlowConfig(options={"transform": "cubic"}), "flow.options.transform: choose"),
        (lambda: FlowConfig(family="torsional", options={"bins": 3}), "flow.options.bins: not"),
        (
            lambda: FlowConfig(family="egnn-cnf", options={"depth": 0}),
            "flow.options.depth: must be an integer >= 1",
        ),
        (
            lambda: BGConfig(TargetConfig("aldp"), flow=FlowConfig(family="torsional")),
            "flow.family: 'torsional' needs a 'smiles' target, got target 'aldp'",
        ),
        (lambda: TargetConfig("benzene-box"), "target.kind: unknown target 'benzene-box'"),
        (lambda: TargetConfig("double-well", {"d": 2}), r"unknown keys \['d'\]"),
        (lambda: TargetConfig("smiles"), "needs params.smiles"),
        (lambda: FlowConfig(layers=3), "flow.layers: must be an even integer"),
        (lambda: FlowConfig(bins=1), "flow.bins"),
        (lambda: FlowConfig(hidden=()), "flow.hidden"),
        (lambda: FlowConfig(circular_components=-1), "flow.circular_components"),
        (lambda: FlowConfig(circular_components=True), "flow.circular_components"),
        (
            lambda: BGConfig(TargetConfig("aldp"), base_mixture={"loc": []}),
            "base_mixture: expected",
        ),
        (
            lambda: BGConfig(TargetConfig("aldp"), temperature=-5.0),
            "temperature: must be a positive number of kelvin",
        ),
        (lambda: BGConfig.from_dict({"target": {"kind": "aldp"}, "size": 3}), r"unknown keys"),
        (lambda: BGConfig.from_dict({"target": "aldp"}), "target: expected a mapping"),
    ],
)
def test_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_analytic_model_samples_with_exact_log_density():
    model = build_boltzmann_generator(BGConfig(TargetConfig("double-well", {"dim": 3}), flow=FLOW))
    x, log_q = model.sample(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 3)
    # at initialisation the flow is the identity: q is the standard normal
    expected = -0.5 * (x**2).sum(1) - 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(log_q.detach(), expected.detach())
    torch.testing.assert_close(model.log_prob(x).detach(), log_q.detach())


@pytest.mark.parametrize("kind", ["aldp", "smiles"])
def test_molecular_model(kind):
    params = {"smiles": "CC(=O)NC"} if kind == "smiles" else {}
    model = build_boltzmann_generator(BGConfig(TargetConfig(kind, params), flow=FLOW))
    n_atoms = model.energy.n_atoms
    assert model.event_shape == (n_atoms, 3)
    norm = model.config.normalization
    assert norm is not None and len(norm["mean"]) == 3 * n_atoms - 6
    with torch.no_grad():
        x, log_q = model.sample(32, torch.Generator().manual_seed(1))
        assert x.shape == (32, n_atoms, 3)
        # sample and density agree (float32 round trip through internal coordinates)
        torch.testing.assert_close(model.log_prob(x), log_q, atol=LADJ_TOL[torch.float32], rtol=0)
        u = model.reduced_energy(x)
    assert u.shape == (32,) and torch.isfinite(u).all()
    # rebuilding from the stored config gives the same model and system identity
    again = build_boltzmann_generator(model.config)
    again.load_state_dict(model.state_dict())
    assert again.fingerprint == model.fingerprint
    with torch.no_grad():
        torch.testing.assert_close(again.log_prob(x), model.log_prob(x))


def test_normalization_from_data_is_used():
    model = build_boltzmann_generator(
        BGConfig(TargetConfig("smiles", {"smiles": "CCO"}), flow=FLOW)
    )
    x, _ = model.sample(200)
    from_data = build_boltzmann_generator(
        model.config.__class__(model.config.target, flow=FLOW), data=x.detach()
    )
    ic = InternalCoordinates(ZMatrix.from_molecule(model.target.molecule))
    z, _ = ic.inverse(x.detach().double())
    mean = torch.tensor(from_data.config.normalization["mean"], dtype=torch.float64)
    torch.testing.assert_close(mean[: ic.n_atoms - 1], z[:, : ic.n_atoms - 1].mean(0))


def test_fingerprints_tell_systems_apart():
    a = build_boltzmann_generator(BGConfig(TargetConfig("smiles", {"smiles": "CCO"}), flow=FLOW))
    b = build_boltzmann_generator(BGConfig(TargetConfig("smiles", {"smiles": "CCN"}), flow=FLOW))
    c = build_boltzmann_generator(BGConfig(TargetConfig("smiles", {"smiles": "CCO"}), flow=FLOW))
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint


def test_data_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"data: expected \[M, 9, 3\]"):
        build_boltzmann_generator(
            BGConfig(TargetConfig("smiles", {"smiles": "CCO"}), flow=FLOW),
            data=torch.zeros(4, 8, 3),
        )


def test_samples_that_cannot_be_weighted_get_zero_weight():
    model = build_boltzmann_generator(BGConfig(TargetConfig("double-well", {"dim": 2}), flow=FLOW))
    x = torch.tensor([[0.5, 0.0], [math.nan, 0.0], [0.1, 0.2]])
    log_q = torch.tensor([-1.0, -1.0, math.nan])
    log_w = model.log_weights(x, log_q)
    assert log_w.dtype == torch.float64
    assert torch.isfinite(log_w[0]) and log_w[1:].eq(-math.inf).all()
    assert model.invalid(x, log_q).tolist() == [False, True, True]
    expected = -model.reduced_energy(x[:1]).double() + 1.0
    torch.testing.assert_close(log_w[:1], expected)


def test_circular_mixture_base_fitted_to_data_and_saved_in_the_config():
    flow = {**FLOW, "circular_components": 3}
    target = TargetConfig("smiles", {"smiles": "CCO"})
    plain = build_boltzmann_generator(BGConfig(target, flow=UNIFORM))
    n_free = len(plain.flow.base.domain.circular_indices)
    # data whose free torsions have three wells (rad, in the latent frame of the rotors)
    wells = {
        "loc": [[-2.1, 0.0, 2.1]] * n_free,
        "scale": [[0.2, 0.2, 0.2]] * n_free,
        "weight": [[0.33, 0.33, 0.33, 0.01]] * n_free,
    }
    norm = plain.config.normalization
    truth = build_boltzmann_generator(
        BGConfig(target, flow=flow, normalization=norm, base_mixture=wells)
    )
    with torch.no_grad():
        x, _ = truth.sample(3000, torch.Generator().manual_seed(3))
    model = build_boltzmann_generator(BGConfig(target, flow=flow, normalization=norm), data=x)
    mixture = model.config.base_mixture
    assert n_free > 0 and len(mixture["loc"]) == n_free and len(mixture["weight"][0]) == 4
    loc = torch.tensor(mixture["loc"]).sort(1).values
    torch.testing.assert_close(loc, torch.tensor(wells["loc"]), atol=0.05, rtol=0)
    # the fitted base is far more likely on its data than the uniform one
    uniform = build_boltzmann_generator(BGConfig(target, flow=UNIFORM, normalization=norm))
    with torch.no_grad():
        gain = float(model.log_prob(x).mean() - uniform.log_prob(x).mean())
        assert gain > 0.5 * n_free
        y, log_q = model.sample(64, torch.Generator().manual_seed(4))
        torch.testing.assert_close(model.log_prob(y), log_q, atol=LADJ_TOL[torch.float32], rtol=0)
    # a checkpoint's config rebuilds the same model without data
    again = build_boltzmann_generator(BGConfig.from_dict(model.config.to_dict()))
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again.log_prob(x), model.log_prob(x))


def test_circular_mixture_without_data_is_uniform():
    flow = {**FLOW, "circular_components": 2}
    target = TargetConfig("smiles", {"smiles": "CCO"})
    model = build_boltzmann_generator(BGConfig(target, flow=flow))
    assert model.config.base_mixture is not None
    plain = build_boltzmann_generator(BGConfig(target, flow=UNIFORM))
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        x, log_q = model.sample(256, torch.Generator().manual_seed(5))
        torch.testing.assert_close(plain.log_prob(x), log_q, atol=LADJ_TOL[torch.float32], rtol=0)
    # the empty components (weight 0, log-weight -inf) leave the gradients finite
    model.log_prob(x).sum().backward()
    grads = [p.grad for p in model.flow.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    # targets without circles keep the plain base
    model = build_boltzmann_generator(
        BGConfig(TargetConfig("double-well", {"dim": 2}), flow={**FLOW, "circular_components": 2})
    )
    assert model.config.base_mixture is None


def test_torsional_family_fits_its_reference_and_data_to_the_frames():
    config = BGConfig(
        TargetConfig("smiles", {"smiles": "CCO"}),
        flow=FlowConfig(layers=2, hidden=(8,), bins=4, family="torsional"),
    )
    frames = build_boltzmann_generator(config).target.molecule.embed(3, seed=1, num_threads=1)
    model = build_boltzmann_generator(config, data=frames.float())
    energies = model.target.energy.cartesian(frames.float())
    lowest = frames[int(torch.argmin(energies))]
    reference = torch.tensor(model.config.flow.options["reference"], dtype=torch.float64)
    torch.testing.assert_close(reference, lowest)
    torsions = model.from_positions(frames.float())
    assert torsions.shape == (3, model.energy.embedding.domain.dim)
    assert bool(torch.isfinite(model.log_prob(torsions)).all())
