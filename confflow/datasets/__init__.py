"""Named MD datasets: recipes with size and cost, a cache, and time-block train/val/test splits.

Example:
    >>> from confflow.datasets import get_recipe
    >>> get_recipe("aldp-small").n_frames
    200
"""

from confflow.datasets.analysis import (
    backbone_torsions,
    phi_free_energy,
    reference_phi_free_energy,
)
from confflow.datasets.registry import DATASETS, DatasetRecipe, get_recipe
from confflow.datasets.store import (
    CACHE_ENV,
    DatasetSplits,
    cache_dir,
    dataset_path,
    generate,
    load,
    time_block_split,
)

__all__ = [
    "CACHE_ENV",
    "DATASETS",
    "DatasetRecipe",
    "DatasetSplits",
    "backbone_torsions",
    "cache_dir",
    "dataset_path",
    "generate",
    "get_recipe",
    "load",
    "phi_free_energy",
    "reference_phi_free_energy",
    "time_block_split",
]
