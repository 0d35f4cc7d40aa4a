"""Stages 4-6: sample with exact log-likelihoods, drop changed stereo, reweight, cluster.

Torsional models sample torsions; they become the conformers of the model's torsional energy
first (the reference's local structure relaxed at those torsions), and ``log q`` is the density
of the written conformer's torsions (rad^-K). Samples are rounded to the precision of an SDF
file (1e-4 Angstrom) *before* their energy and ``log q`` are evaluated, so the numbers written
next to a conformer are those of the written coordinates. Energies are float64
MMFF (kJ/mol); ``log_w = -E / kT - log q`` in float64. A
:class:`~confflow.models.StateMixture` samples a state (entry) first; its ``log q`` includes
the state's probability and ``log_w`` its local entropy ``c_k`` (``-E / kT + c_k - log q``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rdkit import Chem
from torch import Tensor

from confflow.chem import Molecule
from confflow.chem.stereo import rdkit_stereo_kept
from confflow.coordinates import StereoCheck, kabsch_align
from confflow.energies import Energy, TorsionalEnergy, kT
from confflow.models import BoltzmannGenerator, StateMixture
from confflow.reweighting import free_energy_difference, kish_ess, normalized_weights

__all__ = [
    "Clusters",
    "Ensemble",
    "LevelData",
    "cluster",
    "log_populations",
    "rdkit_stereo_kept",
    "sample_ensemble",
]

#: Grid of SDF coordinates in nm (4 decimals of Angstrom).
SDF_GRID_NM = 1e-5
#: Failed conformers of a level change whose messages the report lists (all are counted).
MAX_LISTED_FAILURES = 10
#: Largest number of heavy-atom automorphisms tried by the symmetry-aware RMSD.
MAX_AUTOMORPHISMS = 64


@dataclass
class LevelData:
    """An ensemble's second level of theory.

    Attributes:
        name: the level (``"gfn2"``, ``"gfn2:water"``).
        method: its method (``"gfn2"``), the name inside SD tags.
        energy: ``[B]`` float64 kJ/mol at the level, per kept sample.
        force_field_log_w: ``[B]`` float64 log-weights at the force field, per kept sample.
        ess_change: the ESS at the level over the ESS at the force field, same samples.
        ess_force_field: Kish ESS fraction at the force field (the same samples).
        failed: samples dropped because their calculation failed.
        failures: ``(sample, message)`` of the first :data:`MAX_LISTED_FAILURES` of them
            (sample: index among the samples before the level was applied).
        refinement: after a refinement at the level, ``ess_before`` (the ESS at the level
            before it), ``steps``, ``seconds`` and ``ess_history`` (its ESS checks).
    """

    name: str
    method: str
    energy: Tensor
    force_field_log_w: Tensor
    ess_change: float
    ess_force_field: float
    failed: int
    failures: list[tuple[int, str]]
    refinement: dict | None = None


@dataclass
class Ensemble:
    """Flow samples that kept the input stereo, with energies and log-weights.

    Attributes:
        x: ``[B, N, 3]`` float64 positions in nm (on the SDF grid).
        energy: ``[B]`` float64 potential energies in kJ/mol.
        log_q: ``[B]`` float64 model log-densities (nats).
        log_w: ``[B]`` float64 log-weights ``-E / kT - log q`` (plus ``c_k`` for states).
        state: ``[B]`` long, the state entry of each sample (0 for single-state models).
        drawn: samples drawn from the flow.
        nonfinite: samples dropped for non-finite positions, energy or ``log q``.
        stereo_rejected: samples dropped because a stereo element differs from the input
            (signed volumes of :class:`~confflow.coordinates.StereoCheck`, then RDKit's
            perception from 3D, which also rejects degenerate, near-planar centres).
        state_rejected: samples of a state mixture dropped (weight zero) because their
            conformer lies in another state's cell (see
            :class:`~confflow.generate.states.StateAssignment`).
        level: with a second level of theory, its energies and the force field's log-weights
            (:class:`LevelData`); ``log_w`` is then at that level.
    """

    x: Tensor
    energy: Tensor
    log_q: Tensor
    log_w: Tensor
    state: Tensor
    drawn: int
    nonfinite: int
    stereo_rejected: int
    state_rejected: int = 0
    level: LevelData | None = None

    @property
    def weights(self) -> Tensor:
        """``[B]`` normalised importance weights (sum to 1)."""
        return normalized_weights(self.log_w)

    @property
    def ess(self) -> float:
        """Kish effective sample size as a fraction of the kept samples."""
        return kish_ess(self.log_w)


def _cartesian(model: BoltzmannGenerator | StateMixture) -> tuple[Energy, TorsionalEnergy | None]:
    """The model's energy over positions, and its torsional wrapper (``None``: Cartesian)."""
    if isinstance(model, StateMixture):
        return model.cartesian, None
    if isinstance(model.energy, TorsionalEnergy):
        return model.energy.cartesian, model.energy
    return model.energy, None


def _draw(
    model: BoltzmannGenerator | StateMixture, n: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``n`` conformers ``[n, N, 3]`` (float64 nm, model device) and their state entries."""
    if isinstance(model, StateMixture):
        return model.sample(n, gen)
    x, _ = model.sample(n, gen)
    x = x.double()
    if isinstance(model.energy, TorsionalEnergy):
        x = model.energy.positions(x)
    return x, torch.zeros(n, dtype=torch.long, device=x.device)


def _log_density(
    model: BoltzmannGenerator | StateMixture, x: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """``log q`` ``[B]`` (float64 nats) of conformers ``x``, and their states' ``c_k`` ``[B]``.

    ``c_k`` is the local entropy of a state mixture's state (0 for single-state models).
    """
    if isinstance(model, StateMixture):
        return model.log_prob(x, state), model.log_correction(state)
    if isinstance(model.energy, TorsionalEnergy):
        x = model.energy.embedding.project(x)
    log_q = model.log_prob(x.float()).double()
    return log_q, torch.zeros_like(log_q)


def sample_ensemble(
    model: BoltzmannGenerator | StateMixture,
    stereo: StereoCheck,
    n: int,
    seed: int,
    batch: int = 1000,
    assign: Callable[[Tensor], Tensor] | None = None,
) -> Ensemble:
    """Draws ``n`` samples and keeps the finite ones with the input's stereochemistry.

    Args:
        model: trained generator or state mixture (its device is used).
        stereo: stereo check against the input.
        n: samples to draw.
        seed: sampling seed.
        batch: samples per batch.
        assign: a state mixture's state of conformers ``[B, N, 3]`` (nm); samples whose state
            differs from the one they were drawn in are dropped.

    Returns:
        The :class:`Ensemble`.

    Raises:
        ValueError: no sample survived (all non-finite or of another stereoisomer).
    """
    if isinstance(model, StateMixture):
        device = model.log_pi.device
    else:
        device = next(model.flow.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    kept_x, kept_e, kept_q, kept_c, kept_s = [], [], [], [], []
    nonfinite = rejected = moved = 0
    beta = 1.0 / kT(model.temperature)
    energy_fn, _ = _cartesian(model)
    with torch.no_grad():
        for start in range(0, n, batch):
            x, state = _draw(model, min(batch, n - start), gen)
            x = torch.round(x.cpu() / SDF_GRID_NM) * SDF_GRID_NM
            state = state.cpu()
            ok = torch.isfinite(x.flatten(1)).all(1)
            bad = ~ok
            ok[ok.clone()] &= ~stereo.flag(x[ok])
            ok[ok.clone()] &= rdkit_stereo_kept(stereo.molecule, x[ok])
            rejected += int((~ok).sum()) - int(bad.sum())
            x, state = x[ok], state[ok]
            if assign is not None:
                same = assign(x) == state
                moved += int((~same).sum())
                x, state = x[same], state[same]
            log_q, entropy = _log_density(model, x.to(device), state.to(device))
            log_q, entropy = log_q.cpu(), entropy.cpu()
            energy = energy_fn.energy(x.to(device)).double().cpu()
            finite = torch.isfinite(log_q) & torch.isfinite(energy)
            nonfinite += int(bad.sum()) + int((~finite).sum())
            kept_x.append(x[finite])
            kept_e.append(energy[finite])
            kept_q.append(log_q[finite])
            kept_c.append(entropy[finite])
            kept_s.append(state[finite])
    x, energy, log_q = torch.cat(kept_x), torch.cat(kept_e), torch.cat(kept_q)
    if x.shape[0] == 0:
        raise ValueError(
            f"sampling: none of {n} samples is usable ({nonfinite} non-finite, "
            f"{rejected} with changed stereo, {moved} in another state)"
        )
    log_w = -energy * beta + torch.cat(kept_c) - log_q
    state = torch.cat(kept_s)
    return Ensemble(x, energy, log_q, log_w, state, n, nonfinite, rejected, moved)


@dataclass
class Clusters:
    """Conformers from RMSD clustering, with Boltzmann populations and free energies.

    Attributes:
        representatives: ``[K]`` indices (into the ensemble) of each cluster's lowest-energy
            member, clusters ordered by decreasing population.
        labels: ``[B]`` cluster of every sample (index into ``representatives``).
        population: ``[K]`` float64 reweighted populations (sum to 1), ``exp(log_population)``.
        log_population: ``[K]`` float64 natural logarithms of the populations, computed in log
            space (exact where a population underflows float64, e.g. ``e^-800``).
        free_energy: ``[K]`` float64 ``F_k - F_0`` in kT relative to the most populated cluster.
        free_energy_std: ``[K]`` float64 bootstrap standard deviations (kT; 0 for cluster 0).
    """

    representatives: Tensor
    labels: Tensor
    population: Tensor
    log_population: Tensor
    free_energy: Tensor
    free_energy_std: Tensor


def _automorphisms(molecule: Molecule) -> Tensor:
    """``[P, H]`` permutations of the heavy atoms that map the graph onto itself."""
    heavy = Chem.RemoveHs(molecule.rdkit_mol, sanitize=False)
    matches = heavy.GetSubstructMatches(
        heavy, uniquify=False, useChirality=False, maxMatches=MAX_AUTOMORPHISMS
    )
    return torch.tensor(matches or [tuple(range(heavy.GetNumAtoms()))], dtype=torch.long)


def _rmsd_to(x: Tensor, reference: Tensor, perms: Tensor) -> Tensor:
    """``[B]`` smallest RMSD over heavy-atom automorphisms after optimal superposition."""
    best = torch.full((x.shape[0],), math.inf, dtype=x.dtype)
    for perm in perms:
        ref = reference[perm]
        aligned = kabsch_align(x, ref)
        rmsd = ((aligned - ref) ** 2).sum(-1).mean(-1).sqrt()
        best = torch.minimum(best, rmsd)
    return best


def log_populations(labels: Tensor, log_w: Tensor, k: int) -> Tensor:
    """Log-populations ``[k]`` of clusters ``labels [B]`` (in ``0..k-1``) under ``log_w [B]``.

    Computed in log space, so that a population too small for float64 keeps its value.
    """
    log_total = torch.logsumexp(log_w, 0)
    return torch.stack([torch.logsumexp(log_w[labels == c], 0) for c in range(k)]) - log_total


def cluster(
    molecule: Molecule,
    ensemble: Ensemble,
    threshold: float,
    n_bootstrap: int = 200,
    seed: int = 0,
    groups: Tensor | None = None,
) -> Clusters:
    """Leader clustering by symmetry-aware heavy-atom RMSD, lowest energy first.

    The lowest-energy unassigned sample founds a cluster and takes every unassigned sample
    of its group within ``threshold`` of it; repeat until all are assigned. Populations are
    sums of the normalised weights; free energies ``-ln(p_k / p_0)``, computed from the
    log-weights (finite where ``p_k`` underflows float64), with bootstrap errors from
    :func:`~confflow.reweighting.free_energy_difference`.

    Args:
        molecule: the molecule.
        ensemble: the reweighted samples.
        threshold: heavy-atom RMSD in nm.
        n_bootstrap: bootstrap replicates (>= 10).
        seed: bootstrap seed.
        groups: ``[B]`` integer group of each sample (e.g. its conformational state): clusters
            never mix groups. ``None``: one group.

    Returns:
        The :class:`Clusters`.
    """
    if not threshold > 0:
        raise ValueError(f"cluster: threshold must be a positive RMSD in nm, got {threshold}")
    heavy = torch.tensor(molecule.heavy_atoms, dtype=torch.long)
    xh = ensemble.x[:, heavy]
    perms = _automorphisms(molecule)
    labels = torch.full((xh.shape[0],), -1, dtype=torch.long)
    founders = []
    order = torch.argsort(ensemble.energy)
    for b in order.tolist():
        if labels[b] >= 0:
            continue
        free = (labels < 0) if groups is None else (labels < 0) & (groups == groups[b])
        free = free.nonzero().squeeze(1)
        close = _rmsd_to(xh[free], xh[b], perms) <= threshold
        labels[free[close]] = len(founders)
        labels[b] = len(founders)
        founders.append(b)
    log_population = log_populations(labels, ensemble.log_w, len(founders))
    rank = torch.argsort(log_population, descending=True)
    relabel = torch.empty_like(rank)
    relabel[rank] = torch.arange(len(rank))
    labels = relabel[labels]
    log_population = log_population[rank]
    population = log_population.exp()
    representatives = torch.tensor(founders, dtype=torch.long)[rank]
    gen = torch.Generator().manual_seed(seed)
    top = labels == 0
    free_energy = torch.zeros(len(rank), dtype=torch.float64)
    free_energy_std = torch.zeros(len(rank), dtype=torch.float64)
    for k in range(1, len(rank)):
        members = labels == k
        if not bool(torch.isfinite(ensemble.log_w[members]).any()):
            free_energy[k] = free_energy_std[k] = math.inf
            continue
        result = free_energy_difference(
            ensemble.log_w, top, members, n_bootstrap=n_bootstrap, generator=gen
        )
        free_energy[k], free_energy_std[k] = result.value, result.std
    return Clusters(
        representatives, labels, population, log_population, free_energy, free_energy_std
    )
