"""The registry of named MD datasets: each a recipe with its expected size and cost.

A recipe is data: the system, the :class:`~confflow.md.MDConfig` (and replica ladder, if any)
and what a run costs. Costs are measured on one core of a 2-core x86-64 CPU with OpenMM's
Reference platform (``aldp`` about 2,500 ns/day, ``aldp-vacuum`` about 9,000, ``aldp-ff96``
60-90, ibuprofen with MMFF94 about 400); other machines scale accordingly.

Names: see :data:`DATASETS`, plus ``smiles:<SMILES>`` for any MMFF94-typable molecule.
"""

from __future__ import annotations

from dataclasses import dataclass

from confflow.energies.systems import ALDP_PHI
from confflow.md.config import MDConfig, MDInputError, ReplicaConfig
from confflow.md.umbrella import UmbrellaConfig

__all__ = ["DATASETS", "DatasetRecipe", "get_recipe"]

_BYTES_PER_COORD = 4  # float32 positions in the HDF5 trajectory
_SMILES_NS_PER_DAY = 400.0


@dataclass(frozen=True)
class DatasetRecipe:
    """How to produce one dataset.

    Attributes:
        name: registry name, also the cache subdirectory.
        system: a name in :data:`confflow.md.NAMED_SYSTEMS` or ``"smiles:<SMILES>"``.
        config: MD settings (temperature, length, stride, seed).
        replicas: replica-exchange ladder, or ``None`` for plain Langevin MD.
        n_atoms: atoms per frame (for the size estimate).
        ns_per_day: measured speed of one replica on one core (Reference platform).
        description: what the dataset is for.
        umbrella: umbrella-sampling windows (``config`` is then each window's run), or
            ``None``; exclusive with ``replicas``.
    """

    name: str
    system: str
    config: MDConfig
    replicas: ReplicaConfig | None
    n_atoms: int
    ns_per_day: float
    description: str
    umbrella: UmbrellaConfig | None = None

    @property
    def n_runs(self) -> int:
        """Simulations the recipe runs side by side or one after another (replicas, windows)."""
        if self.umbrella:
            return self.umbrella.n_windows * self.umbrella.n_chains
        return self.replicas.n_replicas if self.replicas else 1

    @property
    def n_frames(self) -> int:
        """Frames the recipe stores (over all umbrella windows and chains)."""
        return self.config.n_frames * (self.n_runs if self.umbrella else 1)

    @property
    def size_mb(self) -> float:
        """Approximate size of ``trajectory.h5`` in MB (positions plus four per-frame scalars)."""
        return self.n_frames * (self.n_atoms * 3 + 4) * _BYTES_PER_COORD / 1e6

    @property
    def cpu_hours(self) -> float:
        """Expected core-hours at :attr:`ns_per_day` (all replicas, equilibration included)."""
        ns = self.config.ns + self.config.equilibration_ps * 1e-3
        return self.n_runs * ns / self.ns_per_day * 24.0

    def describe(self) -> str:
        """One line: name, method, length, frames, size and cost."""
        method = "MD,"
        if self.replicas:
            method = f"{self.replicas.n_replicas}-replica exchange,"
        if self.umbrella:
            u = self.umbrella
            chains = f"{u.n_chains} chains x " if u.n_chains > 1 else ""
            method = f"umbrella sampling, {chains}{u.n_windows} windows of"
        return (
            f"{self.name}: {method} {self.config.ns:g} ns at {self.config.temperature:g} K, "
            f"{self.n_frames} frames, ~{self.size_mb:.1f} MB, ~{self.cpu_hours:.2g} core-h"
        )


def _aldp(name: str, system: str, ns: float, stride_ps: float, speed: float, text: str):
    config = MDConfig(ns=ns, stride_ps=stride_ps, equilibration_ps=10.0, chunk_frames=500)
    return DatasetRecipe(name, system, config, None, 22, speed, text)


def _aldp_umbrella(name: str, config: MDConfig, umbrella: UmbrellaConfig, text: str):
    """Umbrella sampling on phi of ``aldp`` (2,500 ns/day per core)."""
    return DatasetRecipe(name, "aldp", config, None, 22, 2500.0, text, umbrella)


#: The named datasets.
DATASETS: dict[str, DatasetRecipe] = {
    recipe.name: recipe
    for recipe in (
        _aldp(
            "aldp",
            "aldp",
            10.0,
            0.1,
            2500.0,
            "alanine dipeptide, Amber99SB-ILDN + OBC2, 300 K, frames every 0.1 ps (phi > 0 "
            "is a rare event: not at its equilibrium share in 10 ns)",
        ),
        _aldp(
            "aldp-small",
            "aldp",
            0.02,
            0.1,
            2500.0,
            "fast variant of aldp for tests (20 ps, 200 frames, seconds)",
        ),
        _aldp_umbrella(
            "aldp-reference",
            MDConfig(ns=0.5, stride_ps=0.5, equilibration_ps=50.0, chunk_frames=500),
            UmbrellaConfig(ALDP_PHI, n_windows=72, force_constant=200.0, n_chains=4),
            "aldp reference: umbrella sampling on phi + MBAR, the phi>0 vs phi<0 free energy "
            "with four independent chains (see datasets/README.md)",
        ),
        _aldp_umbrella(
            "aldp-reference-small",
            MDConfig(ns=0.004, stride_ps=0.1, equilibration_ps=0.5, chunk_frames=40),
            UmbrellaConfig(ALDP_PHI, n_windows=8, force_constant=200.0, n_chains=2),
            "fast variant of aldp-reference for tests (2 chains x 8 windows x 4 ps, seconds)",
        ),
        DatasetRecipe(
            "aldp-rex",
            "aldp",
            MDConfig(ns=10.0, stride_ps=0.1, equilibration_ps=100.0, chunk_frames=5000),
            ReplicaConfig(n_replicas=4, t_max=1000.0, exchange_ps=0.1),
            22,
            2500.0,
            "alanine dipeptide 300 K replica of replica exchange 300-1000 K, 10 ns: training "
            "data with both phi basins at their Boltzmann populations",
        ),
        _aldp(
            "aldp-ff96",
            "aldp-ff96",
            1.0,
            0.1,
            75.0,
            "alanine dipeptide, Amber ff96 + OBC1 (openmmtools), 300 K; long runs are GPU jobs",
        ),
        _aldp(
            "aldp-ff96-small",
            "aldp-ff96",
            0.002,
            0.1,
            75.0,
            "fast variant of aldp-ff96 for tests (2 ps, 20 frames)",
        ),
        _aldp(
            "aldp-vacuum",
            "aldp-vacuum",
            10.0,
            1.0,
            9000.0,
            "alanine dipeptide in vacuum, Amber99SB-ILDN, 300 K",
        ),
    )
}


def get_recipe(name: str) -> DatasetRecipe:
    """The recipe called ``name``; ``smiles:<SMILES>`` gives 1 ns of MMFF94 MD at 300 K.

    Raises:
        MDInputError: unknown name.
        MoleculeError: an invalid SMILES.
    """
    if name.startswith("smiles:"):
        from confflow.chem import Molecule

        n_atoms = Molecule.from_smiles(name.removeprefix("smiles:"), stereo="first").n_atoms
        config = MDConfig(ns=1.0, stride_ps=1.0, equilibration_ps=10.0, chunk_frames=500)
        return DatasetRecipe(
            name, name, config, None, n_atoms, _SMILES_NS_PER_DAY, "MMFF94 MD of a SMILES, 300 K"
        )
    if name not in DATASETS:
        raise MDInputError(
            f"dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
            "or smiles:<SMILES>"
        )
    return DATASETS[name]
