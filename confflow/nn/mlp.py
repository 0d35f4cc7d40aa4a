"""Multi-layer perceptrons used as conditioners."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MLP", "make_activation"]

#: Activation functions selectable by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """Instantiates an activation by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Fully connected network ``[B, in] -> [B, out]``.

    Args:
        in_features: input size.
        out_features: output size.
        hidden: widths of the hidden layers (depth = ``len(hidden)``).
        activation: name of the activation between layers.
        zero_init: start the last layer at zero weights and bias, so that a flow layer driven
            by this conditioner starts as the identity map.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        zero_init: bool = True,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(f"MLP: sizes must be positive, got {in_features} -> {out_features}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), make_activation(activation)]
            width = h
        last = nn.Linear(width, out_features)
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in] -> [B, out]``."""
        return super().forward(x)
