"""The stages of one molecule, shared by ``confflow generate`` and the pipeline's Dask tasks.

:func:`~confflow.generate.pipeline.run_generate` calls them one after the other in one process;
the pipeline (:mod:`confflow.pipeline.stages`) calls each from its own task and passes what
one stage hands the next through files. The inputs, seeds, defaults and outputs are the same
either way, so a molecule's SDF and report are those of ``confflow generate``.

Stages: :func:`prepare_molecule` (parse, validate), :func:`seeds` (ETKDG + MMFF),
:func:`reference_data` (replica-exchange MD and the seeds), :func:`train` (or
:func:`~confflow.generate.model.load_model` for a checkpoint), :func:`sample`,
:func:`cluster_ensemble` and :func:`write_sdf`; the report is
:mod:`confflow.generate.report`.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.chem.conformation import ConformationLabeler
from confflow.chem.states import StateElements
from confflow.coordinates import StereoCheck
from confflow.energies import MMFFEnergy
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.data import md_samples, seed_conformers
from confflow.generate.ensemble import Clusters, Ensemble, cluster, sample_ensemble
from confflow.generate.model import (
    Model,
    build_model,
    model_layout,
    resolve_model,
    save_model,
    training_data,
)
from confflow.generate.molecule import load_molecule
from confflow.generate.state_training import train_states
from confflow.generate.states import STATE_SEEDS, StateAssignment
from confflow.generate.training import TrainingSummary, train_model
from confflow.generate.writers import write_ensemble_sdf
from confflow.models import StateMixture
from confflow.training import resolve_device

__all__ = [
    "COMPILE_MIN_BUDGET",
    "N_SEEDS",
    "Trained",
    "cluster_ensemble",
    "device_of",
    "prepare_molecule",
    "reference_data",
    "sample",
    "seeds",
    "start_compiling",
    "state_assignment",
    "train",
    "write_sdf",
]

#: Seed conformers embedded (the lowest-energy one starts the MD); molecules with
#: conformational states get :data:`~confflow.generate.states.STATE_SEEDS`.
N_SEEDS = 16
#: Training budget (s) from which MMFF is compiled: a compilation costs 8-20 s of one core
#: (cold cache), which shorter runs would wait for rather than gain from; at 40 s it gave one
#: salbutamol run 224 refinement steps against 170 eager.
COMPILE_MIN_BUDGET = 40.0


@dataclass
class Trained:
    """A trained generator and what fixes it.

    Attributes:
        model: the generator (on the training device).
        layout: its :func:`~confflow.generate.model.model_layout`.
        summary: the training's :class:`~confflow.generate.training.TrainingSummary`.
    """

    model: Model
    layout: dict
    summary: TrainingSummary


def prepare_molecule(config: GenerateConfig) -> Molecule:
    """Stage ``molecule``: the checked molecule of ``config.smiles``.

    Without a checkpoint the model choice is checked too, so ``--model torsional`` for a
    molecule without rotatable bonds fails before the MD.

    Raises:
        GenerateError: bad SMILES or molecule, or a model the molecule cannot have.
    """
    molecule = load_molecule(config.smiles, config.largest_fragment)
    if config.checkpoint is None:
        resolve_model(molecule, config)
    return molecule


def device_of(config: GenerateConfig) -> torch.device:
    """The training and sampling device of ``config.device``.

    Raises:
        GenerateError: a device this machine does not have.
    """
    try:
        return resolve_device(config.device)
    except ValueError as err:
        raise GenerateError(f"--device: {err}") from err


def start_compiling(
    molecule: Molecule, config: GenerateConfig, device: torch.device
) -> Future[bool] | None:
    """Starts compiling training's MMFF kernel (float32 on ``device``) in the background.

    Training switches to the kernel when it is ready; wait for the returned future (whether
    it is used) before the process exits. ``None`` when ``config.compile`` is off or the budget
    is below :data:`COMPILE_MIN_BUDGET` seconds.
    """
    if not config.compile or config.budget < COMPILE_MIN_BUDGET:
        return None
    energy = MMFFEnergy(molecule.rdkit_mol, variant=config.variant).to(device)
    return energy.compile_in_background(torch.float32)


def seeds(
    molecule: Molecule, config: GenerateConfig, n: int | None = None
) -> tuple[Tensor, Tensor]:
    """Stage ``seeds``: ``n`` MMFF-minimised ETKDG conformers, lowest energy first.

    ``n`` defaults to :data:`N_SEEDS`, or :data:`~confflow.generate.states.STATE_SEEDS` when
    the states of a torsional model are searched among the seeds.

    Returns:
        ``(x, energy)``: ``[n, N, 3]`` float64 nm and ``[n]`` float64 kJ/mol.
    """
    if n is None:
        searched = config.states and not StateElements.from_molecule(molecule).empty
        n = STATE_SEEDS if searched and config.model != "cartesian" else N_SEEDS
    return seed_conformers(molecule, n, config.seed + 1, config.variant)


def reference_data(
    molecule: Molecule, seed_x: Tensor, config: GenerateConfig, md_dir: Path
) -> Tensor:
    """Stage ``md``: the training positions, MD frames and the seeds (the seeds alone without MD).

    The seeds join the frames because a short MD can stay in one rotamer of a torsion for its
    whole run, and a flow that learns only its frames never finds the others: gabapentin's
    300 K replica kept one gauche rotamer of its aminomethyl group in all 250 frames, the flow
    missed the other, and one missed sample took the ESS to 1.8% (46% with the seeds).

    Args:
        molecule: the molecule.
        seed_x: ``[C, N, 3]`` nm seed conformers, lowest energy first (the first starts the MD).
        config: the settings (``md_ns``, ``replicas``, ``t_max``, ...).
        md_dir: MD run folder (resumed when it holds a compatible run).

    Returns:
        ``[M + C, N, 3]`` float64 positions in nm: the MD frames, then the seeds (``[C, N, 3]``
        without MD).
    """
    if config.md_ns > 0:
        frames = md_samples(molecule, seed_x[0], config, md_dir)
        return torch.cat([frames, seed_x.to(frames)])
    return seed_x


def train(
    molecule: Molecule,
    config: GenerateConfig,
    seed_x: Tensor,
    data: Tensor,
    path: Path,
    device: torch.device,
) -> Trained:
    """Stage ``training``: builds the generator and trains it within ``config.budget`` s.

    The model is saved to ``path`` after maximum likelihood and when training ends, so an
    interruption later keeps it.

    Args:
        molecule: the molecule.
        config: the settings (``model``, ``relax_steps``, ``budget``, ``seed``, ...).
        seed_x: ``[C, N, 3]`` nm seeds, lowest energy first (the torsional model's local
            structure; the states of a state mixture are found among them).
        data: ``[M, N, 3]`` nm training positions from :func:`reference_data`.
        path: the checkpoint file (its folder is created).
        device: where to train.

    Returns:
        The :class:`Trained` model.
    """
    torch.manual_seed(config.seed)
    layout = model_layout(molecule, config, seed_x, data)
    model = build_model(molecule, config, layout).to(device)
    path.parent.mkdir(parents=True, exist_ok=True)

    def keep(m: Model) -> None:
        save_model(path, m, config, layout)

    if isinstance(model, StateMixture):
        entries = state_assignment(model, molecule)(data)
        summary = train_states(model, data, torch.tensor(layout["energies"]), config, entries)
        layout["log_pi"] = model.log_pi.tolist()
    else:
        summary = train_model(model, training_data(model, data), config, keep)
    keep(model)
    return Trained(model, layout, summary)


def state_assignment(model: StateMixture, molecule: Molecule) -> StateAssignment:
    """The cells of the mixture's entries, by their references' images."""
    references = []
    for e, (k, _, _) in enumerate(model.entries):
        embedding = model.components[k].energy.embedding
        x, _ = embedding.ic(embedding.z_ref.double()[None])
        references.append(model.to_entry(e, x)[0].cpu())
    return StateAssignment(molecule, torch.stack(references))


def sample(model: Model, molecule: Molecule, config: GenerateConfig) -> Ensemble:
    """Stage ``sampling``: ``config.n`` samples, the finite ones with the input's stereo kept.

    A state mixture's samples also stay in their state's cell
    (:class:`~confflow.generate.states.StateAssignment`).
    """
    stereo = StereoCheck(molecule, seed=config.seed + 1)
    assign = state_assignment(model, molecule) if isinstance(model, StateMixture) else None
    return sample_ensemble(model, stereo, config.n, config.seed + 2, assign=assign)


def cluster_ensemble(
    molecule: Molecule, ensemble: Ensemble, config: GenerateConfig
) -> Clusters | None:
    """Stage ``clustering``: conformers within ``config.unique`` nm merged (``None``: off)."""
    if config.unique is None:
        return None
    return cluster(molecule, ensemble, config.unique, config.bootstrap, config.seed, ensemble.state)


def write_sdf(path: Path, molecule: Molecule, ensemble: Ensemble, clusters: Clusters | None) -> int:
    """Stage ``writing``: every sample, or one representative per cluster, as SDF.

    SD tags: ``energy_kJ_mol`` (the force field), ``log_q``, ``log_w``, ``state`` (the state
    entry of a state mixture, see the report's ``states``), ``conformation`` (ring puckers with
    axial and equatorial substituents, amide isomers; see
    :class:`~confflow.chem.conformation.ConformationLabeler`) and ``weight`` (the normalised
    weight, or the cluster's population); with clusters also ``log_population``,
    ``free_energy_kT``, ``free_energy_kT_std`` and ``cluster_size``. With a second level
    (``--level gfn2``) also ``energy_gfn2_kJ_mol`` and ``log_w_force_field``; ``log_w``,
    ``weight`` and the cluster tags are then at that level.

    Returns:
        The number of records written.
    """
    if clusters is None:
        idx = torch.arange(ensemble.x.shape[0])
        tags = {"weight": ensemble.weights}
    else:
        idx = clusters.representatives
        tags = {
            "weight": clusters.population,
            "log_population": clusters.log_population,
            "free_energy_kT": clusters.free_energy,
            "free_energy_kT_std": clusters.free_energy_std,
            "cluster_size": torch.bincount(clusters.labels).double(),
        }
    per_sample = {
        "energy_kJ_mol": ensemble.energy,
        "log_q": ensemble.log_q,
        "log_w": ensemble.log_w,
        "state": ensemble.state,
    }
    if ensemble.level is not None:
        per_sample[f"energy_{ensemble.level.method}_kJ_mol"] = ensemble.level.energy
        per_sample["log_w_force_field"] = ensemble.level.force_field_log_w
    tags = {**{name: values[idx] for name, values in per_sample.items()}, **tags}
    labeler = ConformationLabeler(molecule)
    if not labeler.elements.empty:
        tags["conformation"] = labeler.labels(ensemble.x[idx])
    write_ensemble_sdf(path, molecule, ensemble.x[idx], tags)
    return int(idx.shape[0])
