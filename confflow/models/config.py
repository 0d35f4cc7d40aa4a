"""Validated, plain-data configuration of a Boltzmann generator, saved with every checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from confflow.errors import InputError
from confflow.models.families import ConfigError, check_family, check_target

__all__ = ["BGConfig", "ConfigError", "FlowConfig", "TargetConfig", "from_mapping"]

_Config = TypeVar("_Config")

#: Targets :func:`~confflow.models.build_target` knows.
TARGET_KINDS = ("double-well", "aldp", "aldp-ff96", "aldp-vacuum", "smiles")


def from_mapping(
    cls: type[_Config], data: Any, where: str, error: type[InputError] = ConfigError
) -> _Config:
    """Builds the dataclass ``cls`` from a mapping of its fields (e.g. parsed JSON or YAML).

    Args:
        cls: a dataclass.
        data: its fields by name.
        where: the name of ``data`` in messages (e.g. ``"flow"``, a file name).
        error: the exception type raised.

    Raises:
        InputError: (of type ``error``) ``data`` is not a mapping, has a key ``cls`` does not
        know or lacks a required one; the message names ``where`` and the keys.
    """
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as err:  # a missing required key
        raise error(f"{where}: {err}") from err


@dataclass(frozen=True)
class FlowConfig:
    """The flow: its family (see :mod:`confflow.models.families`) and settings.

    Attributes:
        family: one of :data:`~confflow.models.families.FAMILIES`; ``"coupling"`` by default.
        options: the family's own options (validated against the registry).
        layers: number of coupling or autoregressive layers (>= 2, even: each pair of
            couplings transforms both halves); not used by the continuous families.
        bins: rational-quadratic bins per spline (>= 2).
        hidden: widths of each conditioner's hidden layers, or of the torus-aware field of
            ``cnf``; ``hidden[0]`` is the width of the equivariant fields.
        bound: half-width of the spline region on real-line coordinates (identity tails).
        mask_seed: seed of the random half splits that pick the transformed coordinates.
        circular_components: wrapped normals in the base density of each circular coordinate
            (free torsions) of the families over internal coordinates, fitted to the training
            data with a uniform component
            (:func:`~confflow.distributions.fit_wrapped_normal_mixture`); ``0``: a uniform
            base on the circles. A base that already holds every well of a torsion spares
            the splines steep maps across barriers (see ``benchmarks/README.md``, aldp).
    """

    layers: int = 8
    bins: int = 8
    hidden: tuple[int, ...] = (256, 256)
    bound: float = 5.0
    mask_seed: int = 0
    circular_components: int = 4
    family: str = "coupling"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_family(self.family, self.options)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not isinstance(self.layers, int) or self.layers < 2 or self.layers % 2:
            raise ConfigError(f"flow.layers: must be an even integer >= 2, got {self.layers!r}")
        if not isinstance(self.bins, int) or self.bins < 2:
            raise ConfigError(f"flow.bins: must be an integer >= 2, got {self.bins!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"flow.hidden: needs positive widths, got {self.hidden!r}")
        if not (isinstance(self.bound, int | float) and self.bound > 0):
            raise ConfigError(f"flow.bound: must be positive, got {self.bound!r}")
        k = self.circular_components
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 16:
            raise ConfigError(f"flow.circular_components: must be an integer in [0, 16], got {k!r}")


@dataclass(frozen=True)
class TargetConfig:
    """The target density ``exp(-E(x) / kT)``.

    Attributes:
        kind: ``"double-well"`` (analytic, features), ``"aldp"``, ``"aldp-ff96"``,
            ``"aldp-vacuum"`` (alanine dipeptide OpenMM systems in torch) or ``"smiles"``
            (MMFF94 of a molecule).
        params: kind-specific parameters: for ``double-well`` any of ``dim, a, b, c``;
            for ``smiles`` ``{"smiles": ...}`` and optionally ``variant`` (``"MMFF94"`` or
            ``"MMFF94s"``) and ``largest_fragment`` (bool); none for alanine dipeptide.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ConfigError(
                f"target.kind: unknown target {self.kind!r}; "
                f"choose one of {', '.join(TARGET_KINDS)}"
            )
        if not isinstance(self.params, dict):
            raise ConfigError(f"target.params: expected a mapping, got {self.params!r}")
        allowed = {
            "double-well": {"dim", "a", "b", "c"},
            "smiles": {"smiles", "variant", "largest_fragment"},
        }.get(self.kind, set())
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            raise ConfigError(f"target.params: unknown keys {unknown} for {self.kind!r}")
        if self.kind == "smiles" and not isinstance(self.params.get("smiles"), str):
            raise ConfigError("target.params: 'smiles' target needs params.smiles (a string)")
        if self.params.get("variant", "MMFF94") not in ("MMFF94", "MMFF94s"):
            raise ConfigError(
                f"target.params.variant: choose MMFF94 or MMFF94s, got {self.params['variant']!r}"
            )

    @property
    def is_molecular(self) -> bool:
        """True for targets over Cartesian positions ``[B, N, 3]``."""
        return self.kind != "double-well"


@dataclass(frozen=True)
class BGConfig:
    """Everything needed to rebuild a Boltzmann generator.

    Attributes:
        target: the target density.
        temperature: K, the temperature of the target ``exp(-E / kT)``.
        flow: the coupling flow.
        normalization: for molecular targets, the statistics of the internal coordinates,
            ``{"mean": [...], "std": [...], "rigid": [...]}`` (see
            :meth:`~confflow.coordinates.InternalNormalization.stats`); filled by the builder
            from data or from MMFF minima when ``None``.
        base_mixture: for ``flow.circular_components > 0``, the fitted circular mixtures
            ``{"loc": [[...]], "scale": [[...]], "weight": [[...]]}`` (rad; see
            :class:`~confflow.distributions.WrappedNormalMixture`), one row per circular
            latent coordinate; filled by the builder from data when ``None``.
    """

    target: TargetConfig
    temperature: float = 300.0
    flow: FlowConfig = field(default_factory=FlowConfig)
    normalization: dict[str, list[float]] | None = None
    base_mixture: dict[str, list[list[float]]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.target, TargetConfig):
            object.__setattr__(self, "target", from_mapping(TargetConfig, self.target, "target"))
        if not isinstance(self.flow, FlowConfig):
            object.__setattr__(self, "flow", from_mapping(FlowConfig, self.flow, "flow"))
        check_target(self.flow.family, self.target.kind, self.target.is_molecular)
        t = self.temperature
        if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
            raise ConfigError(f"temperature: must be a positive number of kelvin, got {t!r}")
        norm = self.normalization
        if norm is not None:
            if not (isinstance(norm, dict) and set(norm) == {"mean", "std", "rigid"}):
                raise ConfigError(
                    "normalization: expected {'mean': [...], 'std': [...], 'rigid': [...]} "
                    "(a model saved by an older confflow without 'rigid' must be trained again)"
                )
            if not len(norm["mean"]) == len(norm["std"]) == len(norm["rigid"]):
                raise ConfigError("normalization: mean, std and rigid differ in length")
        mix = self.base_mixture
        if mix is not None and not (
            isinstance(mix, dict) and set(mix) == {"loc", "scale", "weight"}
        ):
            raise ConfigError(
                "base_mixture: expected {'loc': [...], 'scale': [...], 'weight': [...]}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON- and ``weights_only``-safe)."""
        data = asdict(self)
        data["flow"]["hidden"] = list(self.flow.hidden)
        data["flow"]["options"] = dict(self.flow.options)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> BGConfig:
        """Inverse of :meth:`to_dict`; raises :class:`ConfigError` on bad input."""
        return from_mapping(cls, data, "model")
