r"""A base density with multimodal circles: wrapped-normal mixtures fitted to torsion data.

A free torsion (phi, psi, a methyl rotor) has several wells separated by barriers. Under a
uniform base on the circle a monotone circular spline must be steep across every barrier,
and the flow samples a minor well only as far as the spline has learned it. A base that is
already a mixture on those circles starts with every well in place and its weight right.

Each circular coordinate ``c`` gets a density on ``[-pi, pi)`` (radians)::

    p_c(theta) = w_u / (2 pi) + sum_k w_k sum_{j=-J..J} N(theta + 2 pi j; mu_k, sigma_k^2)

a mixture of ``K`` wrapped normals and a *defensive* uniform component ``w_u`` (floored, so
that the base covers the whole circle). With ``sigma_k <=`` :data:`MAX_SCALE` the wraps
beyond ``|j| = J = 2`` change the density by less than ``1e-8`` of itself.
:func:`fit_wrapped_normal_mixture` fits ``(w, mu, sigma)`` by expectation-maximisation,
treating the wrap ``j`` as a latent variable as well as the component.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from confflow.distributions.base import DomainProduct
from confflow.domains import Domain, Kind, wrap_angle

__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "MIN_UNIFORM",
    "CircularMixtureProduct",
    "WrappedNormalMixture",
    "fit_wrapped_normal_mixture",
]

#: Largest component width (rad); broader mass is the uniform component's.
MAX_SCALE = 1.5
#: Smallest component width (rad).
MIN_SCALE = 0.01
#: Floor of the uniform component's weight.
MIN_UNIFORM = 0.01
_WRAPS = torch.arange(-2, 3, dtype=torch.float64) * 2 * math.pi
_BINS = 4096


def _log_terms(
    unrolled: Tensor, loc: Tensor, scale: Tensor, weight: Tensor
) -> tuple[Tensor, Tensor]:
    """Log-densities of every wrap of every component, and the uniform's weighted term.

    Args:
        unrolled: ``[..., C, 1, J]`` angles plus ``2 pi j`` for each wrap ``j`` (rad).
        loc: ``[C, K]`` component centres (rad).
        scale: ``[C, K]`` component widths (rad).
        weight: ``[C, K + 1]`` weights, the uniform's last.

    Returns:
        ``log N(theta + 2 pi j; mu_k, sigma_k^2)`` ``[..., C, K, J]`` (unweighted: a component
        of weight 0 must not make a whole ``logsumexp`` over wraps ``-inf``, whose gradient is
        NaN) and ``log(w_u / (2 pi))`` ``[C, 1]`` (nats per radian).
    """
    z = (unrolled - loc[..., None]) / scale[..., None]
    log_n = -0.5 * z**2 - scale[..., None].log() - 0.5 * math.log(2 * math.pi)
    log_u = weight[:, -1:].log() - math.log(2 * math.pi)
    return log_n, log_u


class WrappedNormalMixture(nn.Module):
    """``C`` circular mixtures of ``K`` wrapped normals plus a uniform (fixed, not trained).

    The parameters are buffers that follow the module's device and dtype but stay out of
    its ``state_dict``: they live in the model's config (:meth:`to_dict`).

    Args:
        loc: ``[C, K]`` component centres (rad, wrapped to ``[-pi, pi)``).
        scale: ``[C, K]`` component widths (rad), in ``[MIN_SCALE, MAX_SCALE]``.
        weight: ``[C, K + 1]`` component weights, the uniform's last; rows sum to 1.

    Raises:
        ValueError: mismatched shapes, widths out of range or weights that are not a
            distribution with the uniform's weight at least :data:`MIN_UNIFORM`.
    """

    def __init__(self, loc: Tensor, scale: Tensor, weight: Tensor) -> None:
        super().__init__()
        loc, scale, weight = (torch.as_tensor(t, dtype=torch.float64) for t in (loc, scale, weight))
        if (
            loc.dim() != 2
            or scale.shape != loc.shape
            or weight.shape != (*loc.shape[:1], loc.shape[1] + 1)
        ):
            raise ValueError(
                "WrappedNormalMixture: need loc, scale [C, K] and weight [C, K + 1], got "
                f"{tuple(loc.shape)}, {tuple(scale.shape)}, {tuple(weight.shape)}"
            )
        if not bool(torch.isfinite(loc).all()):
            raise ValueError("WrappedNormalMixture: loc must be finite")
        if bool(((scale < MIN_SCALE * (1 - 1e-6)) | (scale > MAX_SCALE * (1 + 1e-6))).any()):
            raise ValueError(
                f"WrappedNormalMixture: scale must lie in [{MIN_SCALE}, {MAX_SCALE}] rad"
            )
        if (
            bool((weight < 0).any())
            or not torch.allclose(weight.sum(1), torch.ones(len(weight), dtype=torch.float64))
            or bool((weight[:, -1] < MIN_UNIFORM * (1 - 1e-6)).any())
        ):
            raise ValueError(
                "WrappedNormalMixture: weight rows must be non-negative, sum to 1 and give "
                f"the uniform component (last) at least {MIN_UNIFORM}"
            )
        self.register_buffer("loc", wrap_angle(loc), persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("_wraps", _WRAPS.clone(), persistent=False)

    @classmethod
    def uniform(cls, circles: int, components: int) -> WrappedNormalMixture:
        """``circles`` mixtures with all their weight on the uniform (a uniform density)."""
        shape = (circles, components)
        weight = torch.zeros(circles, components + 1, dtype=torch.float64)
        weight[:, -1] = 1
        return cls(torch.zeros(shape), torch.ones(shape), weight)

    def log_prob(self, theta: Tensor) -> Tensor:
        """Log-density ``[B, C]`` (nats per radian) of angles ``theta`` ``[B, C]`` (rad)."""
        loc, scale, weight = (t.to(theta.dtype) for t in (self.loc, self.scale, self.weight))
        unrolled = theta[:, :, None, None] + self._wraps.to(theta.dtype)  # [B, C, 1, J]
        log_n, log_u = _log_terms(unrolled, loc, scale, weight)
        log_comp = torch.logsumexp(log_n, -1) + weight[:, :-1].log()  # [B, C, K]
        return torch.logsumexp(torch.cat([log_comp, log_u.expand(len(theta), -1, 1)], -1), -1)

    def sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """Draws ``[n, C]`` angles (rad, ``[-pi, pi)``) on the device and dtype of ``like``."""
        opts = dict(generator=generator, device=like.device, dtype=like.dtype)
        c = len(self.loc)
        cdf = self.weight.cumsum(1).to(like.dtype)
        pick = (
            torch.searchsorted(cdf, torch.rand(c, n, **opts), right=True)
            .clamp_max(cdf.shape[1] - 1)
            .T
        )
        uniform = pick == self.loc.shape[1]
        k = pick.clamp_max(self.loc.shape[1] - 1)
        loc = self.loc.to(like.dtype).gather(1, k.T).T
        scale = self.scale.to(like.dtype).gather(1, k.T).T
        normal = wrap_angle(loc + scale * torch.randn(n, c, **opts))
        flat = (torch.rand(n, c, **opts) * 2 - 1) * math.pi
        return torch.where(uniform, flat, normal)

    def to_dict(self) -> dict[str, list]:
        """Plain data (``loc``, ``scale``, ``weight``) for configs and checkpoints."""
        return {
            "loc": self.loc.tolist(),
            "scale": self.scale.tolist(),
            "weight": self.weight.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> WrappedNormalMixture:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or set(data) != {"loc", "scale", "weight"}:
            raise ValueError("WrappedNormalMixture: expected {'loc', 'scale', 'weight'}")
        loc, scale, weight = (
            torch.tensor(data[k], dtype=torch.float64) for k in ("loc", "scale", "weight")
        )
        return cls(loc, scale, weight)


def fit_wrapped_normal_mixture(
    theta: Tensor, components: int, iterations: int = 300, tol: float = 1e-9
) -> WrappedNormalMixture:
    """Maximum-likelihood fit (EM) of ``components`` wrapped normals plus a uniform, per column.

    The fit runs on a histogram of 4096 bins per column. The centres start evenly spaced
    round the circle from the circular mean, widths at ``pi / K`` rad (at most
    :data:`MAX_SCALE`), the uniform at 5%; after every step the widths are clamped to
    ``[MIN_SCALE, MAX_SCALE]`` and the uniform's weight floored at :data:`MIN_UNIFORM`.

    Args:
        theta: ``[M, C]`` angles (rad), ``M >= components``.
        components: number ``K >= 1`` of wrapped normals per column.
        iterations: most EM steps.
        tol: stop when the mean log-likelihood improves by less than this (nats).

    Returns:
        The fitted :class:`WrappedNormalMixture` (float64).

    Raises:
        ValueError: bad shapes, too few samples or non-finite angles.
    """
    if theta.dim() != 2 or not isinstance(components, int) or components < 1:
        raise ValueError(
            f"fit_wrapped_normal_mixture: need theta [M, C] and components >= 1, got "
            f"{tuple(theta.shape)} and {components!r}"
        )
    if theta.shape[0] < components or not bool(torch.isfinite(theta).all()):
        raise ValueError(
            f"fit_wrapped_normal_mixture: need >= {components} finite angles per column, "
            f"got {theta.shape[0]}"
        )
    theta = wrap_angle(theta.detach().to(torch.float64).cpu()).contiguous()
    c = theta.shape[1]
    # EM over a fine histogram (bins of 2 pi / 4096 rad, well below MIN_SCALE): the cost no
    # longer grows with the number of samples
    edges = torch.linspace(-math.pi, math.pi, _BINS + 1, dtype=torch.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    index = torch.bucketize(theta, edges[1:-1])
    count = torch.zeros(c, _BINS, dtype=torch.float64).scatter_add_(
        1, index.T, torch.ones_like(theta.T)
    )
    freq = (count / theta.shape[0]).T[..., None, None]  # [bins, C, 1, 1]
    # centres spread evenly round the circle from the circular mean, so a minor well far from
    # the bulk of the data still starts with a component near it
    mean = torch.atan2(torch.sin(theta).mean(0), torch.cos(theta).mean(0))
    spread = 2 * math.pi * torch.arange(components, dtype=torch.float64) / components
    loc = wrap_angle(mean[:, None] + spread)
    scale = torch.full((c, components), min(MAX_SCALE, math.pi / components), dtype=torch.float64)
    weight = torch.cat(
        [
            torch.full((c, components), 0.95 / components, dtype=torch.float64),
            torch.full((c, 1), 0.05, dtype=torch.float64),
        ],
        1,
    )
    unrolled = centres[:, None, None, None].expand(-1, c, 1, 1) + _WRAPS  # [bins, C, 1, J]
    last = -math.inf
    for _ in range(iterations):
        log_n, log_u = _log_terms(unrolled, loc, scale, weight)  # [bins, C, K, J], [C, 1]
        log_n = log_n + weight[:, :-1, None].log()
        flat = torch.cat([log_n.flatten(2), log_u.expand(_BINS, c, 1)], -1)
        log_z = torch.logsumexp(flat, -1)  # [bins, C]
        resp = torch.exp(flat - log_z[..., None]) * freq[..., 0]
        r_n = resp[..., :-1].reshape(log_n.shape)
        mass = r_n.sum((0, 3)).clamp_min(1e-12)  # [C, K]
        loc = (r_n * unrolled).sum((0, 3)) / mass
        var = (r_n * (unrolled - loc[None, :, :, None]) ** 2).sum((0, 3)) / mass
        scale = var.sqrt().clamp(MIN_SCALE, MAX_SCALE)
        uniform = resp[..., -1].sum(0)[:, None].clamp_min(MIN_UNIFORM)
        weight = torch.cat([mass / mass.sum(1, True) * (1 - uniform), uniform], 1)
        loc = wrap_angle(loc)
        ll = float((log_z * freq[:, :, 0, 0]).sum(0).mean())
        if ll - last < tol:
            break
        last = ll
    return WrappedNormalMixture(loc, scale, weight)


class CircularMixtureProduct(DomainProduct):
    """:class:`DomainProduct` with a :class:`WrappedNormalMixture` on every circular coordinate.

    Real-line coordinates keep a standard normal, intervals a uniform; the circles (in the
    order of ``domain.circular_indices``) follow ``mixture``.

    Args:
        domain: layout of the ``D`` coordinates.
        mixture: one mixture row per circular coordinate.

    Raises:
        ValueError: a mixture whose row count differs from the number of circles.
    """

    def __init__(self, domain: Domain, mixture: WrappedNormalMixture) -> None:
        super().__init__(domain)
        circles = domain.indices(Kind.CIRCLE)
        if len(mixture.loc) != len(circles):
            raise ValueError(
                f"CircularMixtureProduct: {len(mixture.loc)} mixtures for {len(circles)} circles"
            )
        self.mixture = mixture
        self.register_buffer("_circles", torch.tensor(circles, dtype=torch.long), persistent=False)

    def _log_prob(self, x: Tensor) -> Tensor:
        flat = math.log(2 * math.pi) * len(self._circles)  # undo the uniform on the circles
        theta = x[:, self._circles]
        inside = (theta >= -math.pi) & (theta < math.pi)
        mix = self.mixture.log_prob(torch.where(inside, theta, 0.0)).sum(-1)
        return super()._log_prob(x) + flat + mix

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        x = super()._sample(n, generator)
        x[:, self._circles] = self.mixture.sample(n, generator, x)
        return x
