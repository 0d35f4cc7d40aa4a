r"""Annealed importance sampling (AIS) from a normalised base towards an unnormalised target.

Stages :math:`0 = \beta_0 < \beta_1 < \dots < \beta_K = 1` interpolate geometrically,
:math:`\log f_\beta = (1 - \beta) \log q + \beta \log g`, with :math:`q` the base (exact
samples and density) and :math:`g` the unnormalised target. A chain starts at
:math:`x_0 \sim q`; at stage :math:`j` its log-weight gains
:math:`(\beta_j - \beta_{j-1}) [\log g(x_{j-1}) - \log q(x_{j-1})]` and one HMC transition
that leaves :math:`f_{\beta_j}` invariant moves it (:func:`~confflow.mcmc.hmc.hmc_step`). The
weights are unbiased for the normalising constant:
:math:`E[e^{\log w}] = \int g`, and the weighted end points are
importance samples of :math:`g` (Neal 2001). With one stage (``K = 1``) and no transition this
is plain importance sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from confflow.domains import Domain
from confflow.mcmc.hmc import Components, StepSizes, evaluate, hmc_step

__all__ = ["AISResult", "annealed_importance_sampling"]


@dataclass
class AISResult:
    """The chains' end points and weights.

    Attributes:
        x: ``[B, *S]`` end points (detached).
        log_w: ``[B]`` float64 log-weights (nats; ``-inf`` for a chain that met a non-finite
            density at a weight increment).
        parts: ``[B, 2]`` float64 ``(log q, log g)`` at the end points.
        acceptance: ``[K]`` acceptance rate of each stage's transition.
        evaluations: evaluations of the components (chains times points).
    """

    x: Tensor
    log_w: Tensor
    parts: Tensor
    acceptance: Tensor
    evaluations: int


def annealed_importance_sampling(
    x: Tensor,
    components: Components,
    n_stages: int,
    step_sizes: StepSizes,
    n_leapfrog: int = 4,
    generator: torch.Generator | None = None,
    domain: Domain | None = None,
    adapt: bool = True,
) -> AISResult:
    """Runs AIS from base samples ``x`` through ``n_stages`` linearly spaced stages.

    Args:
        x: ``[B, *S]`` exact samples of the base ``q``.
        components: ``x -> [B, 2]`` ``(log q(x), log g(x))`` (nats), differentiable in ``x``.
        n_stages: ``K >= 1``: intermediate densities ``beta = j / K``, one HMC transition each.
        step_sizes: one step size per stage (``len >= K``), adapted here when ``adapt``.
        n_leapfrog: leapfrog steps per transition.
        generator: RNG of the transitions.
        domain: layout of the flattened coordinates (circles wrap, intervals bound).
        adapt: adapt the step sizes towards their target acceptance.

    Returns:
        The :class:`AISResult`.
    """
    if n_stages < 1:
        raise ValueError(f"annealed_importance_sampling: n_stages must be >= 1, got {n_stages}")
    betas = torch.linspace(0.0, 1.0, n_stages + 1, dtype=torch.float64)
    state = evaluate(components, x, torch.tensor([1.0, 0.0], dtype=torch.float64))
    evaluations = x.shape[0]
    log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    acceptance = torch.zeros(n_stages, dtype=torch.float64)
    for j in range(1, n_stages + 1):
        beta = float(betas[j])
        log_w = log_w + (beta - float(betas[j - 1])) * (state.parts[:, 1] - state.parts[:, 0])
        log_w = torch.nan_to_num(log_w, nan=-torch.inf)
        coefficients = torch.tensor([1.0 - beta, beta], dtype=torch.float64)
        # the gradient of the new stage's density, at the current points
        state = evaluate(components, state.x, coefficients)
        state, accepted = hmc_step(
            state, components, coefficients, step_sizes[j - 1], n_leapfrog, generator, domain
        )
        evaluations += x.shape[0] * (n_leapfrog + 1)
        acceptance[j - 1] = accepted.double().mean()
        if adapt:
            step_sizes.update(j - 1, float(acceptance[j - 1]))
    return AISResult(state.x, log_w, state.parts, acceptance, evaluations)
