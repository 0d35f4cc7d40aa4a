"""Pipelines over many molecules on Dask: stages as tasks, a manifest, idempotent reruns.

* :mod:`~confflow.pipeline.config` — the stage settings and :class:`PipelineError`;
* :mod:`~confflow.pipeline.inputs` — SMILES-per-line and SDF input files;
* :mod:`~confflow.pipeline.stages` — featurize, reference, train, sample, reweight, write;
* :mod:`~confflow.pipeline.clusters` — LocalCluster, an existing scheduler, or SLURM;
* :mod:`~confflow.pipeline.runner` — submission, progress, manifest;
* :mod:`~confflow.pipeline.files` — checksums of produced files (written with
  :mod:`confflow.atomic`).
"""

from confflow.pipeline.clusters import (
    CLUSTER_KINDS,
    ClusterHandle,
    SlurmSettings,
    load_jobqueue,
    open_cluster,
)
from confflow.pipeline.config import PipelineConfig, PipelineError
from confflow.pipeline.inputs import MoleculeInput, read_inputs
from confflow.pipeline.runner import RunSummary, run_pipeline, summary_rows
from confflow.pipeline.stages import STAGES

__all__ = [
    "CLUSTER_KINDS",
    "STAGES",
    "ClusterHandle",
    "MoleculeInput",
    "PipelineConfig",
    "PipelineError",
    "RunSummary",
    "SlurmSettings",
    "load_jobqueue",
    "open_cluster",
    "read_inputs",
    "run_pipeline",
    "summary_rows",
]
