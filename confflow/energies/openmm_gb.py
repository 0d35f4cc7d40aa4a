"""OBC generalized-Born implicit solvent in torch, read from OpenMM forces.

Two OpenMM forces describe the same energy family (Onufriev, Bashford & Case 2004, with the
HCT pairwise descreening integral and the ACE non-polar term):

* :class:`openmm.GBSAOBCForce` (OBC2: ``alpha, beta, gamma = 1, 0.8, 4.85``), and
* the :class:`openmm.CustomGBForce` that OpenMM's ``app`` layer builds for ``OBC1``/``OBC2``
  (e.g. for Amber ``prmtop`` files with ``implicitSolvent=OBC1``, as in openmmtools'
  ``AlanineDipeptideImplicit``).

With offset radius ``or_i = radius_i - offset`` and scaled radius ``sr_j = scale_j or_j`` (nm),
the descreening integral of atom ``i`` is ``I_i = sum_{j != i} h(r_ij, or_i, sr_j)`` where, for
``or_i < r + sr_j``, with ``U = r + sr_j`` and ``L = max(or_i, |r - sr_j|)``::

    h = 1/2 [1/L - 1/U + (r - sr_j^2/r)(1/U^2 - 1/L^2)/4 + log(L/U)/(2 r)]

(plus ``1/or_i - 1/L`` when atom ``i`` lies inside the scaled sphere of ``j``, a correction
that :class:`openmm.GBSAOBCForce` applies and the custom expression does not). Then
``psi = I or``, the Born radius ``B = 1/(1/or - tanh(alpha psi - beta psi^2 + gamma psi^3)/radius)``
and the energy in kJ/mol is::

    E = -k/2 (1/eps_solute - 1/eps_solvent) sum_{i,j} q_i q_j / f_ij
        + s sum_i (radius_i + probe)^2 (radius_i / B_i)^6,
    f_ij = sqrt(r_ij^2 + B_i B_j exp(-r_ij^2 / (4 B_i B_j)))

(the double sum runs over all ordered pairs and ``i = j``; ``k`` is the Coulomb constant in
kJ nm/(mol e^2), ``s`` the surface-area factor ``4 pi gamma_SA`` in kJ/(mol nm^2)).

A :class:`openmm.CustomGBForce` is accepted only when its computed values and energy terms
are exactly this family (numbers may differ); anything else raises
:class:`UnsupportedCustomGBError` naming the offending expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor, nn

from confflow.errors import InputError

__all__ = [
    "OBCParameters",
    "OBCTerm",
    "UnsupportedCustomGBError",
    "obc_from_custom_gb",
    "obc_from_gbsaobc",
]

#: Coulomb constant 1/(4 pi eps0) that OpenMM's platforms use, in kJ nm/(mol e^2).
ONE_4PI_EPS0 = 138.93545764438198


class UnsupportedCustomGBError(InputError):
    """A :class:`openmm.CustomGBForce` that is not OpenMM's OBC expression family."""


@dataclass(frozen=True)
class OBCParameters:
    """Parameters of one OBC generalized-Born model.

    Attributes:
        charge: ``[N]`` partial charges in e.
        offset_radius: ``[N]`` radii minus the dielectric offset, in nm.
        scaled_radius: ``[N]`` descreening radii ``scale * offset_radius``, in nm.
        offset: dielectric offset in nm.
        alpha, beta, gamma: coefficients of ``tanh(alpha psi - beta psi^2 + gamma psi^3)``.
        solute_dielectric, solvent_dielectric: relative permittivities.
        coulomb_constant: ``1/(4 pi eps0)`` in kJ nm/(mol e^2).
        surface_factor: ACE prefactor ``4 pi gamma_SA`` in kJ/(mol nm^2); 0 disables it.
        probe_radius: solvent probe radius in nm.
        engulfed_correction: add OpenMM's reference correction for atoms buried in a
            neighbour's scaled sphere (``GBSAOBCForce`` does, the custom expression does not).
    """

    charge: np.ndarray
    offset_radius: np.ndarray
    scaled_radius: np.ndarray
    offset: float
    alpha: float
    beta: float
    gamma: float
    solute_dielectric: float
    solvent_dielectric: float
    coulomb_constant: float
    surface_factor: float
    probe_radius: float
    engulfed_correction: bool


def obc_from_gbsaobc(force: openmm.GBSAOBCForce) -> OBCParameters:
    """Reads an :class:`openmm.GBSAOBCForce` (OBC2 with OpenMM's fixed constants).

    Raises:
        ValueError: a cutoff is used (only ``NoCutoff`` is supported).
    """
    if force.getNonbondedMethod() != openmm.GBSAOBCForce.NoCutoff:
        raise ValueError("GBSAOBCForce: only the NoCutoff nonbonded method is supported")
    n = force.getNumParticles()
    charge, radius, scale = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        q, r, s = force.getParticleParameters(i)
        charge[i] = q.value_in_unit(unit.elementary_charge)
        radius[i] = r.value_in_unit(unit.nanometer)
        scale[i] = s
    offset = 0.009
    sa = force.getSurfaceAreaEnergy().value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2)
    return OBCParameters(
        charge=charge,
        offset_radius=radius - offset,
        scaled_radius=scale * (radius - offset),
        offset=offset,
        alpha=1.0,
        beta=0.8,
        gamma=4.85,
        solute_dielectric=force.getSoluteDielectric(),
        solvent_dielectric=force.getSolventDielectric(),
        coulomb_constant=ONE_4PI_EPS0,
        surface_factor=4 * np.pi * sa,
        probe_radius=0.14,
        engulfed_correction=True,
    )


_UNSIGNED = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM = r"([-+]?" + _UNSIGNED + ")"
_I_EXPR = (
    "select(step(r+sr2-or1),0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r),0)"
    ";U=r+sr2;L=max(or1,D);D=abs(r-sr2)"
)
_B_MAIN = re.compile(r"1/\(1/or-tanh\((?P<poly>[^()]*)\)/radius\)")
_POLY_TERM = re.compile(r"([-+]?)(?:(" + _UNSIGNED + r")\*)?psi(?:\^([123]))?")
_SELF_MAIN = re.compile(
    r"-0\.5\*" + _NUM + r"\*\(1/soluteDielectric-1/solventDielectric\)\*charge\^2/B"
)
_PAIR_MAIN = re.compile(
    r"-" + _NUM + r"\*\(1/soluteDielectric-1/solventDielectric\)\*charge1\*charge2/f"
)
_ACE_MAIN = re.compile(_NUM + r"\*\(radius\+" + _NUM + r"\)\^2\*\(radius/B\)\^6")


def _split(expression: str) -> tuple[str, dict[str, str]]:
    """Main expression and its ``name=value`` definitions, whitespace removed."""
    parts = [p for p in re.sub(r"\s+", "", expression).split(";") if p]
    definitions = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        definitions[name] = value
    return parts[0], definitions


def _number(definitions: dict[str, str], name: str, expression: str) -> float:
    try:
        return float(definitions[name])
    except (KeyError, ValueError) as err:
        raise UnsupportedCustomGBError(
            f"CustomGBForce: expression {expression!r} lacks a numeric {name!r}"
        ) from err


def _tanh_coefficients(poly: str, expression: str) -> tuple[float, float, float]:
    coefficients = {1: 0.0, 2: 0.0, 3: 0.0}
    position = 0
    for match in _POLY_TERM.finditer(poly):
        if match.start() != position:
            break
        sign = -1.0 if match.group(1) == "-" else 1.0
        value = float(match.group(2)) if match.group(2) else 1.0
        coefficients[int(match.group(3) or 1)] += sign * value
        position = match.end()
    if position != len(poly) or not poly:
        raise UnsupportedCustomGBError(
            f"CustomGBForce: Born radius expression {expression!r} is not "
            "1/(1/or - tanh(polynomial in psi up to psi^3)/radius)"
        )
    return coefficients[1], -coefficients[2], coefficients[3]


def obc_from_custom_gb(force: openmm.CustomGBForce) -> OBCParameters:
    """Reads a :class:`openmm.CustomGBForce` of OpenMM's OBC1/OBC2 expression family.

    Expected layout: per-particle parameters ``charge, or, sr``; computed values ``I``
    (all pairs) and ``B`` (single particle); energy terms: the polar self term and the polar
    pair term (all pairs), optionally the ACE surface term; no global parameters, tabulated
    functions or cutoff; ``kappa = 0`` (no salt screening).

    Raises:
        UnsupportedCustomGBError: naming the first expression or setting that differs.
    """
    err = UnsupportedCustomGBError
    if force.getNonbondedMethod() != openmm.CustomGBForce.NoCutoff:
        raise err("CustomGBForce: only the NoCutoff nonbonded method is supported")
    if force.getNumGlobalParameters() or force.getNumTabulatedFunctions():
        raise err("CustomGBForce: global parameters or tabulated functions are not supported")
    names = [
        force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())
    ]
    if names != ["charge", "or", "sr"]:
        raise err(f"CustomGBForce: per-particle parameters {names} are not [charge, or, sr]")
    pair_all = openmm.CustomGBForce.ParticlePairNoExclusions
    single = openmm.CustomGBForce.SingleParticle
    values = [force.getComputedValueParameters(i) for i in range(force.getNumComputedValues())]
    if len(values) != 2 or values[0][0] != "I" or values[1][0] != "B":
        raise err(f"CustomGBForce: computed values {[v[0] for v in values]} are not [I, B]")
    if re.sub(r"\s+", "", values[0][1]) != _I_EXPR or values[0][2] != pair_all:
        raise err(f"CustomGBForce: computed value I = {values[0][1]!r} is not the OBC integral")
    b_main, b_defs = _split(values[1][1])
    match = _B_MAIN.fullmatch(b_main)
    if match is None or values[1][2] != single:
        raise err(f"CustomGBForce: computed value B = {values[1][1]!r} is not an OBC Born radius")
    if b_defs.get("psi") != "I*or" or b_defs.get("radius") != "or+offset":
        raise err(f"CustomGBForce: computed value B = {values[1][1]!r} defines psi or radius oddly")
    offset = _number(b_defs, "offset", values[1][1])
    alpha, beta, gamma = _tanh_coefficients(match.group("poly"), values[1][1])

    found: dict[str, tuple[float, ...]] = {}
    dielectrics: set[tuple[float, float]] = set()
    for i in range(force.getNumEnergyTerms()):
        expression, kind = force.getEnergyTermParameters(i)
        main, defs = _split(expression)
        self_match, pair_match = _SELF_MAIN.fullmatch(main), _PAIR_MAIN.fullmatch(main)
        ace_match = _ACE_MAIN.fullmatch(main)
        if self_match and kind == single and "self" not in found:
            found["self"] = (float(self_match.group(1)),)
        elif pair_match and kind == pair_all and "pair" not in found:
            if defs.get("f") != "sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)))":
                raise err(f"CustomGBForce: energy term {expression!r} has an unknown f")
            found["pair"] = (float(pair_match.group(1)),)
        elif ace_match and kind == single and "ace" not in found:
            if defs.get("radius") != "or+offset" or _number(defs, "offset", expression) != offset:
                raise err(f"CustomGBForce: energy term {expression!r} defines radius oddly")
            found["ace"] = (float(ace_match.group(1)), float(ace_match.group(2)))
            continue
        else:
            raise err(f"CustomGBForce: energy term {expression!r} is not an OBC term")
        if "kappa" in defs and _number(defs, "kappa", expression) != 0.0:
            raise err(f"CustomGBForce: energy term {expression!r} uses salt screening (kappa)")
        dielectrics.add(
            (
                _number(defs, "soluteDielectric", expression),
                _number(defs, "solventDielectric", expression),
            )
        )
    if "self" not in found or "pair" not in found:
        raise err("CustomGBForce: the polar self and pair energy terms are both required")
    if found["self"][0] != found["pair"][0] or len(dielectrics) != 1:
        raise err("CustomGBForce: self and pair terms use different constants or dielectrics")
    (solute, solvent) = dielectrics.pop()
    surface, probe = found.get("ace", (0.0, 0.0))

    n = force.getNumParticles()
    params = np.array([force.getParticleParameters(i) for i in range(n)], dtype=np.float64)
    return OBCParameters(
        charge=params[:, 0],
        offset_radius=params[:, 1],
        scaled_radius=params[:, 2],
        offset=offset,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        solute_dielectric=solute,
        solvent_dielectric=solvent,
        coulomb_constant=found["self"][0],
        surface_factor=surface,
        probe_radius=probe,
        engulfed_correction=False,
    )


class OBCTerm(nn.Module):
    """OBC generalized-Born energy (kJ/mol) from ``[N, N, B]`` pair distances (nm), batch last."""

    def __init__(self, params: OBCParameters) -> None:
        super().__init__()
        self.p = params

        def buf(a) -> Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64))

        n = len(params.charge)
        self.register_buffer("offset_radius", buf(params.offset_radius)[:, None])
        self.register_buffer("scaled_radius", buf(params.scaled_radius)[None, :, None])
        self.register_buffer("radius", buf(params.offset_radius + params.offset)[:, None])
        qq = np.outer(params.charge, params.charge)
        pre = -0.5 * params.coulomb_constant
        pre *= 1 / params.solute_dielectric - 1 / params.solvent_dielectric
        self.register_buffer("polar_qq", buf(pre * qq)[:, :, None])
        radius = params.offset_radius + params.offset
        ace = params.surface_factor * (radius + params.probe_radius) ** 2 * radius**6
        self.register_buffer("ace", buf(ace)[:, None])
        self.register_buffer("off_diagonal", ~torch.eye(n, dtype=torch.bool)[:, :, None])

    def forward(self, r2: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """Energy and its derivative with respect to each squared distance.

        Args:
            r2: ``[N, N, B]`` squared distances in nm^2 (zero on the diagonal), batch last.
            r: ``[N, N, B]`` distances in nm, with any positive value on the diagonal.

        Returns:
            ``[B]`` OBC energies (polar plus ACE non-polar) in kJ/mol, and ``[N, N, B]``
            partial derivatives ``dE/d(r_ij^2)`` with every ordered entry taken as independent.
        """
        p = self.p
        dt = r.dtype
        offset_radius = self.offset_radius.to(dt)
        or_i, sr_j = offset_radius[:, None, :], self.scaled_radius.to(dt)
        inv_r = 1.0 / r
        upper = r + sr_j
        distance = r - sr_j
        lower = torch.maximum(or_i, distance.abs())
        inv_u, inv_l = 1.0 / upper, 1.0 / lower
        diff_sq = inv_u * inv_u - inv_l * inv_l
        log_ratio = torch.log(lower * inv_u)
        h = 0.5 * (
            inv_l - inv_u + 0.25 * (r - sr_j * sr_j * inv_r) * diff_sq + 0.5 * log_ratio * inv_r
        )
        # dh/dr at fixed L, U; dh/dU = 0 and dh/dL = 0 unless atom i is engulfed (L = sr - r).
        dh_dr = 0.5 * (
            0.25 * (1 + sr_j * sr_j * inv_r * inv_r) * diff_sq - 0.5 * log_ratio * inv_r * inv_r
        )
        engulfed = or_i < -distance
        zero = torch.zeros_like(h)
        if p.engulfed_correction:
            h = h + torch.where(engulfed, 1.0 / or_i - inv_l, zero)
        else:
            dh_dr = dh_dr + torch.where(engulfed, inv_l * inv_l, zero)
        active = (or_i < upper) & self.off_diagonal
        h = torch.where(active, h, zero)
        dh_dr = torch.where(active, dh_dr, zero)

        psi = h.sum(1) * offset_radius
        poly = psi * (p.alpha + psi * (-p.beta + psi * p.gamma))
        dpoly = p.alpha + psi * (-2 * p.beta + psi * 3 * p.gamma)
        tanh = torch.tanh(poly)
        inv_radius = 1.0 / self.radius.to(dt)
        born = 1.0 / (1.0 / offset_radius - tanh * inv_radius)
        dborn_dpsi = born * born * (1 - tanh * tanh) * dpoly * inv_radius

        bb = born[:, None, :] * born[None, :, :]
        expo = torch.exp(-0.25 * r2 / bb)
        inv_f2 = 1.0 / (r2 + bb * expo)
        pair = self.polar_qq.to(dt) * torch.sqrt(inv_f2)
        energy = pair.sum((0, 1))
        half_pair_f2 = -0.5 * pair * inv_f2
        de_dr2 = half_pair_f2 * (1 - 0.25 * expo)
        de_dbb = half_pair_f2 * expo * (1 + 0.25 * r2 / bb)
        de_dborn = 2 * (de_dbb * born[None, :, :]).sum(1)
        if p.surface_factor != 0.0:
            ace = self.ace.to(dt) / born**6
            energy = energy + ace.sum(0)
            de_dborn = de_dborn - 6 * ace / born
        de_dh = (de_dborn * dborn_dpsi * offset_radius)[:, None, :]
        de_dr2 = de_dr2 + de_dh * dh_dr * 0.5 * inv_r
        return energy, de_dr2
