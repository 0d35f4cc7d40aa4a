"""Maximum likelihood on known 2-D densities reaches the true density's test NLL."""

import pytest
import torch

from confflow.distributions import (
    Flow,
    GaussianMixture,
    StandardNormal,
    TorusMixture,
    UniformCircle,
)
from confflow.domains import Domain
from confflow.training import fit_maximum_likelihood
from confflow.transforms import Compose, SplineCoupling, coupling_masks


@pytest.mark.parametrize(
    ("target", "domain", "base"),
    [
        (TorusMixture(), Domain.circle(2), UniformCircle(2)),
        (GaussianMixture.default_2d(), Domain.real(2), StandardNormal(2)),
    ],
    ids=["torus", "plane"],
)
def test_maximum_likelihood_reaches_true_nll(target, domain, base):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only add overhead
    try:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(1)
        train = target.sample(20_000, gen).float()
        test = target.sample(20_000, gen).float()
        masks = coupling_masks(2, 6)
        layers = [SplineCoupling(domain, m, bins=12, bound=6.0, hidden=(64, 64)) for m in masks]
        flow = Flow(base, Compose(layers))
        fit_maximum_likelihood(flow, train, steps=800, batch_size=512, lr=5e-3, seed=0)
        with torch.no_grad():
            model_nll = -flow.log_prob(test).double().mean().item()
        true_nll = -target.log_prob(test.double()).mean().item()
    finally:
        torch.set_num_threads(threads)
    assert model_nll - true_nll < 0.05, (model_nll, true_nll)
    assert model_nll - true_nll > -0.02  # the model cannot beat the truth beyond noise
