r"""Flow annealed importance sampling bootstrap (FAB): data-free training by the alpha-2 divergence.

The objective is the alpha = 2 divergence :math:`D_2(p \| q_\theta) = \log \int p^2 / q_\theta`
(up to the constant :math:`-2 \log Z`), mass-covering like maximum likelihood but needing no
samples of :math:`p`. Its gradient is :math:`-E_{\pi}[\nabla_\theta \log q_\theta]` with
:math:`\pi \propto p^2 / q_\theta`, the density where the flow's importance weights have their
variance. FAB (Midgley et al., ICLR 2023) estimates that expectation with annealed importance
sampling from the flow towards :math:`\pi` (:mod:`confflow.mcmc`; HMC transitions whose step
sizes adapt to a target acceptance), and reuses each batch from a prioritised replay buffer:

* an AIS step draws ``kl_batch_size`` flow samples, anneals them towards ``p^2 / q`` in
  ``fab_stages`` stages, stores the end points with their log-weights and the flow's
  ``log q`` there, and minimises :func:`alpha2_surrogate` on them;
* each of the next ``fab_replay`` steps draws a batch from the buffer with probability
  proportional to the stored weights (without replacement) and minimises the mean of
  ``-log q``. The target ``p^2 / q`` moves with the flow, so a drawn point's weight is first
  corrected by ``log q_old - log q_now`` and stored again with the new ``log q``.

The buffer lives in memory: a resumed run starts with an empty one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from confflow.mcmc import StepSizes, annealed_importance_sampling
from confflow.training.base import Objective, StepLoss
from confflow.training.config import TrainConfig
from confflow.training.losses import weighted_nll
from confflow.training.replay import ReplayBuffer

__all__ = ["FAB", "ReplayBuffer", "alpha2_surrogate"]


def alpha2_surrogate(log_q: Tensor, log_w: Tensor) -> Tensor:
    r"""``-sum_i softmax(log_w)_i log q(x_i)`` (nats): its gradient is that of ``D_2(p || q)``.

    With ``x_i`` weighted samples of :math:`\pi \propto p^2 / q` (weights ``log_w`` held
    fixed), the gradient in the flow's parameters is the self-normalised estimate of
    :math:`\nabla_\theta \log \int p^2 / q_\theta = -E_\pi[\nabla_\theta \log q_\theta]`.

    Args:
        log_q: ``[B]`` the flow's log-density at the samples (differentiable).
        log_w: ``[B]`` log-weights of the samples for ``pi`` (nats; ``-inf`` for none).
    """
    return weighted_nll(log_q, log_w)


class FAB(Objective):
    """The alpha-2 divergence by AIS towards ``p^2 / q`` with a prioritised replay buffer.

    Args:
        config: ``kl_batch_size`` (samples per AIS run and per buffer batch),
            ``fab_stages``, ``fab_leapfrog``, ``fab_replay``, ``fab_buffer`` and
            ``fab_accept`` are read from it.
    """

    needs_data = False
    needs_target = True

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.buffer = ReplayBuffer(config.fab_buffer)
        # a fast adaptation: 0.1 suits torsions (rad) and is too large for positions (nm)
        self.step_sizes = StepSizes(
            config.fab_stages, initial=0.1, target=config.fab_accept, rate=0.5
        )
        self.calls = 0

    def _ais(self, model: nn.Module, generator: torch.Generator) -> StepLoss:
        cfg = self.config
        with torch.no_grad():
            x, _ = model.sample(cfg.kl_batch_size, generator)
        if not bool(torch.isfinite(x).all()):
            return StepLoss(None, skip="non-finite flow samples")

        def components(y: Tensor) -> Tensor:
            log_q = model.log_prob(y).double()
            log_p = -model.reduced_energy(y).double()
            return torch.stack([log_q, 2.0 * log_p - log_q], 1)

        domain = getattr(model.flow.transform, "domain", None)
        if domain is not None and len(domain.kinds) != x[0].numel():
            domain = None  # the flow's data side is not the event (e.g. positions)
        result = annealed_importance_sampling(
            x, components, cfg.fab_stages, self.step_sizes, cfg.fab_leapfrog, generator, domain
        )
        self.buffer.add(result.x, result.log_w, result.parts[:, 0])
        logs = {"ais_accept": float(result.acceptance.mean())}
        finite = torch.isfinite(result.log_w)
        if not bool(finite.any()):
            return StepLoss(None, logs, result.evaluations, "no finite AIS weight")
        loss = alpha2_surrogate(model.log_prob(result.x[finite]), result.log_w[finite])
        return StepLoss(loss, logs, result.evaluations)

    def step(self, model: nn.Module, batch: Tensor | None, generator: torch.Generator) -> StepLoss:
        """An AIS step every ``fab_replay + 1`` calls, buffer steps in between."""
        ais = self.calls % (self.config.fab_replay + 1) == 0 or len(self.buffer) == 0
        self.calls += 1
        if ais:
            return self._ais(model, generator)
        index = self.buffer.draw(self.config.kl_batch_size, generator)
        assert self.buffer.x is not None
        log_q = model.log_prob(self.buffer.x[index])
        self.buffer.reweight(index, log_q)
        return StepLoss(-log_q.mean(), {"buffer": float(len(self.buffer))})

    def monitor(self, metrics: dict[str, float]) -> float:
        """``-ess``: the best model has the largest ESS of fresh flow samples."""
        return -metrics["ess"] if "ess" in metrics else math.inf
