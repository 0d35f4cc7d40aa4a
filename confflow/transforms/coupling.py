"""Coupling layers (Dinh et al. 2017): half the coordinates condition a map of the other half.

A boolean ``mask`` chosen by the caller marks the **transformed** coordinates; the others pass
unchanged and, embedded by :class:`~confflow.nn.DomainEmbedding` (circles as cos/sin), feed an
:class:`~confflow.nn.MLP` conditioner together with the optional context. Forward and inverse
cost the same: one conditioner pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from confflow.domains import Domain, Kind
from confflow.nn import MLP, DomainEmbedding, with_context
from confflow.transforms.base import Transform
from confflow.transforms.elementwise import conditional_affine
from confflow.transforms.splines import RQSpline

__all__ = ["AffineCoupling", "SplineCoupling", "coupling_masks"]


def coupling_masks(features: int, layers: int, pattern: str = "halves") -> list[list[bool]]:
    """Masks for a stack of coupling layers, alternating which coordinates are transformed.

    Args:
        features: number of coordinates ``D`` (>= 2).
        layers: number of masks to return.
        pattern: ``"halves"`` (second half, then first half, ...) or ``"alternate"``
            (odd indices, then even indices, ...).

    Returns:
        ``layers`` boolean lists of length ``D``; ``True`` marks a transformed coordinate.
    """
    if features < 2:
        raise ValueError(f"coupling_masks: need >= 2 features, got {features}")
    if pattern == "halves":
        base = [i >= features // 2 for i in range(features)]
    elif pattern == "alternate":
        base = [i % 2 == 1 for i in range(features)]
    else:
        raise ValueError(
            f"coupling_masks: unknown pattern {pattern!r}; use 'halves' or 'alternate'"
        )
    return [base if k % 2 == 0 else [not b for b in base] for k in range(layers)]


def _as_slice(indices: list[int]) -> slice | None:
    """A slice equal to the index list when it is a contiguous range."""
    if indices and indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)
    return None


class _Coupling(Transform):
    """Shared plumbing: split by mask, run the conditioner, merge back."""

    def __init__(
        self,
        domain: Domain,
        mask: Sequence[bool],
        params_per_dim: int,
        hidden: Sequence[int],
        activation: str,
        context_features: int,
        zero_init: bool,
    ) -> None:
        super().__init__()
        mask = [bool(m) for m in mask]
        name = type(self).__name__
        if len(mask) != domain.dim:
            raise ValueError(f"{name}: mask has {len(mask)} entries for {domain.dim} features")
        if all(mask) or not any(mask):
            raise ValueError(f"{name}: mask must transform some coordinates and keep some")
        self.features = domain.dim
        self.domain = self.latent_domain = domain
        self.tr_idx = [i for i, m in enumerate(mask) if m]
        self.id_idx = [i for i, m in enumerate(mask) if not m]
        self._tr_slice, self._id_slice = _as_slice(self.tr_idx), _as_slice(self.id_idx)
        self.register_buffer("tr_index", torch.tensor(self.tr_idx), persistent=False)
        self.register_buffer("id_index", torch.tensor(self.id_idx), persistent=False)
        order = torch.tensor(self.id_idx + self.tr_idx)
        self.register_buffer("merge_index", torch.argsort(order), persistent=False)
        self._halves = self._id_slice is not None and self._tr_slice is not None
        self._id_first = self._halves and self.id_idx[0] == 0
        self.embed = DomainEmbedding(domain[self.id_idx])
        self.params_per_dim = params_per_dim
        self.conditioner = MLP(
            self.embed.out_features + context_features,
            len(self.tr_idx) * params_per_dim,
            hidden,
            activation,
            zero_init,
        )
        self.context_features = context_features

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._halves:
            return x[:, self._id_slice], x[:, self._tr_slice]
        return x.index_select(1, self.id_index), x.index_select(1, self.tr_index)

    def _merge(self, x_id: Tensor, x_tr: Tensor) -> Tensor:
        if self._halves:
            return torch.cat([x_id, x_tr] if self._id_first else [x_tr, x_id], dim=1)
        return torch.cat([x_id, x_tr], dim=1).index_select(1, self.merge_index)

    def _params(self, x_id: Tensor, context: Tensor | None) -> Tensor:
        h = with_context(self.embed(x_id), context, self.context_features, type(self).__name__)
        return self.conditioner(h).unflatten(1, (len(self.tr_idx), self.params_per_dim))

    def _elementwise(self, v: Tensor, raw: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        x_id, x_tr = self._split(x)
        y_tr, ladj = self._elementwise(x_tr, self._params(x_id, context), inverse=False)
        return self._merge(x_id, y_tr), ladj.sum(-1)

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        y_id, y_tr = self._split(y)
        x_tr, ladj = self._elementwise(y_tr, self._params(y_id, context), inverse=True)
        return self._merge(y_id, x_tr), ladj.sum(-1)


class AffineCoupling(_Coupling):
    """RealNVP affine coupling: ``y_tr = x_tr * exp(s(x_id)) + t(x_id)``.

    The log-scale is soft-clamped, ``s = c * tanh(raw / c)`` with ``c = scale_bound``, which
    keeps training stable. Transformed coordinates must be on the real line; the conditioning
    ones may be of any kind.

    Args:
        domain: layout of the ``D`` coordinates (or an ``int`` for ``D`` real coordinates).
        mask: ``D`` booleans, ``True`` for transformed coordinates.
        hidden: conditioner widths.
        activation: conditioner activation.
        context_features: size of the optional context.
        zero_init: start as the identity map.
        scale_bound: bound ``c`` of the log-scale.
    """

    def __init__(
        self,
        domain: Domain | int,
        mask: Sequence[bool],
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        context_features: int = 0,
        zero_init: bool = True,
        scale_bound: float = 3.0,
    ) -> None:
        domain = Domain.real(domain) if isinstance(domain, int) else domain
        super().__init__(domain, mask, 2, hidden, activation, context_features, zero_init)
        if any(domain.kinds[i] != Kind.REAL for i in self.tr_idx):
            raise ValueError("AffineCoupling: transformed coordinates must be on the real line")
        self.scale_bound = scale_bound

    def _elementwise(self, v: Tensor, raw: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        return conditional_affine(v, raw, inverse, self.scale_bound)


class SplineCoupling(_Coupling):
    """Rational-quadratic spline coupling over mixed domains (Durkan et al. 2019).

    Each transformed coordinate gets the spline of its kind (see
    :mod:`confflow.transforms.splines`): identity-tailed on the real line, bounded on an
    interval, circular (plus a learned rotation) on a circle.

    Args:
        domain: layout of the ``D`` coordinates (or an ``int`` for ``D`` real coordinates).
        mask: ``D`` booleans, ``True`` for transformed coordinates.
        bins: number of spline bins ``K``.
        bound: half-width of the spline region on real-line coordinates.
        hidden: conditioner widths.
        activation: conditioner activation.
        context_features: size of the optional context.
        zero_init: start as the identity map.
    """

    def __init__(
        self,
        domain: Domain | int,
        mask: Sequence[bool],
        bins: int = 8,
        bound: float = 5.0,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        context_features: int = 0,
        zero_init: bool = True,
    ) -> None:
        domain = Domain.real(domain) if isinstance(domain, int) else domain
        tr = [i for i, m in enumerate(mask) if m] if len(mask) == domain.dim else []
        spline = RQSpline(domain[tr], bins, bound)
        super().__init__(
            domain, mask, spline.params_per_dim, hidden, activation, context_features, zero_init
        )
        self.spline = spline

    def _elementwise(self, v: Tensor, raw: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        return self.spline.inverse(v, raw) if inverse else self.spline(v, raw)
