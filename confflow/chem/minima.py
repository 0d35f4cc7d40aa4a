r"""An independent reference for conformer populations: harmonic free energies of MMFF minima.

Computed without any generator: ETKDG and plain distance-geometry conformers (half each),
and copies of them with every amide/ester bond turned by 180 degrees (both embed amides
trans), minimised with RDKit's MMFF94 to tight
convergence (and, for molecules that their mirror image does not change, the mirror image of
each), duplicates merged, each minimum's Hessian taken by central differences of the analytic
MMFF gradient of :class:`~confflow.energies.MMFFEnergy` (equal to RDKit's energy to 1e-12
relative; RDKit's own ``CalcGrad`` differs from finite differences of its energy by ~1e-3
relative, enough to make the Hessian indefinite at its minima), and its classical
configurational partition function in the harmonic approximation (unit masses, which cancel
from configurational integrals):

.. math::

    Z_m = e^{-E_m/kT} \sqrt{\det I_m} \prod_{i=1}^{3N-6} \sqrt{2\pi kT / \lambda_i},

with :math:`I_m` the inertia tensor of unit masses about the centroid (the volume of the
rotation orbit) and :math:`\lambda_i` the Hessian's eigenvalues orthogonal to the six
rigid-body motions; constants shared by all minima (the box volume, :math:`8\pi^2`) are
dropped. A minimum with symmetry number :math:`\sigma_m` (graph automorphisms, hydrogens
included, that map it onto itself by a proper rotation) has :math:`|\mathrm{Aut}|/\sigma_m`
labelled copies, so populations are :math:`\propto Z_m / \sigma_m`. Populations from
:math:`E_m` alone (the CREST/GEOM convention) leave out the basin widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdDistGeom
from torch import Tensor

from confflow.chem.errors import MoleculeError
from confflow.chem.minimise import mmff_minimise
from confflow.chem.molecule import Molecule
from confflow.chem.states import StateElements, flip_isomer_bonds
from confflow.chem.stereo import rdkit_stereo_kept
from confflow.coordinates.align import kabsch_align
from confflow.energies.mmff import MMFFEnergy

__all__ = ["Minima", "class_populations", "harmonic_minima"]

#: Gas constant, kJ/mol/K.
R_KJ = 0.0083144626
#: Central-difference step of the Hessian, nm.
HESSIAN_STEP = 1e-5
#: Energy (kJ/mol) and heavy-atom RMSD (nm) within which two minima are the same.
SAME_ENERGY, SAME_RMSD = 1e-3, 0.01
#: RMSD (nm, all atoms) within which a permuted minimum maps onto itself.
SYMMETRY_RMSD = 0.015
#: Largest number of automorphisms enumerated.
MAX_AUTOMORPHISMS = 200_000


@dataclass(frozen=True)
class Minima:
    """Unique MMFF minima with harmonic free energies.

    Attributes:
        x: ``[M, N, 3]`` float64 positions (nm), lowest energy first.
        energy: ``[M]`` float64 MMFF energies (kJ/mol).
        free_energy: ``[M]`` float64 harmonic free energies ``-kT ln(Z_m / sigma_m)``
            (kJ/mol) relative to the lowest.
        symmetry: ``[M]`` long symmetry numbers ``sigma_m``.
        log_population: ``[M]`` float64 normalised log-populations (log space).
        n_embedded: ETKDG conformers minimised.
        n_saddles: stationary points dropped for a negative Hessian eigenvalue.
    """

    x: Tensor
    energy: Tensor
    free_energy: Tensor
    symmetry: Tensor
    log_population: Tensor
    n_embedded: int
    n_saddles: int

    @property
    def population(self) -> Tensor:
        """``[M]`` populations, summing to 1."""
        return self.log_population.exp()


def _embed_plain(molecule: Molecule, n: int, seed: int) -> Tensor:
    """``[n, N, 3]`` nm conformers by plain distance geometry.

    No torsion preferences or chemical knowledge: ETKDG's all but exclude cis secondary
    amides.
    """
    if n == 0:
        return torch.zeros(0, molecule.n_atoms, 3, dtype=torch.float64)
    mol = Chem.Mol(molecule.rdkit_mol)
    mol.RemoveAllConformers()
    params = rdDistGeom.EmbedParameters()
    params.useExpTorsionAnglePrefs = False
    params.useBasicKnowledge = False
    params.randomSeed = seed + 1
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, n, params))
    x = [mol.GetConformer(i).GetPositions() for i in ids]
    return torch.tensor(np.array(x), dtype=torch.float64).reshape(-1, molecule.n_atoms, 3) / 10.0


def _hessian(energy: MMFFEnergy, x: Tensor) -> np.ndarray:
    """``[3N, 3N]`` Hessian (kJ/mol/nm^2) of ``x [N, 3]`` (nm).

    Central differences of the analytic gradient, all displacements in one batch.
    """
    flat = x.reshape(-1)
    shift = HESSIAN_STEP * torch.eye(flat.numel(), dtype=torch.float64)
    points = torch.cat([flat + shift, flat - shift]).view(-1, *x.shape).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(points).sum(), points)
    grad = grad.reshape(2, flat.numel(), -1)
    h = ((grad[0] - grad[1]) / (2 * HESSIAN_STEP)).numpy()
    return 0.5 * (h + h.T)


def _vibrations(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The ``3N-6`` eigenvalues of ``h`` orthogonal to the rigid motions of ``x [N, 3]``."""
    n = x.shape[0]
    r = x - x.mean(0)
    rigid = []
    for k in range(3):
        t = np.zeros((n, 3))
        t[:, k] = 1.0
        rigid.append(t.ravel())
        axis = np.zeros(3)
        axis[k] = 1.0
        rigid.append(np.cross(axis, r).ravel())
    q, _ = np.linalg.qr(np.array(rigid).T)
    u, _, _ = np.linalg.svd(np.eye(3 * n) - q @ q.T)
    basis = u[:, : 3 * n - 6]
    return np.linalg.eigvalsh(basis.T @ h @ basis)


def _automorphisms(mol: Chem.Mol) -> Tensor:
    matches = mol.GetSubstructMatches(
        mol, uniquify=False, useChirality=False, maxMatches=MAX_AUTOMORPHISMS
    )
    if len(matches) >= MAX_AUTOMORPHISMS:
        raise MoleculeError(f"more than {MAX_AUTOMORPHISMS} automorphisms")
    return torch.tensor(matches, dtype=torch.long)


def _symmetry_number(x: Tensor, perms: Tensor) -> int:
    """Automorphisms that map ``x [N, 3]`` (nm) onto itself by a proper rotation."""
    moved = x[perms]
    aligned = kabsch_align(moved, x)
    rmsd = ((aligned - x) ** 2).sum(-1).mean(-1).sqrt()
    return int((rmsd < SYMMETRY_RMSD).sum())


def _unique(molecule: Molecule, x: Tensor, energy: Tensor) -> list[int]:
    heavy = torch.tensor(molecule.heavy_atoms, dtype=torch.long)
    perms = _automorphisms(Chem.RemoveHs(molecule.rdkit_mol, sanitize=False))
    kept: list[int] = []
    for i in torch.argsort(energy).tolist():
        same = False
        for j in kept:
            if abs(float(energy[i] - energy[j])) > SAME_ENERGY:
                continue
            moved = x[i, heavy][perms]
            aligned = kabsch_align(moved, x[j, heavy])
            if float(((aligned - x[j, heavy]) ** 2).sum(-1).mean(-1).sqrt().min()) < SAME_RMSD:
                same = True
                break
        if not same:
            kept.append(i)
    return kept


def harmonic_minima(
    molecule: Molecule,
    n_conformers: int = 300,
    temperature: float = 300.0,
    variant: str = "MMFF94",
    seed: int = 0,
) -> Minima:
    """Every MMFF minimum found from ``n_conformers`` seeds, with harmonic populations.

    Args:
        molecule: the molecule.
        n_conformers: ETKDG conformers minimised.
        temperature: K.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        seed: ETKDG seed.

    Returns:
        The :class:`Minima`.

    Raises:
        MoleculeError: MMFF has no parameters, or the symmetry group is too large.
    """
    elements = StateElements.from_molecule(molecule)
    start = torch.cat(
        [
            molecule.embed(n_conformers - n_conformers // 2, seed=seed, num_threads=1),
            _embed_plain(molecule, n_conformers // 2, seed),
        ]
    )
    # every isomer bond turned in every start: ETKDG and DG embed amides trans
    start = torch.cat([start, flip_isomer_bonds(molecule, elements, start)])
    if bool(rdkit_stereo_kept(molecule, -start[:1])[0]):
        start = torch.cat([start, -start])
    mol = molecule.with_positions(start)
    x, energy = mmff_minimise(mol, variant, tight=True)
    kt = R_KJ * temperature
    perms = _automorphisms(molecule.rdkit_mol)
    mmff = MMFFEnergy(molecule.rdkit_mol, variant=variant).double()
    keep, log_z, sigma, saddles = [], [], [], 0
    for i in _unique(molecule, x, energy.double()):
        values = _vibrations(_hessian(mmff, x[i]), x[i].numpy())
        if values[0] < -1e-3 * values[-1]:
            saddles += 1
            continue
        r = x[i] - x[i].mean(0)
        inertia = (r * r).sum() * torch.eye(3, dtype=torch.float64) - r.T @ r
        log_z.append(
            -float(energy[i]) / kt
            + 0.5 * math.log(float(torch.linalg.det(inertia)))
            + 0.5 * float(np.log(2 * math.pi * kt / np.clip(values, 1e-12, None)).sum())
        )
        sigma.append(_symmetry_number(x[i], perms))
        keep.append(i)
    log_w = torch.tensor(log_z, dtype=torch.float64) - torch.tensor(sigma).double().log()
    log_pop = log_w - torch.logsumexp(log_w, 0)
    free = -kt * (log_w - log_w.max())
    return Minima(
        x[keep],
        energy[keep].double(),
        free,
        torch.tensor(sigma),
        log_pop,
        int(start.shape[0]),
        saddles,
    )


def class_populations(minima: Minima, labels: list[str]) -> dict[str, float]:
    """Summed populations of the minima per label (one label per minimum)."""
    out: dict[str, float] = {}
    for label, p in zip(labels, minima.population.tolist(), strict=True):
        out[label] = out.get(label, 0.0) + p
    return out
