"""Domain layouts: which coordinates live on the real line, an interval, or a circle.

A :class:`Domain` is a small immutable description of a feature vector ``[..., D]``.
Transforms and base densities read it to choose the right map per coordinate (identity-tailed
splines on the real line, bounded splines on intervals, circular splines on torsions), so that
mixed internal coordinates can flow through one layer.

Circles are always the interval ``[-pi, pi)`` (radians). Intervals carry their bounds in the
units of the coordinate they describe.

Example:
    >>> d = Domain.real(2) + Domain.interval(1, 0.0, 3.0) + Domain.circle(3)
    >>> d.dim, d.circular_indices
    (6, (3, 4, 5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import torch

__all__ = ["Domain", "Kind", "wrap_angle"]


class Kind(IntEnum):
    """The topology of one coordinate."""

    REAL = 0
    INTERVAL = 1
    CIRCLE = 2


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Wraps angles in radians to ``[-pi, pi)``.

    Args:
        x: any shape, radians.

    Returns:
        Same shape, radians in ``[-pi, pi)``.
    """
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


@dataclass(frozen=True)
class Domain:
    """Per-coordinate topology and bounds of a feature vector ``[..., D]``.

    Attributes:
        kinds: the kind of each coordinate, length ``D``.
        low: lower bound per coordinate (``-inf`` for real, ``-pi`` for circles).
        high: upper bound per coordinate (``+inf`` for real, ``pi`` for circles).
    """

    kinds: tuple[Kind, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.kinds)
        if len(self.low) != n or len(self.high) != n:
            raise ValueError("Domain: kinds, low and high must have the same length")
        for i, (k, lo, hi) in enumerate(zip(self.kinds, self.low, self.high, strict=True)):
            if k == Kind.INTERVAL and not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"Domain: interval {i} needs finite low < high, got [{lo}, {hi}]")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def real(cls, n: int) -> Domain:
        """``n`` coordinates on the real line."""
        return cls((Kind.REAL,) * n, (-math.inf,) * n, (math.inf,) * n)

    @classmethod
    def interval(cls, n: int, low: float, high: float) -> Domain:
        """``n`` coordinates on the open interval ``(low, high)``."""
        return cls((Kind.INTERVAL,) * n, (float(low),) * n, (float(high),) * n)

    @classmethod
    def circle(cls, n: int) -> Domain:
        """``n`` angles on the circle ``[-pi, pi)`` (radians)."""
        return cls((Kind.CIRCLE,) * n, (-math.pi,) * n, (math.pi,) * n)

    def __add__(self, other: Domain) -> Domain:
        """Concatenates two layouts."""
        return Domain(self.kinds + other.kinds, self.low + other.low, self.high + other.high)

    def __len__(self) -> int:
        return len(self.kinds)

    def __getitem__(self, index: slice | list[int] | tuple[int, ...]) -> Domain:
        """Sub-layout of the coordinates selected by a slice or a list of indices."""
        idx = range(self.dim)[index] if isinstance(index, slice) else list(index)
        return Domain(
            tuple(self.kinds[i] for i in idx),
            tuple(self.low[i] for i in idx),
            tuple(self.high[i] for i in idx),
        )

    # ----------------------------------------------------------------- queries
    @property
    def dim(self) -> int:
        """Number of coordinates ``D``."""
        return len(self.kinds)

    def indices(self, kind: Kind) -> tuple[int, ...]:
        """Indices of the coordinates of one kind."""
        return tuple(i for i, k in enumerate(self.kinds) if k == kind)

    @property
    def circular_indices(self) -> tuple[int, ...]:
        """Indices of circular coordinates."""
        return self.indices(Kind.CIRCLE)

    @property
    def is_real(self) -> bool:
        """True when every coordinate is on the real line."""
        return all(k == Kind.REAL for k in self.kinds)

    def mask(self, kind: Kind) -> torch.Tensor:
        """Boolean mask ``[D]`` of the coordinates of one kind."""
        return torch.tensor([k == kind for k in self.kinds], dtype=torch.bool)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds as float64 tensors ``[D]`` (``inf`` for real lines)."""
        return (
            torch.tensor(self.low, dtype=torch.float64),
            torch.tensor(self.high, dtype=torch.float64),
        )

    def outside(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean ``[..., D]``: where ``x`` lies outside its coordinate's domain.

        Intervals are open; circles are ``[-pi, pi]`` (both ends accepted, since they are one
        point).
        """
        low, high = (b.to(device=x.device, dtype=x.dtype) for b in self.bounds())
        interval = self.mask(Kind.INTERVAL).to(x.device)
        circle = self.mask(Kind.CIRCLE).to(x.device)
        bad_interval = interval & ((x <= low) | (x >= high))
        bad_circle = circle & ((x < low) | (x > high))
        return bad_interval | bad_circle

    def to_dict(self) -> dict[str, list]:
        """Plain-data form for configs and checkpoints."""
        return {
            "kinds": [int(k) for k in self.kinds],
            "low": list(self.low),
            "high": list(self.high),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Domain:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(Kind(k) for k in data["kinds"]),
            tuple(float(v) for v in data["low"]),
            tuple(float(v) for v in data["high"]),
        )
