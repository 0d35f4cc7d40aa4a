"""Neural networks: conditioners for coupling and autoregressive flows; vector fields.

The e3nn vector field lives in :mod:`confflow.nn.e3nn_field` (not imported here, so that
importing confflow does not pay for e3nn).
"""

from confflow.nn.egnn import EGNN
from confflow.nn.embedding import DomainEmbedding, with_context
from confflow.nn.made import MADE, MaskedLinear
from confflow.nn.mlp import ACTIVATIONS, MLP, make_activation
from confflow.nn.time_embedding import TimeEmbedding

__all__ = [
    "ACTIVATIONS",
    "EGNN",
    "MADE",
    "MLP",
    "DomainEmbedding",
    "MaskedLinear",
    "TimeEmbedding",
    "make_activation",
    "with_context",
]
