"""Stage 2b: the conformational states of the molecule, found among its seed conformers.

The seeds (ETKDG + MMFF minima; :data:`STATE_SEEDS` of them when the molecule has state
elements) are grouped into states by :func:`~confflow.chem.states.group_states`: ring
puckers with the axial/equatorial side of each substituent, nitrogen invertomers, amide and
ester cis/trans. Proposals widen the search where ETKDG is biased: every isomer bond of the
lowest seed is turned by 180 degrees and minimised again (ETKDG rarely embeds a cis secondary
amide). Symmetries of the molecule map states onto states of the same free energy: its mirror
image when it has no stereocentre, and atom relabellings by graph automorphisms (a
4-substituted piperidine or a 1,1-disubstituted cyclohexane has two ring arms that swap, so a
chair with a substituent on one side and the chair with it on the other are one state
relabelled). Each set of such images is modelled once, by one flow, and sampled in all its
images (:func:`symmetries`, :class:`~confflow.models.StateMixture`).

States whose lowest seed lies more than :data:`WINDOW_KT` kT above the lowest seed are left out
(each would hold less than ``e^-8 = 3e-4`` of the population unless much softer), and at most
:data:`MAX_STATES` are kept; the report counts what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rdkit import Chem
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
    "MAX_PERMUTATIONS",
    "MAX_STATES",
    "STATE_SEEDS",
    "WINDOW_KT",
    "StateAssignment",
    "States",
    "check_rings",
    "find_states",
    "symmetries",
]

#: Seed conformers embedded for a molecule with state elements (16 without).
STATE_SEEDS = 64
#: kT above the lowest seed beyond which a state is left out.
WINDOW_KT = 8.0
#: Largest number of modelled states (images count once).
MAX_STATES = 12
#: Largest number of heavy-atom graph automorphisms tried as symmetries.
MAX_PERMUTATIONS = 64


@dataclass(frozen=True)
class States:
    """The modelled states of a molecule.

    States that are images of each other under a symmetry of the molecule (its mirror image for
    an achiral molecule, an atom relabelling by a graph automorphism, or both) share one
    reference, and so one flow: each is an *image* of it.

    Attributes:
        references: ``[K, N, 3]`` float64 nm, the lowest-energy seed of each state, lowest
            state first.
        energies: ``[K]`` float64 MMFF energies (kJ/mol) of the references.
        images: per state, the ``(sign, permutation)`` of each distinct image, the state itself
            ``(1, 0)`` first: written atom ``i`` of an image is ``sign`` times the reference's
            atom ``permutations[permutation, i]``.
        permutations: ``[P, N]`` long atom relabellings, the identity first.
        found: states among the candidates (images once).
        left_out: states left out by the energy window or the cap.
    """

    references: Tensor
    energies: Tensor
    images: tuple[tuple[tuple[int, int], ...], ...]
    permutations: Tensor
    found: int
    left_out: int

    @property
    def mirrored(self) -> tuple[bool, ...]:
        """Per state, whether one of its images is a mirror image."""
        return tuple(any(sign < 0 for sign, _ in images) for images in self.images)

    def entries(self) -> list[tuple[int, int, int]]:
        """``(state, sign, permutation)`` of every sampled image, state by state."""
        return [(k, sign, p) for k, images in enumerate(self.images) for sign, p in images]

    def image(self, k: int, sign: int, p: int) -> Tensor:
        """``[N, 3]`` nm: the image ``(sign, p)`` of state ``k``'s reference."""
        return sign * self.references[k][self.permutations[p]]


def symmetries(molecule: Molecule, x: Tensor) -> tuple[list[tuple[int, int]], Tensor]:
    """The symmetries of the molecule that keep its stereo: ``[(sign, permutation)]``.

    The identity; the mirror image when the molecule is achiral; every atom relabelling by an
    automorphism of the heavy-atom graph (at most :data:`MAX_PERMUTATIONS`, hydrogens following
    their heavy atoms), alone and mirrored, that keeps the input's stereo on ``x``.

    Args:
        molecule: the molecule.
        x: ``[N, 3]`` nm, a conformer with the input's stereo.

    Returns:
        ``(symmetries, permutations)``: ``(sign, index)`` pairs, the identity ``(1, 0)`` first,
        and the ``[P, N]`` long permutations they index.
    """
    mol = molecule.rdkit_mol
    heavy = list(molecule.heavy_atoms)
    heavy_mol = Chem.RemoveHs(mol, sanitize=False)
    matches = heavy_mol.GetSubstructMatches(
        heavy_mol, uniquify=False, useChirality=True, maxMatches=MAX_PERMUTATIONS
    )
    hydrogens = {
        a: sorted(n.GetIdx() for n in mol.GetAtomWithIdx(a).GetNeighbors() if n.GetAtomicNum() == 1)
        for a in heavy
    }
    perms = [torch.arange(molecule.n_atoms)]
    for match in matches:
        perm = torch.arange(molecule.n_atoms)
        ok = True
        for i, m in enumerate(match):
            a, b = heavy[i], heavy[m]
            perm[a] = b
            if len(hydrogens[a]) != len(hydrogens[b]):
                ok = False
                break
            perm[hydrogens[a]] = torch.tensor(hydrogens[b], dtype=torch.long)
        if ok and not any(torch.equal(perm, q) for q in perms):
            perms.append(perm)
    candidates = [(sign, p) for p in range(len(perms)) for sign in (1, -1)]
    images = torch.stack([sign * x[perms[p]] for sign, p in candidates])
    kept = rdkit_stereo_kept(molecule, images)
    found = [c for c, keep in zip(candidates, kept.tolist(), strict=True) if keep]
    used = sorted({p for _, p in found})
    index = {p: i for i, p in enumerate(used)}
    return [(sign, index[p]) for sign, p in found], torch.stack([perms[p] for p in used])


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
    """The states among ``seed_x`` and the isomer-bond proposals, with their images.

    The candidates are grouped into states (:func:`~confflow.chem.states.group_states`); in
    order of energy, each state not yet found as an image of a lower one becomes a modelled
    state, and its images under the molecule's :func:`symmetries` that fall in distinct cells
    are sampled with it.

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
    labels = group_states(state_descriptor(elements, x))
    best = [
        int(torch.nonzero(labels == s).squeeze(1)[torch.argmin(energy[labels == s])])
        for s in range(int(labels.max()) + 1)
    ]
    best.sort(key=lambda i: float(energy[i]))
    refs = x[best]
    maps, perms = symmetries(molecule, x[0])
    covered: set[int] = set()
    chosen: list[tuple[int, tuple[tuple[int, int], ...]]] = []
    for s in range(len(best)):
        if s in covered:
            continue
        images = torch.stack([sign * refs[s][perms[p]] for sign, p in maps])
        joint = group_states(state_descriptor(elements, torch.cat([images, refs])))
        cells = joint[: len(maps)]
        first = sorted({int(c): g for g, c in reversed(list(enumerate(cells.tolist())))}.values())
        chosen.append((s, tuple(maps[g] for g in first)))
        covered |= {t for t in range(len(best)) if int(joint[len(maps) + t]) in set(cells.tolist())}
    lowest = float(energy[best[0]])
    window = WINDOW_KT * kT(config.temperature)
    kept = [(s, im) for s, im in chosen if float(energy[best[s]]) - lowest <= window][:MAX_STATES]
    return States(
        references=torch.stack([refs[s] for s, _ in kept]),
        energies=torch.stack([energy[best[s]] for s, _ in kept]),
        images=tuple(im for _, im in kept),
        permutations=perms,
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
