r"""Hamiltonian Monte Carlo on a batch of independent chains, with step sizes adapted per stage.

One transition: momenta :math:`p \sim N(0, I)`, ``n_leapfrog`` leapfrog steps of size
:math:`\epsilon` on :math:`H(x, p) = -\log f(x) + |p|^2 / 2`, accepted with probability
:math:`\min(1, e^{-\Delta H})`. The chains are independent (one step size for all of them),
so the transition leaves :math:`f` invariant for every chain. Coordinates on circles are
wrapped to :math:`[-\pi, \pi)` after each position update (the flat torus, where leapfrog is
still volume-preserving and reversible); a chain whose trajectory leaves an interval
coordinate's bounds, or meets a non-finite density or gradient, is rejected.

The log-density callable returns ``[B, C]`` *components* and the chain's density is
``components @ coefficients``: annealed importance sampling keeps the base and target terms
apart (:mod:`confflow.mcmc.ais`) and gets both from one evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from confflow.domains import Domain, Kind, wrap_angle

__all__ = ["Components", "HMCState", "StepSizes", "hmc_step"]

#: ``x [B, *S] -> [B, C]`` log-density components (nats), differentiable in ``x``.
Components = Callable[[Tensor], Tensor]


@dataclass
class HMCState:
    """Chains with their density evaluated.

    Attributes:
        x: ``[B, *S]`` positions.
        parts: ``[B, C]`` float64 log-density components at ``x`` (detached).
        grad: ``[B, *S]`` gradient of ``parts @ coefficients`` (of the stage it was taken at).
    """

    x: Tensor
    parts: Tensor
    grad: Tensor


def _evaluate(components: Components, x: Tensor, coefficients: Tensor) -> tuple[Tensor, Tensor]:
    """``(parts [B, C] float64, grad [B, *S])``; a non-finite row gets ``-inf`` parts, zero grad."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        parts = components(xg)
        total = parts @ coefficients.to(parts)
        (grad,) = torch.autograd.grad(total.sum(), xg)
    parts = parts.detach().double()
    flat = grad.reshape(grad.shape[0], -1)
    bad = ~torch.isfinite(parts).all(1) | ~torch.isfinite(flat).all(1)
    parts = torch.where(bad[:, None], -math.inf, parts)
    grad = torch.where(bad.view(-1, *([1] * (grad.dim() - 1))), 0.0, grad)
    return parts, grad


def evaluate(components: Components, x: Tensor, coefficients: Tensor) -> HMCState:
    """The :class:`HMCState` of positions ``x`` at the stage ``coefficients`` (``[C]``)."""
    parts, grad = _evaluate(components, x, coefficients)
    return HMCState(x.detach(), parts, grad)


def _in_domain(x: Tensor, domain: Domain | None) -> tuple[Tensor, Tensor]:
    """``(x wrapped on circles, [B] bool: finite and inside the interval bounds)``."""
    flat = x.reshape(x.shape[0], -1)
    ok = torch.isfinite(flat).all(1)
    if domain is None:
        return x, ok
    kinds = torch.tensor([int(k) for k in domain.kinds], device=x.device)
    low = torch.tensor(domain.low, dtype=x.dtype, device=x.device)
    high = torch.tensor(domain.high, dtype=x.dtype, device=x.device)
    circle = kinds == int(Kind.CIRCLE)
    flat = torch.where(circle, wrap_angle(flat), flat)
    interval = kinds == int(Kind.INTERVAL)
    inside = ((flat > low) & (flat < high)) | ~interval
    return flat.view_as(x), ok & inside.all(1)


def hmc_step(
    state: HMCState,
    components: Components,
    coefficients: Tensor,
    step_size: float,
    n_leapfrog: int,
    generator: torch.Generator | None = None,
    domain: Domain | None = None,
) -> tuple[HMCState, Tensor]:
    """One HMC transition of every chain, leaving ``exp(parts @ coefficients)`` invariant.

    Args:
        state: current chains; ``state.grad`` must belong to ``coefficients``.
        components: the log-density components (see :data:`Components`).
        coefficients: ``[C]`` weights of the components in this stage's log-density.
        step_size: leapfrog step (units of ``x``).
        n_leapfrog: leapfrog steps per transition (``>= 1``).
        generator: RNG of momenta and acceptance.
        domain: the layout of ``x``'s flattened coordinates (circles wrap, intervals bound);
            ``None``: all real.

    Returns:
        ``(new state, accepted [B] bool)``.
    """
    if n_leapfrog < 1 or not step_size > 0:
        raise ValueError(
            f"hmc_step: needs n_leapfrog >= 1 and step_size > 0, got {n_leapfrog}, {step_size}"
        )
    coefficients = coefficients.double()
    x0 = state.x
    p = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    kinetic0 = 0.5 * p.reshape(p.shape[0], -1).double().square().sum(1)
    log_f0 = state.parts @ coefficients
    x, grad, alive = x0, state.grad, torch.isfinite(log_f0)
    p = p + 0.5 * step_size * grad
    parts = state.parts
    for i in range(n_leapfrog):
        x, inside = _in_domain(x + step_size * p, domain)
        alive = alive & inside
        # dead chains are evaluated at their start (always valid input) and rejected below
        shape = (-1, *([1] * (x.dim() - 1)))
        x = torch.where(alive.view(shape), x, x0)
        parts, grad = _evaluate(components, x, coefficients)
        alive = alive & torch.isfinite(parts).all(1)
        p = p + (step_size if i < n_leapfrog - 1 else 0.5 * step_size) * grad
    kinetic = 0.5 * p.reshape(p.shape[0], -1).double().square().sum(1)
    log_ratio = parts @ coefficients - kinetic - log_f0 + kinetic0
    log_u = torch.rand(
        log_ratio.shape, generator=generator, device=x0.device, dtype=torch.float64
    ).log()
    accept = alive & torch.isfinite(log_ratio) & (log_u < log_ratio)
    shape = (-1, *([1] * (x.dim() - 1)))
    new = HMCState(
        torch.where(accept.view(shape), x, x0).detach(),
        torch.where(accept[:, None], parts, state.parts),
        torch.where(accept.view(shape), grad, state.grad),
    )
    return new, accept


class StepSizes:
    """One HMC step size per stage, adapted towards a target acceptance rate.

    After each transition ``log eps += rate * (acceptance - target)`` (a Robbins-Monro step on
    the batch's acceptance), kept between calls, so a training run's step sizes settle.

    Args:
        n: stages.
        initial: first step size (units of ``x``).
        target: acceptance rate to reach (0.65 is the usual choice for HMC).
        rate: adaptation rate.
    """

    def __init__(self, n: int, initial: float = 0.1, target: float = 0.65, rate: float = 0.1):
        if n < 1 or not initial > 0 or not 0 < target < 1 or not rate >= 0:
            raise ValueError("StepSizes: needs n >= 1, initial > 0, 0 < target < 1, rate >= 0")
        self.log_eps = torch.full((n,), math.log(initial), dtype=torch.float64)
        self.target, self.rate = target, rate

    def __getitem__(self, i: int) -> float:
        return float(self.log_eps[i].exp())

    def update(self, i: int, acceptance: float) -> None:
        """Moves stage ``i``'s step size after a transition with this acceptance rate."""
        self.log_eps[i] += self.rate * (acceptance - self.target)
