"""Layers over a coordinate layout, shared by the families of the registry.

Each function takes the latent :class:`~confflow.domains.Domain` and the
:class:`~confflow.models.FlowConfig` and returns the transform of one family, latent -> data
(the ``coupling``, ``maf``/``iaf`` and ``cnf`` families over internal coordinates or features;
the couplings also serve the torsional family).
"""

from __future__ import annotations

import torch

from confflow.domains import Domain
from confflow.models.config import FlowConfig
from confflow.models.families import ConfigError, family_options
from confflow.transforms import (
    CNF,
    IAF,
    MAF,
    AffineCoupling,
    Compose,
    ODEConfig,
    Permutation,
    SplineCoupling,
    Transform,
    torus_cnf,
)

__all__ = ["autoregressive_stack", "coupling_stack", "internal_cnf", "ode_config"]


def _masks(dim: int, layers: int, seed: int) -> list[list[bool]]:
    """Pairs of complementary random half splits, so every coordinate is transformed."""
    gen = torch.Generator().manual_seed(seed)
    masks = []
    for _ in range(layers // 2):
        perm = torch.randperm(dim, generator=gen)
        mask = [False] * dim
        for i in perm[: dim // 2].tolist():
            mask[i] = True
        masks += [mask, [not m for m in mask]]
    return masks


def _real_only(domain: Domain, option: str) -> None:
    if not domain.is_real:
        raise ConfigError(
            f"flow.options.{option}: 'affine' needs real-line coordinates and this target has "
            "angles; use 'spline'"
        )


def coupling_stack(domain: Domain, config: FlowConfig) -> Compose:
    """Couplings over ``domain`` as ``config`` describes (identity at initialisation).

    Spline couplings unless ``config.options["transform"]`` is ``"affine"`` (real-line
    coordinates only).
    """
    if domain.dim < 2:
        raise ValueError(f"coupling_stack: need >= 2 coordinates, got {domain.dim}")
    masks = _masks(domain.dim, config.layers, config.mask_seed)
    if config.options.get("transform", "spline") == "affine":
        _real_only(domain, "transform")
        return Compose([AffineCoupling(domain, m, hidden=config.hidden) for m in masks])
    layers = [
        SplineCoupling(domain, m, bins=config.bins, bound=config.bound, hidden=config.hidden)
        for m in masks
    ]
    return Compose(layers)


def autoregressive_stack(domain: Domain, config: FlowConfig) -> Compose:
    """``config.layers`` MAF or IAF layers with order reversals between them."""
    elementwise = family_options(config.family, config.options)["elementwise"]
    if elementwise == "affine":
        _real_only(domain, "elementwise")
    layer = MAF if config.family == "maf" else IAF
    layers: list[Transform] = []
    for i in range(config.layers):
        if i:
            layers.append(Permutation.reverse(domain.dim, domain))
            domain = layers[-1].domain
        layers.append(layer(domain, elementwise, config.bins, config.bound, config.hidden))
    return Compose(layers)


def ode_config(options: dict) -> ODEConfig:
    """The solver settings in a CNF family's options (defaults filled in).

    Raises:
        ConfigError: settings that do not fit together, naming ``flow.options.<field>``.
    """
    keys = ("solver", "rtol", "atol", "step_size")
    try:
        return ODEConfig(**{k: options[k] for k in keys})
    except ValueError as err:
        raise ConfigError(f"flow.options.{err}") from err


def internal_cnf(domain: Domain, config: FlowConfig) -> CNF:
    """A CNF over ``domain`` with a torus-aware field of widths ``config.hidden``."""
    ode = ode_config(family_options(config.family, config.options))
    return torus_cnf(domain, config.hidden, ode)
