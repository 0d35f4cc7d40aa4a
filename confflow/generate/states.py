"""Stage 2b: the conformational states of the molecule, found among its seed conformers.

The seeds (ETKDG + MMFF minima; :data:`STATE_SEEDS` of them when the molecule has state
elements) are grouped into states by :func:`~confflow.chem.states.group_states`: ring
puckers with the axial/equatorial side of each substituent, nitrogen invertomers, amide and
ester cis/trans. Proposals widen the search where ETKDG is biased: every isomer bond of the
lowest seed is turned by 180 degrees and minimised again (ETKDG rarely embeds a cis secondary
amide). For a molecule that its mirror image does not change (no stereocentre), every state
has a mirror-image state of the same free energy: the pair is modelled once and sampled in
both images (:class:`~confflow.models.StateMixture`).

States whose lowest seed lies more than :data:`WINDOW_KT` kT above the lowest seed are left out
(each would hold less than ``e^-8 = 3e-4`` of the population unless much softer), and at most
:data:`MAX_STATES` are kept; the report counts what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from confflow.chem import Molecule
from confflow.chem.minimise import mmff_minimise
from confflow.chem.states import (
    StateElements,
    flip_isomer_bonds,
    group_states,
    state_descriptor,
)
from confflow.chem.stereo import rdkit_stereo_kept
from confflow.domains import wrap_angle
from confflow.energies import MMFFEnergy, kT
from confflow.generate.config import GenerateConfig, GenerateError

__all__ = [
    "MAX_STATES",
    "STATE_SEEDS",
    "WINDOW_KT",
    "StateAssignment",
    "States",
    "check_rings",
    "find_states",
]

#: Seed conformers embedded for a molecule with state elements (16 without).
STATE_SEEDS = 64
#: kT above the lowest seed beyond which a state is left out.
WINDOW_KT = 8.0
#: Largest number of modelled states (mirror pairs count once).
MAX_STATES = 12


@dataclass(frozen=True)
class States:
    """The modelled states of a molecule.

    Attributes:
        references: ``[K, N, 3]`` float64 nm, the lowest-energy seed of each state, lowest
            state first.
        energies: ``[K]`` float64 MMFF energies (kJ/mol) of the references.
        mirrored: per state, whether its mirror image is another state (sampled too).
        found: states among the candidates (mirror pairs once).
        left_out: states left out by the energy window or the cap.
    """

    references: Tensor
    energies: Tensor
    mirrored: tuple[bool, ...]
    found: int
    left_out: int

    def entries(self) -> list[tuple[int, int]]:
        """``(state, sign)`` of every sampled image: ``+1`` as found, ``-1`` mirrored."""
        out = []
        for k, mirror in enumerate(self.mirrored):
            out.append((k, 1))
            if mirror:
                out.append((k, -1))
        return out


def check_rings(molecule: Molecule) -> None:
    """Refuses macrocycles for the torsional model.

    Raises:
        GenerateError: a ring of more than 8 atoms, named by its atoms (0-based).
    """
    macro = StateElements.from_molecule(molecule).macrocycles
    if macro:
        atoms = "-".join(str(i) for i in macro[0])
        raise GenerateError(
            f"{molecule.source}: ring of {len(macro[0])} atoms ({atoms}) is a macrocycle, whose "
            "conformers the torsional model does not sample; use --model cartesian"
        )


def find_states(molecule: Molecule, seed_x: Tensor, config: GenerateConfig) -> States:
    """The states among ``seed_x`` and the isomer-bond proposals.

    Args:
        molecule: the molecule.
        seed_x: ``[C, N, 3]`` float64 nm MMFF-minimised seeds, lowest energy first.
        config: the settings (``temperature``, ``energy``).

    Returns:
        The :class:`States`, at least one.
    """
    elements = StateElements.from_molecule(molecule)
    flips = flip_isomer_bonds(molecule, elements, seed_x[:1])
    x = (
        seed_x
        if flips.shape[0] == 0
        else torch.cat([seed_x, mmff_minimise(molecule.with_positions(flips), config.variant)[0]])
    )
    with torch.no_grad():
        energy = MMFFEnergy(molecule.rdkit_mol, variant=config.variant).double().energy(x)
    keep = torch.isfinite(energy)
    x, energy = x[keep], energy[keep]
    if x.shape[0] == 0:
        raise GenerateError(f"{molecule.source}: no seed conformer has a finite energy")
    n = x.shape[0]
    mirror = bool(rdkit_stereo_kept(molecule, -x[:1])[0])
    pool = torch.cat([x, -x]) if mirror else x
    labels = group_states(state_descriptor(elements, pool))
    count = int(labels.max()) + 1
    partner = list(range(count))
    if mirror:
        for i in range(n):
            partner[int(labels[i])] = int(labels[n + i])
            partner[int(labels[n + i])] = int(labels[i])
    pool_energy = torch.cat([energy, energy]) if mirror else energy
    best = [
        int(torch.nonzero(labels == s).squeeze(1)[torch.argmin(pool_energy[labels == s])])
        for s in range(count)
    ]
    # one state per mirror pair: the one of the pair's first member
    chosen = sorted(
        {min(s, partner[s]) for s in range(count)}, key=lambda s: float(pool_energy[best[s]])
    )
    lowest = float(pool_energy[best[chosen[0]]])
    window = WINDOW_KT * kT(config.temperature)
    kept = [s for s in chosen if float(pool_energy[best[s]]) - lowest <= window][:MAX_STATES]
    refs = torch.stack([pool[best[s]] for s in kept])
    return States(
        references=refs,
        energies=torch.stack([pool_energy[best[s]] for s in kept]),
        mirrored=tuple(partner[s] != s for s in kept),
        found=len(chosen),
        left_out=len(chosen) - len(kept),
    )


class StateAssignment:
    """The modelled state a conformer is in: a partition of conformation space.

    A conformer belongs to the state whose reference has the same centre chiralities and
    isomer bonds and, among those, the nearest endocyclic torsions (largest difference). A
    state mixture's sample that relaxed into another state's cell is not a sample of its own
    state's target, whose support is its cell, and gets weight zero.

    Args:
        molecule: the molecule.
        references: ``[E, N, 3]`` nm, one conformer per state (entry).
    """

    def __init__(self, molecule: Molecule, references: Tensor) -> None:
        self.elements = StateElements.from_molecule(molecule)
        self.references = state_descriptor(self.elements, references)

    def __call__(self, x: Tensor) -> Tensor:
        """``[B]`` long: the state of each conformer ``x [B, N, 3]`` (nm), -1 for none."""
        d, r = state_descriptor(self.elements, x), self.references
        same = (d.chirality[:, None] == r.chirality[None]).all(-1)
        same &= (d.cis[:, None] == r.cis[None]).all(-1)
        gap = wrap_angle(d.ring_torsions[:, None] - r.ring_torsions[None]).abs()
        distance = gap.amax(-1) if gap.shape[-1] else torch.zeros(same.shape, dtype=gap.dtype)
        distance = torch.where(same, distance, torch.inf)
        best, state = distance.min(1)
        return torch.where(torch.isfinite(best), state, -1)
