r"""Monotone rational-quadratic splines on the real line, intervals and circles.

A spline with ``K`` bins maps ``[low, high]`` onto itself through ``K + 1`` knots
``(x_k, y_k)`` and positive knot derivatives ``d_k`` (Durkan et al. 2019, "Neural Spline
Flows"). Inside bin ``k``, with :math:`\xi = (x - x_k) / w_k` and :math:`s_k = h_k / w_k`,

.. math::
    y = y_k + h_k \frac{s_k \xi^2 + d_k \xi (1 - \xi)}{s_k + (d_{k+1} + d_k - 2 s_k)\xi(1-\xi)}.

The coordinate's :class:`~confflow.domains.Kind` sets the boundary behaviour:

* ``REAL``: the spline acts on ``[-bound, bound]``, boundary derivatives are fixed to 1 and
  the map is the identity outside ("identity tails"), so it is a C1 bijection of the line.
* ``INTERVAL``: the spline covers exactly ``[low, high]``; boundary derivatives are free.
* ``CIRCLE``: ``[-pi, pi]`` with ``d_0 = d_K`` (value and slope match across the seam, so the
  map is a circle diffeomorphism; Rezende et al. 2020), followed by a learned rotation.

Raw parameters per coordinate, in this order: ``K`` widths, ``K`` heights, ``K - 1`` interior
derivatives, then the two boundary derivatives if any coordinate is not on the real line, then
one rotation if any coordinate is a circle (:attr:`RQSpline.params_per_dim`: ``3K - 1`` to
``3K + 2``). All-zero raw parameters give the identity map (rotation 0, uniform bins, unit
derivatives).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from confflow.domains import Domain, Kind, wrap_angle

__all__ = ["RQSpline"]

# softplus(_DERIV_SHIFT) + MIN_DERIVATIVE == 1, so that zero raw parameters give slope 1.
_MIN_BIN = 1e-3
_MIN_DERIVATIVE = 1e-3
_DERIV_SHIFT = math.log(math.expm1(1.0 - _MIN_DERIVATIVE))


class RQSpline(nn.Module):
    """Elementwise rational-quadratic splines over a (possibly mixed) domain.

    The module holds no learnable parameters: the raw spline parameters come from a
    conditioner at call time.

    Args:
        domain: layout of the ``D`` coordinates the splines act on.
        bins: number of bins ``K``.
        bound: half-width of the spline region on real-line coordinates (identity outside).
    """

    def __init__(self, domain: Domain, bins: int = 8, bound: float = 5.0) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError(f"RQSpline: bins must be >= 2, got {bins}")
        if not bound > 0:
            raise ValueError(f"RQSpline: bound must be positive, got {bound}")
        self.domain = domain
        self.bins = bins
        self.bound = float(bound)
        low = [
            -bound if k == Kind.REAL else lo for k, lo in zip(domain.kinds, domain.low, strict=True)
        ]
        high = [
            bound if k == Kind.REAL else hi for k, hi in zip(domain.kinds, domain.high, strict=True)
        ]
        # Bounds are kept in float64 and cast per call: a float32 buffer cast up to float64
        # would move the circle's ends off +-pi.
        self._bounds64 = torch.tensor([low, high], dtype=torch.float64)
        self._bounds_cache: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}
        self.register_buffer("real", domain.mask(Kind.REAL), persistent=False)
        self.register_buffer("circle", domain.mask(Kind.CIRCLE), persistent=False)
        self.all_real = domain.is_real
        self.any_circle = bool(self.circle.any())
        self.any_real = bool(self.real.any())

    def _bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(low, high)`` ``[D]`` in the dtype and on the device of ``like``."""
        key = (like.dtype, like.device)
        if key not in self._bounds_cache:
            low, high = self._bounds64.to(dtype=like.dtype, device=like.device)
            self._bounds_cache[key] = (low, high)
        return self._bounds_cache[key]

    @property
    def params_per_dim(self) -> int:
        """Number of raw parameters per coordinate (``3K - 1`` on real lines only)."""
        return 3 * self.bins - 1 + (0 if self.all_real else 2) + int(self.any_circle)

    # ------------------------------------------------------------------ knots
    def _knots(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Knot positions, values and derivatives ``[B, D, K+1]`` from raw ``[B, D, P]``."""
        K = self.bins
        low, high = self._bounds(raw)
        span = high - low
        w = torch.softmax(raw[..., :K], dim=-1) * (1 - _MIN_BIN * K) + _MIN_BIN
        h = torch.softmax(raw[..., K : 2 * K], dim=-1) * (1 - _MIN_BIN * K) + _MIN_BIN
        end = 3 * K - 1 + (0 if self.all_real else 2)
        d = F.softplus(raw[..., 2 * K : end] + _DERIV_SHIFT) + _MIN_DERIVATIVE
        zero = w.new_zeros((*w.shape[:-1], 1))
        one = w.new_ones((*w.shape[:-1], 1))
        # Interior knots from cumulative sums; end knots set exactly so the map hits the bounds.
        cw = torch.cat([zero, torch.cumsum(w[..., :-1], dim=-1), one], dim=-1)
        ch = torch.cat([zero, torch.cumsum(h[..., :-1], dim=-1), one], dim=-1)
        xk = low[:, None] + span[:, None] * cw
        yk = low[:, None] + span[:, None] * ch
        if self.all_real:
            d = torch.cat([one, d, one], dim=-1)
        else:
            # d holds the K - 1 interior derivatives, then the first and the last one.
            first = torch.where(self.real[:, None], one, d[..., K - 1 : K])
            last = torch.where(self.circle[:, None], first, d[..., K:])
            last = torch.where(self.real[:, None], one, last)
            d = torch.cat([first, d[..., : K - 1], last], dim=-1)
        return xk, yk, d

    @staticmethod
    def _bin_params(
        knots_in: Tensor, xk: Tensor, yk: Tensor, d: Tensor, v: Tensor
    ) -> tuple[Tensor, ...]:
        """Gathers ``x_k, w_k, y_k, h_k, d_k, d_{k+1}`` ``[B, D]`` of the bin holding ``v``."""
        idx = (v[..., None] >= knots_in[..., 1:-1]).sum(dim=-1, keepdim=True)
        table = torch.stack([xk, yk, d], dim=-1)  # [B, D, K+1, 3]
        lo = table.gather(-2, idx[..., None].expand(*idx.shape, 3)).squeeze(-2)
        hi = table.gather(-2, (idx + 1)[..., None].expand(*idx.shape, 3)).squeeze(-2)
        x0, y0, d0 = lo.unbind(-1)
        x1, y1, d1 = hi.unbind(-1)
        return x0, x1 - x0, y0, y1 - y0, d0, d1

    # ------------------------------------------------------------------ maps
    def forward(self, x: Tensor, raw: Tensor) -> tuple[Tensor, Tensor]:
        """Applies the splines.

        Args:
            x: ``[B, D]`` inputs in the domain.
            raw: ``[B, D, P]`` raw parameters (``P = params_per_dim``).

        Returns:
            ``(y, ladj)``: ``y`` ``[B, D]`` and the elementwise ``log dy/dx`` ``[B, D]``.
        """
        xk, yk, d = self._knots(raw)
        xc = self._clamp(x, raw)
        x0, w, y0, h, d0, d1 = self._bin_params(xk, xk, yk, d, xc)
        s = h / w
        xi = (xc - x0) / w
        xi1 = xi * (1 - xi)
        denom = s + (d1 + d0 - 2 * s) * xi1
        y = y0 + h * (s * xi * xi + d0 * xi1) / denom
        deriv = s * s * (d1 * xi * xi + 2 * s * xi1 + d0 * (1 - xi) ** 2)
        ladj = torch.log(deriv) - 2 * torch.log(denom)
        y, ladj = self._tails(x, y, ladj)
        if self.any_circle:
            y = torch.where(self.circle, wrap_angle(y + raw[..., -1]), y)
        return y, ladj

    def inverse(self, y: Tensor, raw: Tensor) -> tuple[Tensor, Tensor]:
        """Inverts the splines.

        Args:
            y: ``[B, D]`` outputs in the domain.
            raw: ``[B, D, P]`` raw parameters, the same as for the forward call.

        Returns:
            ``(x, ladj)``: ``x`` ``[B, D]`` and the elementwise ``log dx/dy`` ``[B, D]``.
        """
        xk, yk, d = self._knots(raw)
        if self.any_circle:
            y = torch.where(self.circle, wrap_angle(y - raw[..., -1]), y)
        yc = self._clamp(y, raw)
        x0, w, y0, h, d0, d1 = self._bin_params(yk, xk, yk, d, yc)
        s = h / w
        dy = yc - y0
        c1 = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * c1
        b = h * d0 - dy * c1
        c = -s * dy
        sq = torch.sqrt((b * b - 4 * a * c).clamp(min=0))
        # The root in [0, 1], written without cancellation for either sign of b.
        neg = b < 0
        a_safe = torch.where(neg, a, torch.ones_like(a))
        den = torch.where(neg, -torch.ones_like(b), -b - sq)
        xi = torch.where(neg, (sq - b) / (2 * a_safe), 2 * c / den)
        x = x0 + xi * w
        xi1 = xi * (1 - xi)
        denom = s + c1 * xi1
        deriv = s * s * (d1 * xi * xi + 2 * s * xi1 + d0 * (1 - xi) ** 2)
        ladj = 2 * torch.log(denom) - torch.log(deriv)
        return self._tails(y, x, ladj)

    def _clamp(self, v: Tensor, like: Tensor) -> Tensor:
        low, high = self._bounds(like)
        # torch.clamp passes the full gradient at the bounds (maximum/minimum would halve it).
        return torch.clamp(v, low, high)

    def _tails(self, v_in: Tensor, v_out: Tensor, ladj: Tensor) -> tuple[Tensor, Tensor]:
        """Identity outside ``[-bound, bound]`` on real-line coordinates."""
        if not self.any_real:
            return v_out, ladj
        outside = (v_in.abs() >= self.bound) & self.real
        v_out = torch.where(outside, v_in, v_out)
        ladj = torch.where(outside, torch.zeros_like(ladj), ladj)
        return v_out, ladj
