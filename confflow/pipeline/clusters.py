"""Where the tasks run: an embedded LocalCluster, an existing scheduler, or SLURM.

SLURM goes through :class:`dask_jobqueue.SLURMCluster`, configured from a YAML file (see
``slurm/jobqueue.yaml``)::

    slurm:
      partition: gpu          # required
      walltime: "02:00:00"    # required
      memory: 16GB            # required, per job
      cores: 4                # required, per job
      gpus: 1                 # required: --gres=gpu:N, and Dask resource GPU=N per worker
      adapt: {minimum-jobs: 0, maximum-jobs: 8}   # required
      account: null           # optional, and the keys of OPTIONAL_KEYS
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from confflow.pipeline.config import PipelineError

__all__ = ["CLUSTER_KINDS", "ClusterHandle", "SlurmSettings", "load_jobqueue", "open_cluster"]

CLUSTER_KINDS = ("local", "slurm")
REQUIRED_KEYS = ("partition", "walltime", "memory", "cores", "gpus", "adapt")
OPTIONAL_KEYS = (
    "account",
    "processes",
    "job-extra",
    "job-script-prologue",
    "local-directory",
    "log-directory",
    "python",
    "interface",
    "scheduler-host",
    "worker-start-timeout",
)


@dataclass(frozen=True)
class SlurmSettings:
    """A validated ``slurm`` section of a jobqueue YAML file (see the module docstring).

    Attributes:
        partition, account, walltime (``HH:MM:SS``), memory (per job, e.g. ``"16GB"``),
        cores (per job), processes (Dask workers per job), gpus (per job), job_extra (extra
        ``#SBATCH`` directives), job_script_prologue (shell lines before the worker),
        local_directory, log_directory, python (worker interpreter), interface (network
        interface of scheduler and workers), scheduler_host, minimum_jobs, maximum_jobs,
        worker_start_timeout (s to wait for the first worker).
    """

    partition: str
    walltime: str
    memory: str
    cores: int
    gpus: int
    minimum_jobs: int
    maximum_jobs: int
    account: str | None = None
    processes: int = 1
    job_extra: list[str] = field(default_factory=list)
    job_script_prologue: list[str] = field(default_factory=list)
    local_directory: str | None = None
    log_directory: str | None = None
    python: str | None = None
    interface: str | None = None
    scheduler_host: str | None = None
    worker_start_timeout: float = 300.0

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`dask_jobqueue.SLURMCluster`."""
        directives = [f"--gres=gpu:{self.gpus}"] if self.gpus else []
        kwargs: dict[str, Any] = {
            "queue": self.partition,
            "account": self.account,
            "walltime": self.walltime,
            "memory": self.memory,
            "cores": self.cores,
            "processes": self.processes,
            "job_extra_directives": directives + list(self.job_extra),
            "job_script_prologue": list(self.job_script_prologue),
            "worker_extra_args": (
                ["--resources", f"GPU={self.gpus // self.processes}"] if self.gpus else []
            ),
            "local_directory": self.local_directory,
            "log_directory": self.log_directory,
            "interface": self.interface,
            "scheduler_options": {"dashboard_address": ":0"},
        }
        if self.python is not None:
            kwargs["python"] = self.python
        if self.scheduler_host is not None:
            kwargs["scheduler_options"]["host"] = self.scheduler_host
        return kwargs


def _check_type(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PipelineError(f"{where}: expected {what}, got {value!r}")


def load_jobqueue(path: str | Path) -> SlurmSettings:
    """Reads and validates the ``slurm`` section of a jobqueue YAML file.

    Raises:
        PipelineError: unreadable file, invalid YAML, a missing or unknown key, a bad value.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise PipelineError(f"jobqueue {path}: cannot read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise PipelineError(f"jobqueue {path}: invalid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(data, dict) or not isinstance(data.get("slurm"), dict):
        raise PipelineError(f"jobqueue {path}: missing the 'slurm' section")
    section = data["slurm"]
    missing = [k for k in REQUIRED_KEYS if k not in section]
    if missing:
        listed = ", ".join(f"slurm.{k}" for k in missing)
        raise PipelineError(f"jobqueue {path}: missing keys {listed}")
    unknown = sorted(set(section) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        listed = ", ".join(f"slurm.{k}" for k in unknown)
        raise PipelineError(f"jobqueue {path}: unknown keys {listed}")
    adapt = section["adapt"]
    if not isinstance(adapt, dict) or not {"minimum-jobs", "maximum-jobs"} <= set(adapt):
        raise PipelineError(
            f"jobqueue {path}: slurm.adapt needs minimum-jobs and maximum-jobs, got {adapt!r}"
        )
    where = f"jobqueue {path}: slurm"
    for key in ("partition", "walltime", "memory"):
        _check_type(f"{where}.{key}", section[key], str, "a string")
    for key in ("cores", "gpus"):
        _check_type(f"{where}.{key}", section[key], int, "an integer")
    low, high = adapt["minimum-jobs"], adapt["maximum-jobs"]
    _check_type(f"{where}.adapt.minimum-jobs", low, int, "an integer")
    _check_type(f"{where}.adapt.maximum-jobs", high, int, "an integer")
    if section["cores"] < 1 or section["gpus"] < 0 or not 0 <= low <= high or high < 1:
        raise PipelineError(
            f"{where}: need cores >= 1, gpus >= 0 and 0 <= minimum-jobs <= maximum-jobs >= 1"
        )
    options = {k.replace("-", "_"): v for k, v in section.items() if k in OPTIONAL_KEYS}
    for key in ("job_extra", "job_script_prologue"):
        if key in options:
            value = options[key]
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise PipelineError(f"{where}.{key.replace('_', '-')}: expected a list of strings")
    processes = options.get("processes", 1)
    _check_type(f"{where}.processes", processes, int, "an integer")
    if processes < 1 or section["gpus"] % processes:
        raise PipelineError(f"{where}.processes: must be >= 1 and divide gpus, got {processes}")
    return SlurmSettings(
        partition=section["partition"],
        walltime=section["walltime"],
        memory=section["memory"],
        cores=section["cores"],
        gpus=section["gpus"],
        minimum_jobs=low,
        maximum_jobs=high,
        **options,
    )


@dataclass
class ClusterHandle:
    """An open Dask client with what the pipeline needs to know about its cluster.

    Attributes:
        client: the :class:`distributed.Client`.
        description: one line for the user (kind, workers).
        dashboard: the dashboard address (``None`` when the cluster serves none).
        gpus: workers declare a ``GPU`` resource, so training tasks request ``GPU=1``.
        job_script: the sbatch script of a SLURM cluster (``None`` otherwise).
    """

    client: Any
    description: str
    dashboard: str | None
    gpus: bool
    job_script: str | None = None


def _sbatch_test(script: str) -> None:
    """``sbatch --test-only``: a rejected job otherwise surfaces only as a worker timeout."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise PipelineError("--cluster slurm: sbatch is not on PATH")
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as handle:
        handle.write(script)
        handle.flush()
        proc = subprocess.run(
            [sbatch, "--test-only", handle.name], capture_output=True, text=True, timeout=60
        )
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise PipelineError(f"--cluster slurm: sbatch rejects the job script ({reason[-1]})")


@contextlib.contextmanager
def _slurm(settings: SlurmSettings) -> Iterator[ClusterHandle]:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    with SLURMCluster(**settings.cluster_kwargs()) as cluster:
        script = cluster.job_script()
        _sbatch_test(script)
        cluster.adapt(minimum_jobs=settings.minimum_jobs, maximum_jobs=settings.maximum_jobs)
        with Client(cluster) as client:
            try:
                client.wait_for_workers(1, timeout=settings.worker_start_timeout)
            except TimeoutError as err:
                raise PipelineError(
                    f"--cluster slurm: no worker started within {settings.worker_start_timeout:g}"
                    " s (check squeue and the job logs)"
                ) from err
            description = (
                f"SLURM ({settings.partition}): {settings.minimum_jobs}-{settings.maximum_jobs}"
                f" jobs of {settings.cores} cores, {settings.gpus} GPUs"
            )
            yield ClusterHandle(
                client, description, client.dashboard_link, settings.gpus > 0, script
            )


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


@contextlib.contextmanager
def open_cluster(
    kind: str = "local",
    *,
    scheduler: str | None = None,
    jobqueue: str | Path | None = None,
    workers: int | None = None,
    timeout: float = 10.0,
) -> Iterator[ClusterHandle]:
    """Opens the cluster the pipeline runs on, closing it (and its jobs) on exit.

    Args:
        kind: ``"local"`` (embedded :class:`distributed.LocalCluster`, one single-threaded
            worker process per core unless ``workers``) or ``"slurm"``.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); overrides
            ``kind``.
        jobqueue: the YAML file of ``kind="slurm"``.
        workers: worker processes of a local cluster.
        timeout: s to wait for an existing scheduler.

    Yields:
        The :class:`ClusterHandle`.

    Raises:
        PipelineError: unknown kind, bad jobqueue file, unreachable scheduler, no workers.
    """
    from distributed import Client, LocalCluster

    if kind not in CLUSTER_KINDS:
        choices = " or ".join(CLUSTER_KINDS)
        raise PipelineError(f"--cluster {kind!r}: unknown kind; choose {choices}")
    if workers is not None and workers < 1:
        raise PipelineError(f"--workers: must be >= 1, got {workers}")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as err:
            raise PipelineError(
                f"--scheduler {scheduler}: cannot reach a Dask scheduler within {timeout:g} s"
            ) from err
        with client:
            info = client.scheduler_info()["workers"].values()
            gpus = any(w.get("resources", {}).get("GPU", 0) > 0 for w in info)
            description = f"Dask scheduler {scheduler}: {len(info)} workers"
            yield ClusterHandle(client, description, client.dashboard_link, gpus)
        return
    if kind == "slurm":
        if jobqueue is None:
            raise PipelineError("--cluster slurm: needs --jobqueue FILE (see slurm/jobqueue.yaml)")
        with _slurm(load_jobqueue(jobqueue)) as handle:
            yield handle
        return
    n_workers = workers or os.cpu_count() or 1
    n_gpus = _local_gpus()
    resources = {"GPU": 1} if n_gpus else None
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            resources=resources,
        ) as cluster,
        Client(cluster) as client,
    ):
        description = f"LocalCluster: {n_workers} worker processes, {n_gpus} GPUs"
        yield ClusterHandle(client, description, client.dashboard_link, n_gpus > 0)
