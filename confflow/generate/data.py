"""Stage 2: training data — ETKDG seed conformers and MMFF replica-exchange MD with OpenMM."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from confflow.chem import Molecule, to_mdtraj
from confflow.energies import MMFFEnergy, mmff_openmm_system
from confflow.generate.config import GenerateConfig, GenerateError
from confflow.md import MDConfig, MDSystem, ReplicaConfig, read_frames, run_md

__all__ = ["md_samples", "seed_conformers"]

#: ps between stored MD frames (and between replica swaps).
STRIDE_PS = 0.2


def seed_conformers(
    molecule: Molecule, n: int, seed: int, variant: str = "MMFF94"
) -> tuple[Tensor, Tensor]:
    """ETKDGv3 conformers minimised with RDKit's MMFF94, lowest ``variant`` energy first.

    Args:
        molecule: the molecule.
        n: number of conformers.
        seed: ETKDG seed.
        variant: ``"MMFF94"`` or ``"MMFF94s"``, the energy that orders them.

    Returns:
        ``(x, energy)``: ``[n, N, 3]`` float64 positions in nm and their ``[n]`` float64
        ``variant`` energies in kJ/mol, in increasing energy.

    Raises:
        GenerateError: a seed conformer's energy is not finite.
    """
    x = molecule.embed(n, seed=seed, num_threads=1, mmff=True)
    with torch.no_grad():
        energy = MMFFEnergy(molecule.rdkit_mol, variant=variant).double().energy(x)
    if not bool(torch.isfinite(energy).all()):
        raise GenerateError(f"{molecule.source}: non-finite {variant} energy of a seed conformer")
    order = torch.argsort(energy)
    return x[order], energy[order]


def md_samples(molecule: Molecule, start: Tensor, config: GenerateConfig, out: Path) -> Tensor:
    """MMFF replica-exchange (or plain Langevin) MD at ``config.temperature`` as training data.

    The run directory ``out`` is resumed when it holds a compatible run, so a rerun of an
    interrupted ``generate`` reuses finished MD.

    Args:
        molecule: the molecule (atom order of ``start`` and of the frames).
        start: ``[N, 3]`` nm starting conformer.
        config: the run settings (``md_ns`` per replica, ``replicas``, ``t_max``, ``energy``,
            ``seed``).
        out: MD run directory.

    Returns:
        ``[F, N, 3]`` float64 frames in nm of the replica at ``config.temperature``.
    """
    system = mmff_openmm_system(molecule.rdkit_mol, variant=config.variant)
    topology = to_mdtraj(molecule, start[None]).topology
    md_system = MDSystem.from_openmm(
        system, start.numpy(), topology, f"smiles:{config.smiles}", f"{config.variant} (OpenMM)"
    )
    md_config = MDConfig(
        temperature=config.temperature,
        ns=config.md_ns,
        stride_ps=STRIDE_PS,
        chunk_frames=250,
        equilibration_ps=5.0,
        seed=config.seed + 1,
    )
    ladder = None
    if config.replicas > 1:
        ladder = ReplicaConfig(
            n_replicas=config.replicas, t_max=config.t_max, exchange_ps=STRIDE_PS
        )
    resume = (out / "metadata.json").exists()
    result = run_md(
        md_system, md_config, out, replicas=ladder, resume=resume, progress=config.progress
    )
    return torch.from_numpy(read_frames(result.trajectory).positions).double()
