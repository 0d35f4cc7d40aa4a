"""Neural networks: conditioners for coupling and autoregressive flows."""

from confflow.nn.embedding import DomainEmbedding
from confflow.nn.made import MADE, MaskedLinear
from confflow.nn.mlp import ACTIVATIONS, MLP, make_activation

__all__ = ["ACTIVATIONS", "MADE", "MLP", "DomainEmbedding", "MaskedLinear", "make_activation"]
