"""The Boltzmann-generator builder: coordinates, normalisation, coupling flow, base, target.

For a molecule the flow's data side is Cartesian positions ``[B, N, 3]`` in nm::

    base (DomainProduct over the normalised layout)
      -> spline couplings (circular splines on free torsions, real-line splines on the rest)
      -> InternalNormalization -> InternalCoordinates -> x [B, N, 3]

so ``log q(x)`` is the density of the canonical pose (rigid-body motion removed). For
analytic targets over features ``[B, D]`` the couplings act on ``R^D`` directly.
"""

from __future__ import annotations

import dataclasses

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
from confflow.models.config import BGConfig, FlowConfig
from confflow.models.targets import Target, build_target
from confflow.transforms import Compose, SplineCoupling, Transform

__all__ = ["BoltzmannGenerator", "build_boltzmann_generator", "coupling_stack"]


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


def coupling_stack(domain: Domain, config: FlowConfig) -> Compose:
    """Spline couplings over ``domain`` as ``config`` describes (identity at initialisation)."""
    if domain.dim < 2:
        raise ValueError(f"coupling_stack: need >= 2 coordinates, got {domain.dim}")
    layers = [
        SplineCoupling(domain, m, bins=config.bins, bound=config.bound, hidden=config.hidden)
        for m in _masks(domain.dim, config.layers, config.mask_seed)
    ]
    return Compose(layers)


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
    return config, Compose([*coupling_stack(latent, config.flow).transforms, norm, ic]), latent


def _base(config: BGConfig, domain: Domain) -> Distribution:
    """The base density: a mixture on the circles when the config asks for one."""
    if not config.flow.circular_components or not domain.circular_indices:
        return DomainProduct(domain)
    assert config.base_mixture is not None  # filled by _molecular_transform
    return CircularMixtureProduct(domain, WrappedNormalMixture.from_dict(config.base_mixture))


def build_boltzmann_generator(config: BGConfig, data: Tensor | None = None) -> BoltzmannGenerator:
    """Builds a Boltzmann generator from its configuration.

    Args:
        config: the configuration. For molecules without ``normalization`` the statistics
            come from ``data`` when given, else from ETKDG + MMFF94 minima; with
            ``flow.circular_components > 0`` and no ``base_mixture`` the circular mixtures of
            the base are fitted to ``data`` (without data they put all their weight on the
            uniform). The returned model's ``config`` carries both, so a checkpoint rebuilds
            the same model.
        data: optional ``[M, N, 3]`` training positions in nm (molecules only).

    Returns:
        The model in float32 on the CPU, its flow at the identity map.

    Raises:
        ValueError: data of the wrong shape.
    """
    target = build_target(config.target, config.temperature)
    if target.molecule is None:
        domain = Domain.real(int(target.energy.event_shape[0]))
        transform: Transform = coupling_stack(domain, config.flow)
    else:
        if data is not None and (data.dim() != 3 or data.shape[1:] != (target.energy.n_atoms, 3)):
            raise ValueError(
                f"data: expected [M, {target.energy.n_atoms}, 3] positions in nm, "
                f"got {tuple(data.shape)}"
            )
        config, transform, domain = _molecular_transform(config, target, data)
    flow = Flow(_base(config, domain), transform)
    return BoltzmannGenerator(config, flow, target)
