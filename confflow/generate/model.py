"""Stage 3: the Boltzmann generator of the molecule — build, save, load.

The model is chosen by ``GenerateConfig.model``:

* ``"cartesian"``: the standard confflow generator over all ``3N-6`` normalised
  internal coordinates (:mod:`confflow.models.builder`); the target is the full MMFF
  Boltzmann distribution, hard to match in minutes of CPU training. The other families of the
  registry model the same target by name (``--model maf``, ``iaf``, ``cnf`` over internal
  coordinates; ``egnn-cnf``, ``e3nn-cnf`` over positions, their base's scale from the MD
  frames), trained alike.
* ``"torsional"`` (what the default ``"auto"`` picks whenever a bond rotates): a flow over
  the free torsions (one per rotatable bond, hydrogen rotors included)
  (:class:`~confflow.coordinates.TorsionalEmbedding`). Its target is the MMFF energy at each
  torsion set with the local structure (bonds, angles, rigid torsions) of the lowest-energy
  seed relaxed by ``relax_steps`` preconditioned gradient steps
  (:class:`~confflow.energies.TorsionalEnergy`, :class:`~confflow.energies.LocalRelaxation`):
  the frozen structure of torsional Boltzmann generators (``relax_steps=0``) charges conformers
  far from the reference several kT too much, because bond angles cannot open as the torsions
  turn, and its torsion marginals come out too narrow. An elementwise circular spline, then
  circular spline couplings.

* ``"states"`` (what ``"auto"`` and ``"torsional"`` become when the molecule has several
  conformational states: ring puckers, nitrogen invertomers, amide/ester isomers; see
  :mod:`confflow.generate.states`): a :class:`~confflow.models.StateMixture` of torsional
  models, one per state, each with that state's reference structure.

All are built by the one builder of :mod:`confflow.models` from *this* run's SMILES,
largest-fragment choice and MMFF variant.

Training within the budget is :mod:`confflow.generate.training`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.chem.states import StateElements
from confflow.coordinates import (
    InternalCoordinates,
    InternalNormalization,
    ZMatrix,
    rotatable_bonds,
    structurally_rigid,
)
from confflow.energies import TorsionalEnergy
from confflow.generate.config import FAMILY_MODELS, GenerateConfig, GenerateError
from confflow.generate.states import check_rings, find_states
from confflow.models import (
    BGConfig,
    BoltzmannGenerator,
    FlowConfig,
    StateMixture,
    TargetConfig,
    build_boltzmann_generator,
    local_entropy,
)
from confflow.training import CheckpointError, read_checkpoint
from confflow.training import write_checkpoint as _write

__all__ = [
    "FLOW",
    "build_model",
    "load_model",
    "model_kind",
    "model_layout",
    "resolve_model",
    "save_model",
    "training_data",
]

#: Flow architecture of ``generate`` (small enough for minutes of CPU training).
FLOW = FlowConfig(layers=8, bins=8, hidden=(128, 128), circular_components=0)


#: A generate model: one generator, or a mixture over conformational states.
Model = BoltzmannGenerator | StateMixture


def model_kind(model: Model) -> str:
    """``"states"``, ``"torsional"`` or ``"cartesian"``: the coordinates ``model`` samples."""
    if isinstance(model, StateMixture):
        return "states"
    return "torsional" if isinstance(model.energy, TorsionalEnergy) else "cartesian"


def _fingerprint(molecule: Molecule, variant: str) -> str:
    ident = {
        "elements": list(molecule.elements),
        "bonds": [list(b) for b in molecule.bonds],
        "smiles": molecule.smiles,
        "energy": variant,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def resolve_model(molecule: Molecule, config: GenerateConfig) -> str:
    """``config.model`` with ``"auto"`` resolved: torsional if any bond rotates, else Cartesian.

    A family of :data:`~confflow.generate.config.FAMILY_MODELS` is returned as it is.

    Raises:
        GenerateError: ``"torsional"`` for a molecule without rotatable bonds, or a torsional
            model for a macrocycle.
    """
    rotates = bool(rotatable_bonds(molecule))
    if config.model == "torsional" and not rotates:
        raise GenerateError(
            f"{molecule.source}: no rotatable bonds for --model torsional (use cartesian)"
        )
    model = config.model if config.model != "auto" else ("torsional" if rotates else "cartesian")
    if model == "torsional":
        check_rings(molecule)
    return model


def model_layout(molecule: Molecule, config: GenerateConfig, seed_x: Tensor, data: Tensor) -> dict:
    """What fixes the model's coordinates, saved with it (plain lists).

    Args:
        molecule: the molecule.
        config: run settings (``model``, ``states``, see :func:`resolve_model`).
        seed_x: ``[C, N, 3]`` nm MMFF-minimised seeds, lowest energy first (the torsional
            model's local structure, and the states').
        data: ``[M, N, 3]`` nm training frames (the Cartesian model's normalisation).

    Returns:
        ``{"model": "torsional", "reference": [[x, y, z], ...], "relax_steps": int}`` (with
        ``"rigid_bonds"``, the isomer bonds held at the reference, when states are searched),
        ``{"model": "states", "references": [...], "entries": [[k, sign, p], ...],
        "permutations": [[...N atom indices...], ...],
        "log_pi": [...], "energies": [...], "found": int, "left_out": int,
        "relax_steps": int, "rigid_bonds": [[a, b], ...]}`` or
        ``{"model": "cartesian", "normalization": {"mean", "std", "rigid"}}`` (with
        ``"family"`` for ``maf``, ``iaf`` and ``cnf``), or for the equivariant families
        ``{"model": "cartesian", "family": "egnn-cnf", "options": {"std": nm}}``.
    """
    steps = config.relax_steps
    kind = resolve_model(molecule, config)
    elements = StateElements.from_molecule(molecule)
    rigid_states = (
        kind == "cartesian"
        and config.model == "auto"
        and config.states
        and not elements.empty
        and not elements.macrocycles
    )
    rigid = [[c, x] for _, c, x, _ in elements.isomer_bonds]
    if (kind == "torsional" or rigid_states) and config.states:
        states = find_states(molecule, seed_x, config)
        entries = states.entries()
        if len(states.images) > 1 or (len(entries) > 1 and kind == "torsional"):
            return {
                "model": "states",
                "references": states.references.tolist(),
                "entries": [list(e) for e in entries],
                "permutations": states.permutations.tolist(),
                "log_pi": [0.0] * len(entries),
                "energies": states.energies.tolist(),
                "found": states.found,
                "left_out": states.left_out,
                "relax_steps": steps,
                "rigid_bonds": rigid,
            }
    if kind == "torsional":
        reference_list = seed_x[0].double().tolist()
        layout = {"model": "torsional", "reference": reference_list, "relax_steps": steps}
        if config.states:
            layout["rigid_bonds"] = rigid
        return layout
    family = kind if kind in FAMILY_MODELS else "coupling"
    if family in ("egnn-cnf", "e3nn-cnf"):
        x = data.to(torch.float64)
        std = float((x - x.mean(1, keepdim=True)).std())
        return {"model": "cartesian", "family": family, "options": {"std": std}}
    ic = InternalCoordinates(ZMatrix.from_molecule(molecule))
    z, _ = ic.inverse(data.to(torch.float64))
    # rotors stay circular even where the short MD did not cross their barriers
    rigid = structurally_rigid(molecule, ic)
    norm = InternalNormalization.from_data(z, ic.latent_domain, rigid=rigid)
    layout = {"model": "cartesian", "normalization": norm.stats()}
    if family != "coupling":
        layout["family"] = family
    return layout


def _mixture(molecule: Molecule, config: GenerateConfig, layout: dict) -> StateMixture:
    steps = layout["relax_steps"]
    rigid = layout["rigid_bonds"]
    components = [
        build_model(
            molecule,
            config,
            {
                "model": "torsional",
                "reference": r,
                "relax_steps": steps,
                "rigid_bonds": rigid,
                "allow_rigid": True,
            },
        )
        for r in layout["references"]
    ]
    corrections = [local_entropy(c.energy) for c in components]
    entries = [tuple(int(v) for v in e) for e in layout["entries"]]
    log_pi = torch.tensor(layout["log_pi"], dtype=torch.float64)
    corrections = torch.tensor(corrections, dtype=torch.float64)
    # layouts from before atom relabellings have (state, sign) entries and no permutations
    perms = layout.get("permutations")
    perms = None if perms is None else torch.tensor(perms, dtype=torch.long)
    return StateMixture(components, entries, log_pi, corrections, perms)


def build_model(molecule: Molecule, config: GenerateConfig, layout: dict) -> Model:
    """The (untrained) generator for ``molecule`` with the coordinates of ``layout``.

    Built by :func:`~confflow.models.build_boltzmann_generator`: the ``torsional`` family, or
    the ``coupling`` family over internal coordinates for the Cartesian model.

    Args:
        molecule: the molecule (as :func:`~confflow.generate.molecule.load_molecule` parses
            ``config.smiles``).
        config: run settings (``smiles``, ``temperature``, ``energy``, ``largest_fragment``).
        layout: from :func:`model_layout`.

    Returns:
        The model in float32 on the CPU. Its samples are torsions ``[B, K]`` (rad) for the
        torsional model and positions ``[B, N, 3]`` (nm) for the Cartesian one; a
        :class:`~confflow.models.StateMixture` for the ``"states"`` layout.

    Raises:
        ValueError: a layout of the former ``--relax`` minimisation.
        GenerateError: ``config.smiles`` parses to another molecule than ``molecule``.
    """
    if layout["model"] == "states":
        return _mixture(molecule, config, layout)
    params: dict[str, Any] = {"smiles": config.smiles, "variant": config.variant}
    if config.largest_fragment:
        params["largest_fragment"] = True
    flow, normalization = FLOW, None
    if layout["model"] == "torsional":
        if layout.get("relaxed", False):
            raise ValueError("trained with the former --relax minimisation; train it again")
        # checkpoints from before local relaxation are frozen
        options = {
            "reference": layout["reference"],
            "relax_steps": layout.get("relax_steps", 0),
            "rigid_bonds": layout.get("rigid_bonds", []),
            "allow_rigid": layout.get("allow_rigid", False),
        }
        flow = dataclasses.replace(FLOW, family="torsional", options=options)
    else:
        normalization = layout.get("normalization")
        family = layout.get("family", "coupling")
        flow = dataclasses.replace(FLOW, family=family, options=layout.get("options", {}))
    bg_config = BGConfig(
        TargetConfig("smiles", params),
        temperature=config.temperature,
        flow=flow,
        normalization=normalization,
    )
    model = build_boltzmann_generator(bg_config)
    built = model.target.molecule
    if built is None or (built.elements, built.bonds) != (molecule.elements, molecule.bonds):
        raise GenerateError(f"{molecule.source}: the model's molecule differs from the input")
    return model


def training_data(model: BoltzmannGenerator, frames: Tensor) -> Tensor:
    """MD frames ``[M, N, 3]`` nm as the model's samples (torsions for the torsional model)."""
    if isinstance(model.energy, TorsionalEnergy):
        return model.energy.embedding.project(frames.to(torch.float64)).float()
    return frames.float()


def save_model(path: Path, model: Model, config: GenerateConfig, layout: dict) -> None:
    """Writes the trained generator atomically (reloaded by :func:`load_model`).

    Args:
        path: checkpoint file.
        model: the generator.
        config: run settings (``energy``).
        layout: the model's :func:`model_layout`.
    """
    payload = {
        "fingerprint": model.fingerprint,
        "model_config": _first(model).config.to_dict(),
        "layout": layout,
        "energy": config.energy,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    _write(path, payload)


def _first(model: Model) -> BoltzmannGenerator:
    return model.components[0] if isinstance(model, StateMixture) else model


def load_model(path: Path, molecule: Molecule, config: GenerateConfig) -> tuple[Model, dict]:
    """Rebuilds the generator saved by :func:`save_model` for this molecule and energy.

    The checkpoint's layout decides the model kind (torsional or Cartesian), whatever
    ``config.model`` says.

    Returns:
        ``(model, layout)``.

    Raises:
        GenerateError: unreadable checkpoint, or one of another molecule or force field.
    """
    try:
        data = read_checkpoint(path)
    except CheckpointError as err:
        raise GenerateError(f"--checkpoint {path}: {err}") from err
    expected = _fingerprint(molecule, config.variant)
    if data["fingerprint"] != expected:
        raise GenerateError(
            f"--checkpoint {path}: trained for another molecule or force field "
            f"(fingerprint {data['fingerprint']}, this run {expected})"
        )
    try:
        layout = data["layout"]
        model = build_model(molecule, config, layout)
        model.load_state_dict(data["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise GenerateError(f"--checkpoint {path}: not a generate checkpoint ({err})") from err
    return model.eval(), layout
