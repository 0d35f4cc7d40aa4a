"""The bijection contract: :class:`Transform`, :class:`Compose` and :class:`Inverse`.

Direction convention, used everywhere in confflow:

* ``forward`` maps **latent -> data** (the sampling direction);
* ``inverse`` maps **data -> latent** (the density direction; ``Flow.log_prob`` runs it).

Both return ``(output, ladj)`` where ``ladj`` is ``log|det J|`` of the map that was applied,
shape ``[B]``. Hence ``inverse(forward(z)[0])[1] == -forward(z)[1]``.

Public methods (``forward``/``inverse``) validate their input and raise ``ValueError`` naming
the transform; subclasses implement the private ``_forward``/``_inverse``, which only compute.
Composite transforms call their parts' private methods, so a batch is validated once.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from confflow.domains import Domain

__all__ = ["Compose", "Inverse", "Transform"]


class Transform(nn.Module):
    """A bijection with exact log-determinant, forward = latent -> data.

    Subclasses implement ``_forward(x, context)`` and ``_inverse(y, context)``, each returning
    ``(out, ladj)`` with ``ladj`` of shape ``[B]``.

    Attributes:
        features: size of the last (feature) axis the transform expects, or ``None`` when the
            transform accepts any (elementwise maps) or an event shape of its own.
        domain: layout of the **data-side** features (output of ``forward``), if known.
        latent_domain: layout of the **latent-side** features (input of ``forward``), if known.
    """

    features: int | None = None
    domain: Domain | None = None
    latent_domain: Domain | None = None
    event_ndim: int = 1

    # ------------------------------------------------------------------ public API
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Maps latent -> data.

        Args:
            x: ``[B, D]`` latent points (or ``[B, *event]`` for transforms with ``event_ndim > 1``).
            context: optional ``[B, C]`` conditioning variables.

        Returns:
            ``(y, ladj)``: ``y`` with the data-side shape, ``ladj`` ``[B]`` = log|det dy/dx|.

        Raises:
            ValueError: wrong shape, non-finite values, or values outside the latent domain.
        """
        self._validate(x, context, self.latent_domain, "forward")
        return self._forward(x, context)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Maps data -> latent.

        Args:
            y: ``[B, D]`` data points (or ``[B, *event]``).
            context: optional ``[B, C]`` conditioning variables.

        Returns:
            ``(x, ladj)``: latent points and ``ladj`` ``[B]`` = log|det dx/dy|.

        Raises:
            ValueError: wrong shape, non-finite values, or values outside the data domain.
        """
        self._validate(y, context, self.domain, "inverse")
        return self._inverse(y, context)

    # ------------------------------------------------------------------ to implement
    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ validation
    def _validate(
        self, x: Tensor, context: Tensor | None, domain: Domain | None, direction: str
    ) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise ValueError(f"{name}.{direction}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name}.{direction}: expected a floating-point tensor, got {x.dtype}")
        if x.dim() != 1 + self.event_ndim:
            raise ValueError(
                f"{name}.{direction}: expected {1 + self.event_ndim} dimensions "
                f"[batch, ...], got shape {tuple(x.shape)}"
            )
        if self.features is not None and x.shape[-1] != self.features:
            raise ValueError(
                f"{name}.{direction}: expected {self.features} features, got shape {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}.{direction}: input contains NaN or infinite values")
        if context is not None:
            if context.dim() != 2 or context.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{name}.{direction}: context must be [batch, C] with batch {x.shape[0]}, "
                    f"got shape {tuple(context.shape)}"
                )
            if not bool(torch.isfinite(context).all()):
                raise ValueError(f"{name}.{direction}: context contains NaN or infinite values")
        if domain is not None and not domain.is_real:
            bad = domain.outside(x)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, -1])
                raise ValueError(
                    f"{name}.{direction}: feature {i} has values outside its "
                    f"{domain.kinds[i].name.lower()} domain [{domain.low[i]:.6g}, "
                    f"{domain.high[i]:.6g}]"
                )


class Compose(Transform):
    """Composition ``t_n o ... o t_1``: ``forward`` applies ``t_1`` first; log-dets add up.

    Args:
        transforms: the parts, in the order ``forward`` applies them (latent side first).
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        if len(self.transforms) == 0:
            raise ValueError("Compose: needs at least one transform")
        first, last = self.transforms[0], self.transforms[-1]
        self.latent_domain = first.latent_domain
        self.domain = last.domain
        self.event_ndim = first.event_ndim
        self.features = first.features

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        total = None
        for t in self.transforms:
            x, ladj = t._forward(x, context)
            total = ladj if total is None else total + ladj
        return x, total

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        total = None
        for t in reversed(self.transforms):
            y, ladj = t._inverse(y, context)
            total = ladj if total is None else total + ladj
        return y, total

    def _validate(
        self, x: Tensor, context: Tensor | None, domain: Domain | None, direction: str
    ) -> None:
        # Validate with the conventions of the part that receives the input first.
        part = self.transforms[0] if direction == "forward" else self.transforms[-1]
        part._validate(x, context, domain, direction)


class Inverse(Transform):
    """Swaps the directions of a transform: ``Inverse(t).forward == t.inverse``.

    Args:
        transform: the transform to invert.
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform
        self.features = transform.features
        self.domain = transform.latent_domain
        self.latent_domain = transform.domain
        self.event_ndim = transform.event_ndim

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.transform._inverse(x, context)

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.transform._forward(y, context)

    def _validate(
        self, x: Tensor, context: Tensor | None, domain: Domain | None, direction: str
    ) -> None:
        flipped = "inverse" if direction == "forward" else "forward"
        self.transform._validate(x, context, domain, flipped)
