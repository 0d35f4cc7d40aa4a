r"""Normalisation of internal coordinates: standardised bonds and angles, centred torsions.

:class:`InternalNormalization` is a :class:`~confflow.transforms.Transform` on ``[B, 3N-6]``.
Its data side is the raw internal coordinates of :class:`~confflow.coordinates.InternalCoordinates`
(bonds nm, angles rad, torsions rad); its latent side holds

* bonds: ``(b - mean) / std`` (real line);
* angles: ``(theta - mean) / std``, on the interval ``(-mean / std, (pi - mean) / std)``;
* torsions: ``wrap(phi - circular_mean)`` (still a circle, a rotation of it).

``forward`` (latent -> data) multiplies by ``std``: ``ladj = sum(log std)`` over bonds and angles;
torsion rotations are volume-preserving. Statistics come from data
(:meth:`InternalNormalization.from_data`) or from ETKDG + MMFF94 minima of a molecule
(:meth:`InternalNormalization.from_molecule`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from confflow.chem.molecule import Molecule
from confflow.coordinates.internal import InternalCoordinates
from confflow.domains import Domain, Kind, wrap_angle
from confflow.transforms.base import Transform

__all__ = ["InternalNormalization"]


class InternalNormalization(Transform):
    """Affine standardisation of non-circular features and rotation of circular ones.

    Args:
        domain: data-side layout ``[D]`` (e.g. ``InternalCoordinates.latent_domain``);
            REAL and INTERVAL features are standardised, CIRCLE features rotated.
        mean: ``[D]`` means (circular means, rad, for circles), in the features' units.
        std: ``[D]`` positive standard deviations (ignored for circles).

    Raises:
        ValueError: shapes that differ from the domain, or non-positive ``std``.
    """

    def __init__(self, domain: Domain, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        if mean.numel() != domain.dim or std.numel() != domain.dim:
            raise ValueError(
                f"InternalNormalization: mean/std need {domain.dim} entries, "
                f"got {mean.numel()}/{std.numel()}"
            )
        circle = domain.mask(Kind.CIRCLE)
        if bool((std[~circle] <= 0).any()) or not bool(torch.isfinite(std).all()):
            raise ValueError("InternalNormalization: std must be finite and positive")
        std = torch.where(circle, torch.ones_like(std), std)
        self.features = domain.dim
        self.domain = domain
        low, high = domain.bounds()
        lat_low = torch.where(circle, low, (low - mean) / std)
        lat_high = torch.where(circle, high, (high - mean) / std)
        self.latent_domain = Domain(domain.kinds, tuple(lat_low.tolist()), tuple(lat_high.tolist()))
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("circle", circle)

    @classmethod
    def from_data(cls, z: Tensor, domain: Domain, min_std: float = 1e-3) -> InternalNormalization:
        """Statistics from samples of the data side.

        Args:
            z: ``[M, D]`` internal coordinates (bonds nm, angles and torsions rad), ``M >= 2``.
            domain: their layout.
            min_std: floor on the standard deviations (same units as each feature), so that
                near-rigid coordinates (bond lengths at minima) do not blow up.

        Raises:
            ValueError: wrong shape, too few samples, or non-finite values.
        """
        if z.dim() != 2 or z.shape[1] != domain.dim or z.shape[0] < 2:
            raise ValueError(
                f"InternalNormalization.from_data: need z [M >= 2, {domain.dim}], "
                f"got {tuple(z.shape)}"
            )
        if not bool(torch.isfinite(z).all()):
            raise ValueError("InternalNormalization.from_data: z contains NaN or infinite values")
        z = z.detach().to(torch.float64)
        circle = domain.mask(Kind.CIRCLE).to(z.device)
        circ_mean = torch.atan2(torch.sin(z).mean(0), torch.cos(z).mean(0))
        mean = torch.where(circle, circ_mean, z.mean(0))
        std = z.std(0).clamp(min=min_std)
        return cls(domain, mean.cpu(), std.cpu())

    @classmethod
    def from_molecule(
        cls,
        molecule: Molecule,
        transform: InternalCoordinates,
        n_conformers: int = 32,
        seed: int = 0,
        min_std: float = 1e-3,
    ) -> InternalNormalization:
        """Statistics from ETKDGv3 conformers of ``molecule`` minimised with MMFF94.

        Args:
            molecule: the molecule whose atom order ``transform`` follows.
            transform: the internal-coordinate map.
            n_conformers: number of minima to sample (``>= 2``).
            seed: ETKDG seed.
            min_std: floor on the standard deviations (see :meth:`from_data`).
        """
        x = molecule.embed(n_conformers, seed=seed, mmff=True)
        z, _ = transform.inverse(x)
        return cls.from_data(z, transform.latent_domain, min_std=min_std)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        mean, std = self.mean.to(x.dtype), self.std.to(x.dtype)
        y = torch.where(self.circle, wrap_angle(x + mean), x * std + mean)
        ladj = std.log().sum().expand(x.shape[0])
        return y, ladj

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        mean, std = self.mean.to(y.dtype), self.std.to(y.dtype)
        x = torch.where(self.circle, wrap_angle(y - mean), (y - mean) / std)
        ladj = -std.log().sum().expand(y.shape[0])
        return x, ladj
