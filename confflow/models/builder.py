"""The one Boltzmann-generator builder: target, coordinates, flow of the config's family, base.

:func:`build_boltzmann_generator` dispatches on ``config.flow.family`` (the registry of
:mod:`confflow.models.families`). The families over internal coordinates (``coupling``,
``maf``, ``iaf``, ``cnf``) share the coordinates: for a molecule the flow's data side is
Cartesian positions ``[B, N, 3]`` in nm::

    base (DomainProduct over the normalised layout, or circular mixtures on the torsions)
      -> the family's layers (domain-aware: circular on free torsions, real on the rest)
      -> InternalNormalization -> InternalCoordinates -> x [B, N, 3]

so ``log q(x)`` is the density of the canonical pose (rigid-body motion removed). For
analytic targets over features ``[B, D]`` the layers act on ``R^D`` directly. The families
over Cartesian positions and torsions are built in :mod:`confflow.models.cartesian`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from confflow.coordinates import InternalCoordinates, InternalNormalization, ZMatrix
from confflow.distributions import (
    CircularMixtureProduct,
    Distribution,
    DomainProduct,
    Flow,
    WrappedNormalMixture,
    fit_wrapped_normal_mixture,
)
from confflow.domains import Domain
from confflow.models.cartesian import build_equivariant_cnf, build_torsional
from confflow.models.config import BGConfig, FlowConfig
from confflow.models.families import FAMILIES
from confflow.models.stacks import autoregressive_stack, coupling_stack, internal_cnf
from confflow.models.targets import Target, build_target
from confflow.transforms import Compose, Transform

__all__ = ["BUILDERS", "BoltzmannGenerator", "build_boltzmann_generator", "coupling_stack"]


#: How each family over internal coordinates or features lays its layers over a domain.
_STACKS: dict[str, Callable[[Domain, FlowConfig], Transform]] = {
    "coupling": coupling_stack,
    "maf": autoregressive_stack,
    "iaf": autoregressive_stack,
    "cnf": internal_cnf,
}


class BoltzmannGenerator(nn.Module):
    """A flow ``q(x)`` with its target ``p(x) ~ exp(-E(x) / kT)``.

    Args:
        config: the configuration (complete: normalisation filled in for molecules).
        flow: the flow (base + transform).
        target: the built target.

    Attributes:
        config, flow, target (its ``energy`` is a submodule), temperature (K), fingerprint.
    """

    def __init__(self, config: BGConfig, flow: Flow, target: Target) -> None:
        super().__init__()
        self.config = config
        self.flow = flow
        self.energy = target.energy
        self.target = target
        self.temperature = float(config.temperature)

    @property
    def fingerprint(self) -> str:
        """Identity of the target system (see :class:`~confflow.models.targets.Target`)."""
        return self.target.fingerprint

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one configuration: ``(N, 3)`` (nm) or ``(D,)``."""
        return tuple(self.energy.event_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draws ``n`` configurations with ``log q`` (differentiable; wrap in ``no_grad``).

        Returns:
            ``(x, log_q)``: ``[n, *event_shape]`` (nm for molecules) and ``[n]`` nats.
        """
        return self.flow.sample(n, generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log q(x)`` ``[B]`` (nats) of configurations ``[B, *event_shape]``."""
        return self.flow.log_prob(x)

    def from_positions(self, x: Tensor) -> Tensor:
        """Positions ``[M, N, 3]`` (nm) as this model's samples (training data).

        Returns:
            Torsions ``[M, K]`` (rad, float32) for the torsional family; ``x`` otherwise.
        """
        if self.config.flow.family == "torsional":
            return self.energy.embedding.project(x.to(torch.float64)).float()
        return x

    def reduced_energy(self, x: Tensor) -> Tensor:
        """``u(x) = E(x) / kT`` ``[B]`` at the model's temperature (kT units)."""
        return self.energy.reduced(x, self.temperature)

    def log_weights(self, x: Tensor, log_q: Tensor) -> Tensor:
        """Float64 log-weights ``-u(x) - log q(x)`` ``[B]`` of flow samples.

        Samples that are not finite, or whose energy is NaN (e.g. coinciding atoms), get
        weight zero (``-inf``); :meth:`invalid` counts them.
        """
        with torch.no_grad():
            u = self._reduced_or_inf(x, log_q)
            log_w = -u - log_q.detach().to(torch.float64)
            return torch.where(torch.isinf(u), -torch.inf, log_w)

    def invalid(self, x: Tensor, log_q: Tensor) -> Tensor:
        """Boolean ``[B]``: samples that cannot be weighted (non-finite or NaN energy)."""
        with torch.no_grad():
            return torch.isinf(self._reduced_or_inf(x, log_q))

    def _reduced_or_inf(self, x: Tensor, log_q: Tensor) -> Tensor:
        ok = torch.isfinite(x.flatten(1)).all(1) & torch.isfinite(log_q)
        u = torch.full(log_q.shape, torch.inf, dtype=torch.float64, device=log_q.device)
        if bool(ok.any()):
            u[ok] = self.reduced_energy(x[ok]).detach().to(torch.float64)
        return torch.nan_to_num(u, nan=torch.inf, posinf=torch.inf, neginf=-torch.inf)


def _molecular_transform(
    config: BGConfig, target: Target, data: Tensor | None
) -> tuple[BGConfig, Transform, Domain]:
    assert target.molecule is not None
    ic = InternalCoordinates(ZMatrix.from_molecule(target.molecule))
    k = config.flow.circular_components
    z = None  # the data's internal coordinates, computed once for whatever is fitted to them
    if data is not None and (config.normalization is None or (k and config.base_mixture is None)):
        with torch.no_grad():
            z, _ = ic.inverse(data.to(torch.float64))
    if config.normalization is None:
        if z is not None:
            norm = InternalNormalization.from_data(z, ic.latent_domain)
        else:
            norm = InternalNormalization.from_molecule(target.molecule, ic)
        config = dataclasses.replace(config, normalization=norm.stats())
    if len(config.normalization["mean"]) != ic.features:
        raise ValueError(
            f"normalization: {len(config.normalization['mean'])} entries for "
            f"{ic.features} internal coordinates"
        )
    norm = InternalNormalization.from_stats(ic.latent_domain, config.normalization)
    latent = norm.latent_domain
    circles = list(latent.circular_indices)
    if k and circles and config.base_mixture is None:
        if z is None:  # nothing to fit: a uniform base, kept in the config all the same
            mixture = WrappedNormalMixture.uniform(len(circles), k)
        else:
            with torch.no_grad():
                y, _ = norm.inverse(z)
            mixture = fit_wrapped_normal_mixture(y[:, circles], k)
        config = dataclasses.replace(config, base_mixture=mixture.to_dict())
    stack = _STACKS[config.flow.family](latent, config.flow)
    # flat, so state dicts keep the layout of the checkpoints written before the registry
    layers = list(stack.transforms) if isinstance(stack, Compose) else [stack]
    return config, Compose([*layers, norm, ic]), latent


def _base(config: BGConfig, domain: Domain) -> Distribution:
    """The base density: a mixture on the circles when the config asks for one."""
    if not config.flow.circular_components or not domain.circular_indices:
        return DomainProduct(domain)
    assert config.base_mixture is not None  # filled by _molecular_transform
    return CircularMixtureProduct(domain, WrappedNormalMixture.from_dict(config.base_mixture))


Built = tuple[BGConfig, Distribution, Transform, Target]


def _internal(config: BGConfig, target: Target, data: Tensor | None) -> Built:
    """The families over internal coordinates (molecules) or features (analytic targets)."""
    if target.molecule is None:
        domain = Domain.real(int(target.energy.event_shape[0]))
        transform = _STACKS[config.flow.family](domain, config.flow)
    else:
        config, transform, domain = _molecular_transform(config, target, data)
    return config, _base(config, domain), transform, target


#: The construction function of every family of the registry.
BUILDERS: dict[str, Callable[[BGConfig, Target, Tensor | None], Built]] = {
    "coupling": _internal,
    "maf": _internal,
    "iaf": _internal,
    "cnf": _internal,
    "egnn-cnf": build_equivariant_cnf,
    "e3nn-cnf": build_equivariant_cnf,
    "torsional": build_torsional,
}
assert set(BUILDERS) == set(FAMILIES), "every family of the registry needs a builder"


def build_boltzmann_generator(config: BGConfig, data: Tensor | None = None) -> BoltzmannGenerator:
    """Builds a Boltzmann generator of any family from its configuration.

    Args:
        config: the configuration; ``config.flow.family`` picks the construction. For
            molecules over internal coordinates without ``normalization`` the statistics come
            from ``data`` when given, else from ETKDG + MMFF94 minima; with
            ``flow.circular_components > 0`` and no ``base_mixture`` the circular mixtures of
            the base are fitted to ``data`` (without data they put all their weight on the
            uniform). Options a family fills from data (the equivariant base's ``std``, the
            torsional ``reference``) are filled likewise. The returned model's ``config``
            carries all of it, so a checkpoint rebuilds the same model.
        data: optional ``[M, N, 3]`` training positions in nm (molecules only).

    Returns:
        The model in float32 on the CPU, its flow at (or near, for CNFs) the identity map.

    Raises:
        ValueError: data of the wrong shape.
        ConfigError: options that do not fit the target.
    """
    target = build_target(config.target, config.temperature)
    n = target.molecule.n_atoms if target.molecule is not None else 0
    if n and data is not None and (data.dim() != 3 or data.shape[1:] != (n, 3)):
        raise ValueError(f"data: expected [M, {n}, 3] positions in nm, got {tuple(data.shape)}")
    config, base, transform, target = BUILDERS[config.flow.family](config, target, data)
    return BoltzmannGenerator(config, Flow(base, transform), target)
