"""Masked autoregressive flows: MAF (Papamakarios et al. 2017) and IAF (Kingma et al. 2016).

Both use a :class:`~confflow.nn.MADE` conditioner and an elementwise map per coordinate
(affine, or the domain-aware rational-quadratic spline).

* :class:`MAF` conditions on the **data** side: density evaluation (``inverse``) is one pass,
  sampling (``forward``) takes ``D`` sequential passes.
* :class:`IAF` conditions on the **latent** side: sampling (``forward``) is one pass, density
  evaluation (``inverse``) takes ``D`` passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from confflow.domains import Domain, Kind
from confflow.nn import MADE, DomainEmbedding, with_context
from confflow.transforms.base import Transform
from confflow.transforms.elementwise import conditional_affine
from confflow.transforms.splines import RQSpline

__all__ = ["IAF", "MAF"]


class _MaskedAutoregressive(Transform):
    """Shared code; ``_data_conditioned`` selects MAF (True) or IAF (False)."""

    _data_conditioned: bool

    def __init__(
        self,
        domain: Domain | int,
        elementwise: str = "spline",
        bins: int = 8,
        bound: float = 5.0,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        context_features: int = 0,
        zero_init: bool = True,
        scale_bound: float = 3.0,
    ) -> None:
        super().__init__()
        domain = Domain.real(domain) if isinstance(domain, int) else domain
        name = type(self).__name__
        if elementwise == "spline":
            self.spline: RQSpline | None = RQSpline(domain, bins, bound)
            params = self.spline.params_per_dim
        elif elementwise == "affine":
            if not domain.is_real:
                raise ValueError(f"{name}: affine maps need real-line coordinates; use 'spline'")
            self.spline = None
            params = 2
        else:
            raise ValueError(
                f"{name}: elementwise must be 'spline' or 'affine', got {elementwise!r}"
            )
        self.features = domain.dim
        self.domain = self.latent_domain = domain
        self.scale_bound = scale_bound
        self.context_features = context_features
        self.embed = DomainEmbedding(domain)
        degrees = [s + 1 for s in self.embed.source]
        self.made = MADE(
            degrees, domain.dim, params, hidden, context_features, activation, zero_init
        )
        # A starting point inside every coordinate's domain for the sequential passes.
        low, high = domain.bounds()
        interval = domain.mask(Kind.INTERVAL)
        start = torch.where(interval, (low + high) / 2, torch.zeros_like(low))
        self.register_buffer("start", start.float(), persistent=False)

    def _params(self, v: Tensor, context: Tensor | None) -> Tensor:
        h = with_context(self.embed(v), context, self.context_features, type(self).__name__)
        return self.made(h)

    def _map(self, v: Tensor, raw: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """Elementwise map latent -> data (or back); returns values and ``ladj`` ``[B, D]``."""
        if self.spline is not None:
            return self.spline.inverse(v, raw) if inverse else self.spline(v, raw)
        return conditional_affine(v, raw, inverse, self.scale_bound)

    def _one_pass(self, v: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        out, ladj = self._map(v, self._params(v, context), inverse)
        return out, ladj.sum(-1)

    def _sequential(
        self, v: Tensor, context: Tensor | None, inverse: bool
    ) -> tuple[Tensor, Tensor]:
        """Solves for the conditioning side one coordinate at a time (``D`` passes)."""
        out = self.start.to(v).expand_as(v).clone()
        for i in range(self.features):
            step, _ = self._map(v, self._params(out, context), inverse)
            out = torch.cat([out[:, :i], step[:, i : i + 1], out[:, i + 1 :]], dim=1)
        _, ladj = self._map(v, self._params(out, context), inverse)
        return out, ladj.sum(-1)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if self._data_conditioned:
            return self._sequential(x, context, inverse=False)
        return self._one_pass(x, context, inverse=False)

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if self._data_conditioned:
            x, ladj = self._map(y, self._params(y, context), inverse=True)
            return x, ladj.sum(-1)
        return self._sequential(y, context, inverse=True)


class MAF(_MaskedAutoregressive):
    """Masked autoregressive flow layer: fast density (``inverse``), sequential sampling.

    Args:
        domain: layout of the ``D`` coordinates (or an ``int`` for ``D`` real coordinates).
        elementwise: ``"spline"`` (domain-aware rational-quadratic) or ``"affine"`` (real only).
        bins: spline bins ``K``.
        bound: half-width of the spline region on real-line coordinates.
        hidden: MADE hidden widths.
        activation: MADE activation.
        context_features: size of the optional context.
        zero_init: start as the identity map.
        scale_bound: soft bound of the affine log-scale.
    """

    _data_conditioned = True


class IAF(_MaskedAutoregressive):
    """Inverse autoregressive flow layer: fast sampling (``forward``), sequential density.

    Args: as for :class:`MAF`.
    """

    _data_conditioned = False
