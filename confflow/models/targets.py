"""Target energies for Boltzmann generators, built from a :class:`TargetConfig`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from confflow.chem.molecule import Molecule
from confflow.energies.analytic import DoubleWell
from confflow.energies.base import Energy
from confflow.models.config import TargetConfig

__all__ = ["Target", "build_target"]


@dataclass
class Target:
    """A built target.

    Attributes:
        energy: ``E(x)`` in kJ/mol; over ``[B, N, 3]`` nm for molecules, ``[B, D]`` otherwise.
        molecule: the molecule (``None`` for analytic targets).
        fingerprint: hash of the system's identity (atoms, bonds, energy parameters), used to
            refuse checkpoints of another system.
        description: human-readable name.
    """

    energy: Energy
    molecule: Molecule | None
    fingerprint: str
    description: str


def _hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_target(config: TargetConfig, temperature: float) -> Target:
    """Builds the energy (and molecule) a :class:`TargetConfig` describes.

    Args:
        config: the target.
        temperature: K; analytic targets define their reduced energy at this temperature.

    Returns:
        The :class:`Target`.
    """
    if config.kind == "double-well":
        energy = DoubleWell(temperature=temperature, **config.params)
        ident = {"kind": config.kind, "dim": energy.dim, "a": energy.a, "b": energy.b}
        ident["c"] = energy.c
        return Target(energy, None, _hash(ident), f"double well in {energy.dim} dimensions")
    if config.kind == "smiles":
        from confflow.energies.mmff import MMFFEnergy

        largest = bool(config.params.get("largest_fragment", False))
        molecule = Molecule.from_smiles(
            config.params["smiles"], largest_fragment=largest, stereo="first"
        )
        variant = config.params.get("variant", "MMFF94")
        energy = MMFFEnergy(molecule.rdkit_mol, variant=variant)
        description = f"{molecule.smiles} with {variant}"
        if "variant" in config.params:  # the identity ``confflow generate`` has always used
            ident = {
                "elements": list(molecule.elements),
                "bonds": [list(b) for b in molecule.bonds],
                "smiles": molecule.smiles,
                "energy": variant,
            }
            return Target(energy, molecule, _hash(ident), description)
    else:
        from confflow.energies.openmm_torch import OpenMMSystemEnergy
        from confflow.energies.systems import alanine_dipeptide

        ref = alanine_dipeptide(config.kind)
        molecule = Molecule.from_openmm(ref.topology, ref.positions)
        energy = OpenMMSystemEnergy(ref.system)
        description = f"alanine dipeptide ({config.kind})"
    ident = {
        "kind": config.kind,
        "params": config.params,
        "elements": list(molecule.elements),
        "bonds": [list(b) for b in molecule.bonds],
    }
    return Target(energy, molecule, _hash(ident), description)
