r"""Training losses of Boltzmann generators (all in nats per sample).

* :func:`nll_loss` — maximum likelihood on samples (forward KL up to a constant):
  :math:`-\frac1B \sum_i \log q(x_i)`.
* :func:`reverse_kl_loss` — reverse KL on the energy, up to :math:`\log Z`:
  :math:`\frac1B \sum_i [\mathrm{cap}(u(x_i)) + \log q(x_i)]`, :math:`x_i \sim q`
  reparameterised, with the smooth linear-log cap of :func:`~confflow.energies.cap.linlog_cap`
  on the reduced energy so that clashes early in training do not swamp the gradient.
* :func:`mixed_loss` — ``(1 - w) * NLL + w * KL``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from confflow.energies.cap import linlog_cap
from confflow.models import BoltzmannGenerator

__all__ = ["mixed_loss", "nll_loss", "reverse_kl_loss"]


def nll_loss(model: BoltzmannGenerator, x: Tensor) -> Tensor:
    """Mean negative log-likelihood (nats) of data ``x`` ``[B, *event_shape]`` under ``q``."""
    return -model.log_prob(x).mean()


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
    x, log_q = model.sample(n, generator)
    if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(log_q).all()):
        nan = torch.full((), math.nan, device=x.device)
        return nan, torch.full((n,), math.nan, dtype=torch.float64)
    u = model.reduced_energy(x)
    loss = (linlog_cap(u, cap_threshold, cap_scale) + log_q).mean()
    log_w = (-u.detach() - log_q.detach()).to(torch.float64)
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
