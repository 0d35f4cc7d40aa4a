r"""Training losses of Boltzmann generators (all in nats per sample).

* :func:`nll_loss` — maximum likelihood on samples (forward KL up to a constant):
  :math:`-\frac1B \sum_i \log q(x_i)`.
* :func:`reverse_kl_loss` — reverse KL on the energy, up to :math:`\log Z`:
  :math:`\frac1B \sum_i [\mathrm{cap}(u(x_i)) + \log q(x_i)]`, :math:`x_i \sim q`
  reparameterised, with the smooth linear-log cap of :func:`~confflow.energies.cap.linlog_cap`
  on the reduced energy so that clashes early in training do not swamp the gradient.
* :func:`energy_loss` — reverse KL mixed with the self-normalised importance-weighted forward
  KL on the same flow samples, :math:`-\sum_i \bar w_i \log q(x_i)` with
  :math:`\bar w_i \propto e^{-u(x_i)} / q(x_i)` and samples and weights held fixed. The forward
  term is mass-covering: it raises ``q`` where the target has more mass than ``q`` gives, which
  cuts the heavy weight tails that reverse KL alone (mode-seeking) leaves. With a
  :class:`~confflow.training.replay.ReplayBuffer` the forward term pools the samples of recent
  steps, each weighted against the flow that drew it: where the target is dear (a quantum
  chemical level), every evaluation then serves many steps.
* :func:`weighted_nll` — :math:`-\sum_i \bar w_i \log q(x_i)` with fixed weights.
* :func:`mixed_loss` — ``(1 - w) * NLL + w * KL``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from confflow.energies.cap import linlog_cap
from confflow.models import BoltzmannGenerator
from confflow.training.replay import ReplayBuffer

__all__ = ["energy_loss", "mixed_loss", "nll_loss", "reverse_kl_loss", "weighted_nll"]

#: Log-weight gap (nats) below the largest beyond which pooled samples are dropped: a weight
#: under ``1e-12`` of the largest adds nothing to the forward term but cost.
NEGLIGIBLE_LOG_WEIGHT = math.log(1e12)


def nll_loss(model: BoltzmannGenerator, x: Tensor) -> Tensor:
    """Mean negative log-likelihood (nats) of data ``x`` ``[B, *event_shape]`` under ``q``."""
    return -model.log_prob(x).mean()


def weighted_nll(log_q: Tensor, log_w: Tensor) -> Tensor:
    """``-sum_i softmax(log_w)_i log q(x_i)`` (nats), the weights held fixed.

    Args:
        log_q: ``[B]`` the flow's log-density at the samples (differentiable).
        log_w: ``[B]`` the samples' log-weights (nats; ``-inf`` for none).
    """
    weights = torch.softmax(log_w.detach().double(), 0).to(log_q.dtype)
    return -(weights * log_q).sum()


def reverse_kl_loss(
    model: BoltzmannGenerator,
    n: int,
    cap_threshold: float,
    cap_scale: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Reverse KL ``E_q[cap(u) + log q]`` (nats; equals ``KL(q||p) - log Z`` below the cap).

    Args:
        model: the Boltzmann generator (its ``temperature`` sets ``u = E / kT``).
        n: flow samples.
        cap_threshold: reduced energy (kT) where the cap starts.
        cap_scale: scale of the logarithmic part (kT).
        generator: RNG of the latent draw.

    Returns:
        ``(loss, log_w)``: the scalar loss (``nan`` when a sample is not finite, so that the
        caller can skip the step) and the detached float64 log-weights ``-u - log q`` ``[n]``.
    """
    return energy_loss(model, n, cap_threshold, cap_scale, 0.0, generator)


def energy_loss(
    model: BoltzmannGenerator,
    n: int,
    cap_threshold: float,
    cap_scale: float,
    forward_weight: float = 0.0,
    generator: torch.Generator | None = None,
    buffer: ReplayBuffer | None = None,
) -> tuple[Tensor, Tensor]:
    """``(1 - a) * reverse KL + a * importance-weighted forward KL`` on ``n`` flow samples.

    Args:
        model: the Boltzmann generator (its ``temperature`` sets ``u = E / kT``).
        n: flow samples.
        cap_threshold: reduced energy (kT) where the cap of the reverse term starts.
        cap_scale: scale of the logarithmic part (kT).
        forward_weight: ``a`` in ``[0, 1]``; the forward term is
            ``-sum_i softmax(log_w)_i log q(x_i)`` (nats) with ``x_i`` and the weights detached.
        generator: RNG of the latent draw.
        buffer: where the forward term pools its samples: the new ones are added (with
            ``log w = -u - log q`` of the flow that drew them) and the forward term runs over
            the whole buffer (``None``: over the new samples only).

    Returns:
        ``(loss, log_w)`` as :func:`reverse_kl_loss` (``log_w`` of the new samples).
    """
    if not 0 <= forward_weight <= 1:
        raise ValueError(f"forward_weight: must be in [0, 1], got {forward_weight}")
    x, log_q = model.sample(n, generator)
    if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(log_q).all()):
        nan = torch.full((), math.nan, device=x.device)
        return nan, torch.full((n,), math.nan, dtype=torch.float64)
    u = model.reduced_energy(x)
    log_w = (-u.detach() - log_q.detach()).to(torch.float64)
    loss = (linlog_cap(u, cap_threshold, cap_scale) + log_q).mean()
    if forward_weight > 0:
        pool, pool_w = x.detach(), log_w
        if buffer is not None:
            buffer.add(pool, log_w, log_q.detach())  # keeps the finite ones
            if buffer.x is not None and len(buffer):
                keep = buffer.log_w >= buffer.log_w.max() - NEGLIGIBLE_LOG_WEIGHT
                pool, pool_w = buffer.x[keep], buffer.log_w[keep]
        forward = weighted_nll(model.log_prob(pool), pool_w)
        loss = (1 - forward_weight) * loss + forward_weight * forward
    return loss, log_w


def mixed_loss(nll: Tensor | None, kl: Tensor | None, kl_weight: float) -> Tensor:
    """``(1 - kl_weight) * nll + kl_weight * kl``; a term with zero weight may be ``None``."""
    if not 0 <= kl_weight <= 1:
        raise ValueError(f"kl_weight: must be in [0, 1], got {kl_weight}")
    total = None
    for term, w, name in ((nll, 1 - kl_weight, "nll"), (kl, kl_weight, "kl")):
        if w == 0:
            continue
        if term is None:
            raise ValueError(f"mixed_loss: the {name} term has weight {w} but is missing")
        total = w * term if total is None else total + w * term
    assert total is not None
    return total
