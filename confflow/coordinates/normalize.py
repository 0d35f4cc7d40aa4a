r"""Normalisation of internal coordinates to a near-standard-normal latent space.

:class:`InternalNormalization` is a :class:`~confflow.transforms.Transform` on ``[B, 3N-6]``.
Its data side is the raw internal coordinates of :class:`~confflow.coordinates.InternalCoordinates`
(bonds nm, angles rad, torsions rad). Its latent side puts every coordinate that has one narrow
peak on the real line, where the flow's base is a standard normal and its splines have room:

* bonds (real line): ``z = (b - mean) / std``;
* angles (interval ``(low, high)``, ``(0, pi)``): ``y = logit((theta - low) / (high - low))``,
  ``z = (y - mean) / std`` — an exact bijection of the open interval onto the real line,
  nearly affine around a narrow peak;
* *rigid* torsions (one peak: sibling impropers, peptide bonds, rings):
  ``t = wrap(phi - mean)`` in ``(-pi, pi)``, ``y = logit((t + pi) / (2 pi))``, ``z = y / std``
  (``mean`` is the circular mean, rad) — the circle cut at the point opposite its peak;
* free torsions (rotors, several wells) stay on the circle, rotated:
  ``z = wrap(phi - mean)``.

``mean`` and ``std`` are in the units each row uses: nm for bonds, logit units for angles,
rad (``mean``) and logit units (``std``) for rigid torsions, rad for free torsions (``std``
unused, 1). ``forward`` (latent -> data) is the inverse of the above; its log-determinant is
exact (tested against autograd). Statistics come from data (:meth:`InternalNormalization.from_data`:
a torsion is rigid when every sample lies within ``pi / 2`` of its circular mean) or from
ETKDG + MMFF94 minima of a molecule (:meth:`InternalNormalization.from_molecule`: rigid are
the torsions the Z-matrix fixes by a sibling atom and those about ring or multiple bonds).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from confflow.chem.molecule import Molecule
from confflow.coordinates.internal import InternalCoordinates
from confflow.domains import Domain, Kind, wrap_angle
from confflow.transforms.base import Transform

__all__ = [
    "RIGID_MAX_DEVIATION",
    "THERMAL_BOND_STD",
    "THERMAL_LOGIT_STD",
    "InternalNormalization",
    "structurally_rigid",
]

#: A torsion is rigid when all data lie within this many radians of its circular mean.
RIGID_MAX_DEVIATION = math.pi / 2

#: Floors of :meth:`InternalNormalization.from_molecule`: bond width (nm) and the width of
#: angles and rigid torsions in logit units, typical of thermal motion near 300 K.
THERMAL_BOND_STD = 0.003
THERMAL_LOGIT_STD = 0.065

_STATS_KEYS = {"mean", "std", "rigid"}


#: Feature groups, in the order the maps concatenate them.
_GROUPS = ("real", "interval", "rigid", "free")


def _logit_and_log_slope(u: Tensor) -> tuple[Tensor, Tensor]:
    """``logit(u)`` and ``log(u (1 - u))``, the log-slope of the sigmoid at that logit."""
    log_u, log_1mu = torch.log(u), torch.log1p(-u)
    return log_u - log_1mu, log_u + log_1mu


def _log_sigmoid_slope(y: Tensor) -> Tensor:
    """``log d sigmoid(y) / dy``, stable for large ``|y|``."""
    return F.logsigmoid(y) + F.logsigmoid(-y)


class InternalNormalization(Transform):
    """Standardisation of bonds, logit-standardisation of angles and rigid torsions.

    Args:
        domain: data-side layout ``[D]`` (e.g. ``InternalCoordinates.latent_domain``): REAL
            features are standardised, INTERVAL features logit-standardised, CIRCLE features
            cut and logit-standardised when ``rigid``, else rotated.
        mean: ``[D]`` means in each feature's latent units (see the module docstring).
        std: ``[D]`` positive standard deviations (ignored for free torsions).
        rigid: ``[D]`` booleans, True only for circular features to put on the real line
            (default: none).

    Raises:
        ValueError: shapes that differ from the domain, non-positive ``std``, or ``rigid``
            set on a non-circular feature.
    """

    def __init__(
        self, domain: Domain, mean: Tensor, std: Tensor, rigid: Tensor | None = None
    ) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        circle = domain.mask(Kind.CIRCLE)
        rigid = torch.zeros_like(circle) if rigid is None else torch.as_tensor(rigid).bool()
        if mean.numel() != domain.dim or std.numel() != domain.dim or rigid.numel() != domain.dim:
            raise ValueError(
                f"InternalNormalization: mean/std/rigid need {domain.dim} entries, "
                f"got {mean.numel()}/{std.numel()}/{rigid.numel()}"
            )
        if bool((rigid & ~circle).any()):
            raise ValueError("InternalNormalization: only circular features can be rigid")
        free = circle & ~rigid
        if bool((std[~free] <= 0).any()) or not bool(torch.isfinite(std).all()):
            raise ValueError("InternalNormalization: std must be finite and positive")
        self.features = domain.dim
        self.domain = domain
        kinds = tuple(Kind.CIRCLE if f else Kind.REAL for f in free.tolist())
        low = tuple(-math.pi if f else -math.inf for f in free.tolist())
        self.latent_domain = Domain(kinds, low, tuple(-v for v in low))
        lo, hi = domain.bounds()
        interval = domain.mask(Kind.INTERVAL)
        real = torch.tensor(domain.indices(Kind.REAL), dtype=torch.long)
        indices = (real, *(torch.nonzero(m).flatten() for m in (interval, rigid, free)))
        groups = dict(zip(_GROUPS, indices, strict=True))
        # index buffers follow the module's device, so the maps copy nothing per call
        for name, idx in groups.items():
            self.register_buffer(f"_idx_{name}", idx, persistent=False)
        self.register_buffer(
            "_unsort", torch.argsort(torch.cat(list(groups.values()))), persistent=False
        )
        self.register_buffer("mean", mean)
        self.register_buffer("std", torch.where(free, torch.ones_like(std), std))
        self.register_buffer("rigid", rigid)
        self.register_buffer("_low", lo[interval].clone(), persistent=False)
        self.register_buffer("_span", (hi - lo)[interval].clone(), persistent=False)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_data(
        cls,
        z: Tensor,
        domain: Domain,
        min_std: float | Tensor = 1e-3,
        rigid: Tensor | None = None,
    ) -> InternalNormalization:
        """Statistics from samples of the data side.

        Args:
            z: ``[M, D]`` internal coordinates (bonds nm, angles and torsions rad), ``M >= 2``.
            domain: their layout.
            min_std: floor on the standard deviations (latent units of each feature), so that
                near-rigid coordinates (bond lengths at minima) do not blow up; a number, or
                ``[D]`` per feature.
            rigid: ``[D]`` booleans marking the rigid torsions; default: the circular
                features whose samples all lie within :data:`RIGID_MAX_DEVIATION` of their
                circular mean.

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
        z = z.detach().to(torch.float64).cpu()
        circle = domain.mask(Kind.CIRCLE)
        centre = torch.atan2(torch.sin(z).mean(0), torch.cos(z).mean(0))
        if rigid is None:
            deviation = wrap_angle(z - centre).abs().amax(0)
            rigid = circle & (deviation < RIGID_MAX_DEVIATION)
        rigid = torch.as_tensor(rigid).bool()
        # latent units before scaling: the identity for bonds, logits for the rest
        probe = cls(domain, torch.where(circle, centre, 0.0), torch.ones(domain.dim), rigid)
        y, _ = probe.inverse(z)
        mean = torch.where(circle, centre, y.mean(0))
        std = torch.maximum(y.std(0), torch.as_tensor(min_std, dtype=torch.float64))
        return cls(domain, mean, std, rigid)

    @classmethod
    def from_molecule(
        cls,
        molecule: Molecule,
        transform: InternalCoordinates,
        n_conformers: int = 32,
        seed: int = 0,
    ) -> InternalNormalization:
        """Statistics from ETKDGv3 conformers of ``molecule`` minimised with MMFF94.

        Minima say little about which torsions rotate, so the rigid torsions come from the
        structure: those the Z-matrix fixes by a sibling atom (impropers) and those about a
        ring bond or a bond of order above one. Minima also hardly spread, so the standard
        deviations are floored at typical thermal widths near 300 K
        (:data:`THERMAL_BOND_STD` nm for bonds, :data:`THERMAL_LOGIT_STD` logit units, about
        0.05 rad of angle and 0.1 rad of torsion, for the rest).

        Args:
            molecule: the molecule whose atom order ``transform`` follows.
            transform: the internal-coordinate map.
            n_conformers: number of minima to sample (``>= 2``).
            seed: ETKDG seed.
        """
        x = molecule.embed(n_conformers, seed=seed, mmff=True)
        z, _ = transform.inverse(x)
        domain = transform.latent_domain
        rigid = structurally_rigid(molecule, transform)
        real = domain.mask(Kind.REAL)
        min_std = torch.where(real, THERMAL_BOND_STD, THERMAL_LOGIT_STD).double()
        return cls.from_data(z, domain, min_std=min_std, rigid=rigid)

    def stats(self) -> dict[str, list]:
        """Plain-data statistics (``mean``, ``std``, ``rigid``) for configs and checkpoints."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "rigid": self.rigid.tolist(),
        }

    @classmethod
    def from_stats(cls, domain: Domain, stats: dict[str, list]) -> InternalNormalization:
        """Inverse of :meth:`stats`.

        Raises:
            ValueError: statistics without the keys of :meth:`stats` (e.g. saved by a
                confflow that kept angles uniform), or of the wrong length.
        """
        if set(stats) != _STATS_KEYS:
            raise ValueError(
                f"normalization: expected keys {sorted(_STATS_KEYS)}, got {sorted(stats)} "
                "(saved by an older confflow; train the model again)"
            )
        return cls(
            domain,
            torch.tensor(stats["mean"], dtype=torch.float64),
            torch.tensor(stats["std"], dtype=torch.float64),
            torch.tensor(stats["rigid"], dtype=torch.bool),
        )

    # ------------------------------------------------------------------- maps
    def _prepare(
        self, v: Tensor
    ) -> tuple[dict[str, Tensor], list[tuple[Tensor, Tensor]], Tensor, Tensor]:
        """Columns of ``v`` by group, ``(mean, std)`` per group, interval lows and spans."""
        parts, stats = {}, []
        for name in _GROUPS:
            idx = getattr(self, f"_idx_{name}")
            parts[name] = v[:, idx]
            stats.append((self.mean[idx].to(v.dtype), self.std[idx].to(v.dtype)))
        return parts, stats, self._low.to(v.dtype), self._span.to(v.dtype)

    def _merge(self, parts: list[Tensor]) -> Tensor:
        return torch.cat(parts, dim=1)[:, self._unsort]

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        p, stats, low, span = self._prepare(x)
        (m_real, s_real), (m_int, s_int), (m_rig, s_rig), (m_free, _) = stats
        y_int = p["interval"] * s_int + m_int
        y_rig = p["rigid"] * s_rig
        out = [
            p["real"] * s_real + m_real,
            low + span * torch.sigmoid(y_int),
            wrap_angle(m_rig + 2 * math.pi * torch.sigmoid(y_rig) - math.pi),
            wrap_angle(p["free"] + m_free),
        ]
        ladj = (
            s_real.log().sum()
            + (s_int.log() + span.log() + _log_sigmoid_slope(y_int)).sum(1)
            + (s_rig.log() + math.log(2 * math.pi) + _log_sigmoid_slope(y_rig)).sum(1)
        )
        return self._merge(out), ladj.expand(x.shape[0])

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        p, stats, low, span = self._prepare(y)
        (m_real, s_real), (m_int, s_int), (m_rig, s_rig), (m_free, _) = stats
        logit_int, log_slope_int = _logit_and_log_slope((p["interval"] - low) / span)
        u_rig = (wrap_angle(p["rigid"] - m_rig) + math.pi) / (2 * math.pi)
        logit_rig, log_slope_rig = _logit_and_log_slope(u_rig)
        out = [
            (p["real"] - m_real) / s_real,
            (logit_int - m_int) / s_int,
            logit_rig / s_rig,
            wrap_angle(p["free"] - m_free),
        ]
        ladj = -(
            s_real.log().sum()
            + (s_int.log() + span.log() + log_slope_int).sum(1)
            + (s_rig.log() + math.log(2 * math.pi) + log_slope_rig).sum(1)
        )
        return self._merge(out), ladj.expand(y.shape[0])


def structurally_rigid(molecule: Molecule, transform: InternalCoordinates) -> Tensor:
    """The torsions that the structure holds near one value, as a ``[3N-6]`` mask.

    True for the torsions of rows the Z-matrix fixes by a sibling atom (impropers: branches,
    stereocentres) and for torsions about a ring bond or a bond of order above one; False
    for every bond and angle and for the torsions about other single bonds (rotors).

    Args:
        molecule: the molecule whose atom order ``transform`` follows.
        transform: the internal-coordinate map.
    """
    rows = transform.zmatrix.rows
    refs = {r[0]: (r[1], r[2]) for r in rows}
    mol = molecule.rdkit_mol
    torsions = []
    for _, j, k, ref in rows[3:]:
        bond = mol.GetBondBetweenAtoms(j, k)
        stiff_bond = bond is not None and (bond.IsInRing() or bond.GetBondTypeAsDouble() > 1)
        torsions.append(refs.get(ref) == (j, k) or stiff_bond)
    domain = transform.latent_domain
    rigid = torch.zeros(domain.dim, dtype=torch.bool)
    rigid[list(domain.circular_indices)] = torch.tensor(torsions, dtype=torch.bool)
    return rigid
