"""Importance-sampling checks of a Boltzmann generator on fresh flow samples.

A check draws flow samples, weighs them against the target and summarises the weights: the
figures by which training validates, keeps its best model and stops.
"""

from __future__ import annotations

import torch

from confflow.models import BoltzmannGenerator
from confflow.reweighting import kish_ess, largest_weight_share

__all__ = ["check_seed", "sample_check"]

#: Stride between the seeds of independent checks at one step. The CPU generator keeps only
#: the low 32 bits of a seed, so the stride is a 32-bit number far from any step count.
SALT_STRIDE = 2_654_435_761


def check_seed(seed: int, step: int, salt: int = 0) -> int:
    """The seed of a check at training ``step`` of a run seeded ``seed``.

    Fixed by the step, so resumed runs agree; another ``salt`` draws independent samples.
    """
    return seed * 1_000_003 + step + salt * SALT_STRIDE


@torch.no_grad()
def sample_check(
    generator: BoltzmannGenerator, n: int, gen: torch.Generator
) -> tuple[dict[str, float], int]:
    """Importance-sampling metrics of ``n`` fresh flow samples of ``generator``.

    Args:
        generator: the model (sampled in its current mode; callers set ``eval``).
        n: flow samples.
        gen: random generator of the samples.

    Returns:
        The metrics: ``ess`` (fraction), ``largest_weight`` (fraction), ``kl``
        (``E_q[u + log q]`` over samples of finite weight, nats) and ``invalid`` (fraction of
        samples whose energy is not finite), empty when no sample has a finite weight; and the
        number of target evaluations spent.
    """
    x, log_q = generator.sample(n, gen)
    log_w = generator.log_weights(x, log_q)
    evaluations = int(torch.isfinite(log_q).sum())
    finite = torch.isfinite(log_w)
    if not bool(finite.any()):
        return {}, evaluations
    metrics = {
        "ess": kish_ess(log_w),
        "largest_weight": largest_weight_share(log_w),
        "kl": float(-log_w[finite].mean()),
        "invalid": float((~finite).double().mean()),
    }
    return metrics, evaluations
