"""MMFF94 / MMFF94s as an ``openmm.System`` built from custom forces.

:func:`mmff_openmm_system` turns an RDKit molecule into a System whose energy equals RDKit's
MMFF force field (and :class:`~confflow.energies.mmff.MMFFEnergy`), so OpenMM can run molecular
dynamics on any MMFF-typable molecule, on any platform. The parameters are the same
:class:`~confflow.energies.mmff_params.MMFFParameters`; every expression converts OpenMM's
units (nm, rad, kJ/mol) to MMFF's (Angstrom, degrees, kcal/mol) inside the force itself, and
the forms and constants are those of :mod:`confflow.energies.mmff_forms`.

Each term is its own force in its own force group (:data:`MMFF_FORCE_GROUPS`), so term energies
can be read separately with ``context.getState(getEnergy=True, groups={group})``. The System has
no constraints, no periodic box and no cutoff. Non-bonded interactions are an explicit pair
list (the pairs RDKit's MMFF includes), which suits molecules of up to a few hundred atoms.
"""

from __future__ import annotations

import math
from typing import Unpack

import openmm
from rdkit import Chem

from confflow.energies.mmff_forms import C1, C2, CB, COULOMB, COULOMB_BUFFER, DEG, KCAL_TO_KJ
from confflow.energies.mmff_params import MMFFOptions, MMFFParameters, mmff_parameters

__all__ = ["MMFF_FORCE_GROUPS", "mmff_openmm_system", "mmff_parameters_to_system"]

#: Force group of each MMFF term in the System.
MMFF_FORCE_GROUPS = {
    "bond": 0,
    "angle": 1,
    "stretch_bend": 2,
    "oop": 3,
    "torsion": 4,
    "nonbonded": 5,
}

_COMMON = f"kcal={KCAL_TO_KJ!r}; c1={C1!r}; c2={C2!r}; deg={DEG!r}; cb={CB!r}"


def mmff_openmm_system(mol: Chem.Mol, **options: Unpack[MMFFOptions]) -> openmm.System:
    """MMFF94 / MMFF94s of ``mol`` as an OpenMM System (nm, kJ/mol, daltons).

    Args:
        mol: RDKit molecule with explicit hydrogens; atom masses come from RDKit.
        **options: :class:`~confflow.energies.mmff_params.MMFFOptions` (variant, dielectric,
            which non-bonded pairs), as :func:`~confflow.energies.mmff_params.mmff_parameters`
            takes them.

    Returns:
        The ``openmm.System``; positions for it are ``[N, 3]`` in nm.

    Raises:
        MMFFTypingError: atoms MMFF cannot type (named) or missing parameters.
        ValueError: bad options or a molecule with implicit hydrogens.
    """
    params = mmff_parameters(mol, **options)
    masses = [atom.GetMass() for atom in mol.GetAtoms()]
    return mmff_parameters_to_system(params, masses)


def mmff_parameters_to_system(params: MMFFParameters, masses: list[float]) -> openmm.System:
    """Builds the OpenMM System of already extracted MMFF parameters.

    Args:
        params: the molecule's :class:`~confflow.energies.mmff_params.MMFFParameters`.
        masses: ``N`` atom masses in daltons.

    Returns:
        The ``openmm.System``.

    Raises:
        ValueError: ``masses`` does not have one positive entry per atom.
    """
    if len(masses) != params.n_atoms or any(not m > 0 for m in masses):
        raise ValueError(
            f"masses: expected {params.n_atoms} positive masses (daltons), got {list(masses)}"
        )
    system = openmm.System()
    for mass in masses:
        system.addParticle(mass)
    forces = {
        "bond": _bond_force(params),
        "angle": _angle_force(params),
        "stretch_bend": _stretch_bend_force(params),
        "oop": _oop_force(params),
        "torsion": _torsion_force(params),
        "nonbonded": _nonbonded_force(params),
    }
    for name, force in forces.items():
        force.setForceGroup(MMFF_FORCE_GROUPS[name])
        force.setName(f"MMFF {name}")
        system.addForce(force)
    return system


def _bond_force(p: MMFFParameters) -> openmm.CustomBondForce:
    force = openmm.CustomBondForce(
        "kcal * 0.5 * c1 * kb * dr^2 * (1 - 2 * dr + 7 / 3 * dr^2); dr = 10 * r - r0; " + _COMMON
    )
    force.addPerBondParameter("kb")
    force.addPerBondParameter("r0")
    for (i, j), kb, r0 in zip(p.bond_idx.tolist(), p.bond_kb, p.bond_r0, strict=True):
        force.addBond(i, j, [float(kb), float(r0)])
    return force


def _angle_force(p: MMFFParameters) -> openmm.CustomAngleForce:
    force = openmm.CustomAngleForce(
        "kcal * select(linear, c1 * ka * (1 + cos(theta)),"
        " 0.5 * c2 * ka * dth^2 * (1 + cb * dth));"
        " dth = theta * deg - theta0; " + _COMMON
    )
    for name in ("ka", "theta0", "linear"):
        force.addPerAngleParameter(name)
    rows = zip(p.angle_idx.tolist(), p.angle_ka, p.angle_theta0, p.angle_linear, strict=True)
    for (i, j, k), ka, theta0, linear in rows:
        force.addAngle(i, j, k, [float(ka), float(theta0), float(linear)])
    return force


def _stretch_bend_force(p: MMFFParameters) -> openmm.CustomCompoundBondForce:
    force = openmm.CustomCompoundBondForce(
        3,
        "kcal * c1 / deg * (kijk * (10 * distance(p1, p2) - r0ij)"
        " + kkji * (10 * distance(p3, p2) - r0kj)) * (angle(p1, p2, p3) * deg - theta0); "
        + _COMMON,
    )
    for name in ("kijk", "kkji", "r0ij", "r0kj", "theta0"):
        force.addPerBondParameter(name)
    rows = zip(
        p.stbn_idx.tolist(),
        p.stbn_kijk,
        p.stbn_kkji,
        p.stbn_r0ij,
        p.stbn_r0kj,
        p.stbn_theta0,
        strict=True,
    )
    for atoms, *values in rows:
        force.addBond(atoms, [float(v) for v in values])
    return force


def _oop_force(p: MMFFParameters) -> openmm.CustomCompoundBondForce:
    # Wilson angle of l out of the plane i-j-k: sin(chi) = sin(angle l-j-i) sin(dihedral l-j-i-k)
    force = openmm.CustomCompoundBondForce(
        4,
        "kcal * 0.5 * c2 * koop * chi^2;"
        " chi = deg * asin(sin(angle(p4, p2, p1)) * sin(dihedral(p4, p2, p1, p3))); " + _COMMON,
    )
    force.addPerBondParameter("koop")
    for atoms, koop in zip(p.oop_idx.tolist(), p.oop_koop, strict=True):
        force.addBond(atoms, [float(koop)])
    return force


def _torsion_force(p: MMFFParameters) -> openmm.PeriodicTorsionForce:
    # 0.5 V1 (1 + cos phi) + 0.5 V2 (1 - cos 2 phi) + 0.5 V3 (1 + cos 3 phi)
    force = openmm.PeriodicTorsionForce()
    phases = (0.0, math.pi, 0.0)
    for (i, j, k, m), v in zip(p.torsion_idx.tolist(), p.torsion_v, strict=True):
        for n, (vn, phase) in enumerate(zip(v, phases, strict=True), start=1):
            if vn != 0.0:
                force.addTorsion(i, j, k, m, n, phase, 0.5 * KCAL_TO_KJ * float(vn))
    return force


def _nonbonded_force(p: MMFFParameters) -> openmm.CustomBondForce:
    power = "2" if p.dielectric_model == "distance" else "1"
    force = openmm.CustomBondForce(
        "kcal * (eps * (1.07 * rs / (ra + 0.07 * rs))^7 * (1.12 * rs^7 / (ra^7 + 0.12 * rs^7) - 2)"
        f" + {COULOMB!r} * qq / (ra + {COULOMB_BUFFER!r})^{power}); ra = 10 * r; " + _COMMON
    )
    for name in ("rs", "eps", "qq"):
        force.addPerBondParameter(name)
    rows = zip(p.pair_idx.tolist(), p.pair_rstar, p.pair_eps, p.pair_qq, strict=True)
    for (i, j), rs, eps, qq in rows:
        force.addBond(i, j, [float(rs), float(eps), float(qq)])
    return force
