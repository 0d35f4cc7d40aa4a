"""Families whose coordinates are not the internal ones: Cartesian CNFs and the torsional model.

* ``egnn-cnf`` / ``e3nn-cnf``: a :class:`~confflow.transforms.CNF` over positions ``[B, N, 3]``
  (nm) on the centre-of-mass-free subspace, its vector field an
  :class:`~confflow.nn.EGNN` or :class:`~confflow.nn.e3nn_field.E3NNField` (atoms of one
  graph-symmetry class share a type), its base a
  :class:`~confflow.distributions.MeanFreeNormal`. ``log q`` is a density on that
  ``3(N-1)``-dimensional subspace and rotation invariant.
* ``torsional``: torsions ``[B, K]`` (rad) of the free torsions of a SMILES molecule with the
  local structure of a reference conformer (:class:`~confflow.coordinates.TorsionalEmbedding`),
  its target the MMFF energy with ``relax_steps`` of local relaxation
  (:class:`~confflow.energies.TorsionalEnergy`); an elementwise circular spline, then spline
  couplings, over a uniform base (``circular_components`` is not used).

Each builder takes ``(config, target, data)`` and returns ``(config, base, transform, target)``
with the options it filled from ``data`` written back into ``config.flow.options``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from rdkit import Chem
from torch import Tensor

from confflow.chem import Molecule
from confflow.coordinates import TorsionalEmbedding
from confflow.distributions import Distribution, DomainProduct, MeanFreeNormal
from confflow.energies import TorsionalEnergy
from confflow.models.config import BGConfig
from confflow.models.families import ConfigError, family_options
from confflow.models.stacks import coupling_stack, ode_config
from confflow.models.targets import Target
from confflow.nn import EGNN
from confflow.transforms import CNF, Compose, ElementwiseSpline, Permutation, Transform

__all__ = ["build_equivariant_cnf", "build_torsional", "symmetry_classes"]


def symmetry_classes(molecule: Molecule) -> list[int]:
    """Graph-symmetry class of each atom (equal: exchangeable, e.g. methyl hydrogens)."""
    return [int(r) for r in Chem.CanonicalRankAtoms(molecule.rdkit_mol, breakTies=False)]


def _with_options(config: BGConfig, **filled: Any) -> BGConfig:
    flow = config.flow
    options = {**flow.options, **filled}
    return dataclasses.replace(config, flow=dataclasses.replace(flow, options=options))


def _seed_conformer(molecule: Molecule) -> Tensor:
    """``[N, 3]`` nm: an ETKDG conformer minimised with MMFF94 (deterministic)."""
    return molecule.embed(1, seed=0, num_threads=1, mmff=True)[0]


def build_equivariant_cnf(
    config: BGConfig, target: Target, data: Tensor | None
) -> tuple[BGConfig, Distribution, Transform, Target]:
    """An E(3)-equivariant CNF over positions (``egnn-cnf`` or ``e3nn-cnf``).

    Args:
        config: the configuration; ``flow.hidden[0]`` is the field's width, options ``depth``
            its layers, ``std`` (nm) the base's scale (from ``data``, else from an MMFF
            conformer, when unset).
        target: the molecular target.
        data: optional ``[M, N, 3]`` positions (nm).
    """
    molecule = target.molecule
    assert molecule is not None  # checked by BGConfig
    options = family_options(config.flow.family, config.flow.options)
    if options["std"] is None:
        x = data.double() if data is not None else _seed_conformer(molecule)[None]
        std = float((x - x.mean(1, keepdim=True)).std())
        config = _with_options(config, std=std)
        options["std"] = std
    std, width, depth = float(options["std"]), config.flow.hidden[0], options["depth"]
    classes = symmetry_classes(molecule)
    if config.flow.family == "egnn-cnf":
        field: torch.nn.Module = EGNN(classes, molecule.bonds, width, depth, length_scale=std)
    else:
        from confflow.nn.e3nn_field import E3NNField

        vectors = max(1, width // 2)
        field = E3NNField(classes, molecule.bonds, width, vectors, depth, length_scale=std)
    cnf = CNF(field, (molecule.n_atoms, 3), ode_config(options), mean_free=True)
    return config, MeanFreeNormal(molecule.n_atoms, std), cnf, target


def build_torsional(
    config: BGConfig, target: Target, data: Tensor | None
) -> tuple[BGConfig, Distribution, Transform, Target]:
    """The torsional model of a SMILES molecule.

    Args:
        config: the configuration; option ``reference`` (``[N, 3]`` nm; unset: the
            lowest-energy frame of ``data``, else an MMFF-minimised ETKDG conformer) and
            ``relax_steps``, ``rigid_bonds``, ``allow_rigid`` (no free torsion: the model is the
            relaxed reference itself, one state of a state mixture).
        target: the molecule's MMFF target over positions.
        data: optional ``[M, N, 3]`` positions (nm).

    Raises:
        ConfigError: a molecule without rotatable bonds, or a reference of the wrong shape.
    """
    molecule = target.molecule
    assert molecule is not None  # checked by BGConfig
    options = family_options(config.flow.family, config.flow.options)
    if options["reference"] is None:
        if data is not None:
            with torch.no_grad():
                energies = target.energy(data.float())
            reference = data[int(torch.argmin(energies))].double()
        else:
            reference = _seed_conformer(molecule)
        config = _with_options(config, reference=reference.tolist())
    else:
        reference = torch.tensor(options["reference"], dtype=torch.float64)
    if reference.shape != (molecule.n_atoms, 3):
        raise ConfigError(
            f"flow.options.reference: expected [{molecule.n_atoms}, 3] positions in nm, "
            f"got {list(reference.shape)}"
        )
    rigid = tuple(tuple(p) for p in options["rigid_bonds"])
    try:
        embedding = TorsionalEmbedding(molecule, reference.float(), rigid)
    except ValueError as err:
        raise ConfigError(f"flow.options.rigid_bonds: {err}") from err
    latent = embedding.domain
    if latent.dim == 0 and not options["allow_rigid"]:
        raise ConfigError(
            f"flow.family: 'torsional' needs a rotatable bond; {molecule.smiles} has none"
        )
    layers: list[Transform] = [ElementwiseSpline(latent, bins=config.flow.bins)]
    if latent.dim == 0:  # no free torsion: the identity (the model is the reference itself)
        layers = [Permutation([], latent)]
    if latent.dim >= 2:
        layers += list(coupling_stack(latent, config.flow).transforms)
    energy = TorsionalEnergy(target.energy, embedding, options["relax_steps"])
    torsional = Target(energy, molecule, target.fingerprint, f"{target.description} (torsional)")
    return config, DomainProduct(latent), Compose(layers), torsional
