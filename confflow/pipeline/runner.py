"""Runs the stages over every molecule of an input file on a Dask cluster.

Each stage of each molecule is one task (``client.submit`` with ``retries``; training
requests ``resources={"GPU": 1}`` on clusters with GPUs). Molecules whose ``result.json``
matches their outputs are skipped; the manifest (``manifest.json`` and ``manifest.csv`` in
the output folder) is rewritten atomically as molecules finish.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confflow.atomic import write_json, write_text
from confflow.pipeline.config import PipelineConfig, PipelineError
from confflow.pipeline.inputs import MoleculeInput, read_inputs
from confflow.pipeline.stages import STAGES, is_complete

__all__ = ["MANIFEST_COLUMNS", "RunSummary", "run_pipeline", "summary_rows"]

#: Columns of ``manifest.csv`` (``t_<stage>``: seconds of the stage).
MANIFEST_COLUMNS = [
    "index",
    "name",
    "smiles",
    "status",
    "reused",
    "failed_stage",
    "error",
    "ess",
    "ess_samples",
    "largest_weight",
    "n_kept",
    "energy_min",
    *(f"t_{stage}" for stage in STAGES),
    "dir",
]


@dataclass
class RunSummary:
    """Outcome of :func:`run_pipeline`.

    Attributes:
        records: one manifest record per input molecule, in input order.
        manifest: path of ``manifest.json`` (``manifest.csv`` lies next to it).
        seconds: wall time of the run.
        submitted: molecules whose stages were submitted (the rest were complete or unreadable).
    """

    records: list[dict[str, Any]]
    manifest: Path
    seconds: float
    submitted: int

    @property
    def counts(self) -> dict[str, int]:
        """Molecules per status (``done``, ``failed``)."""
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        return counts


def _record(item: MoleculeInput, root: Path, state: dict[str, Any], reused: bool) -> dict:
    metrics = state.get("metrics", {})
    record: dict[str, Any] = {
        "index": item.index,
        "name": item.name,
        "smiles": item.smiles,
        "status": state["status"],
        "reused": reused,
        "failed_stage": state.get("failed_stage"),
        "error": state.get("error"),
    }
    for key in ("ess", "ess_samples", "largest_weight", "n_kept", "energy_min"):
        record[key] = metrics.get(key)
    for stage in STAGES:
        record[f"t_{stage}"] = state.get("timings", {}).get(stage)
    record["dir"] = str(root)
    return record


def _write_manifest(out: Path, run: dict[str, Any], records: Iterable[dict]) -> Path:
    rows = sorted(records, key=lambda r: r["index"])
    write_json(out / "manifest.json", {"run": run, "molecules": rows})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "manifest.csv", buffer.getvalue())
    return out / "manifest.json"


def _progress(show: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "{task.description:<10}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
    )


def run_pipeline(
    input_path: str | Path,
    out: str | Path,
    config: PipelineConfig,
    client: Any,
    *,
    gpus: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Runs featurize -> reference -> train -> sample -> reweight -> write per molecule.

    Args:
        input_path: SMILES-per-line or SDF file (see :func:`~confflow.pipeline.read_inputs`).
        out: output folder: ``molecules/<name>/`` per molecule, ``manifest.json``/``.csv``.
        config: the stage settings.
        client: a connected :class:`distributed.Client`.
        gpus: the workers declare ``GPU`` resources; training tasks then request one.
        progress: show one progress bar per stage on stderr.

    Returns:
        The :class:`RunSummary`. A molecule that fails is recorded with its stage and reason;
        the others go on.

    Raises:
        PipelineError: unreadable or empty input, unwritable output folder.
    """
    from distributed import as_completed

    start = time.perf_counter()
    items = read_inputs(input_path)
    out = Path(out)
    try:
        (out / "molecules").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PipelineError(f"--out {out}: cannot create ({err.strerror})") from err
    run = {"input": str(input_path), "config": config.to_dict(), "molecules": len(items)}
    records: dict[int, dict] = {}
    token = uuid.uuid4().hex[:8]
    owner: dict[str, tuple[MoleculeInput, str]] = {}
    futures = []
    for item in items:
        root = out / "molecules" / item.name
        key = config.fingerprint(item.smiles)
        if item.error is not None:
            state = {"status": "failed", "failed_stage": "input", "error": item.error}
            records[item.index] = _record(item, root, state, reused=False)
            continue
        done = is_complete(root, key)
        if done is not None:
            records[item.index] = _record(item, root, done, reused=True)
            continue
        state: Any = {
            "name": item.name,
            "smiles": item.smiles,
            "dir": str(root),
            "key": key,
            "status": "running",
            "timings": {},
            "metrics": {},
        }
        for rank, (stage, fn) in enumerate(STAGES.items()):
            resources = {"GPU": 1} if gpus and stage == "train" else None
            state = client.submit(
                fn,
                state,
                config,
                key=f"{stage}-{item.name}-{token}",
                retries=config.retries,
                resources=resources,
                priority=rank,
            )
            owner[state.key] = (item, stage)
            futures.append(state)
    submitted = len(futures) // len(STAGES)
    _write_manifest(out, run, records.values())
    with _progress(progress) as bar:
        bars = {s: bar.add_task(s, total=submitted) for s in STAGES}
        for future in as_completed(futures):
            item, stage = owner[future.key]
            bar.advance(bars[stage])
            root = out / "molecules" / item.name
            if future.status == "error":
                if item.index not in records:
                    error = future.exception()
                    reason = f"{type(error).__name__}: {error}".splitlines()[0]
                    state = {"status": "failed", "failed_stage": stage, "error": reason}
                    records[item.index] = _record(item, root, state, reused=False)
                    _write_manifest(out, run, records.values())
            elif stage == "write" and item.index not in records:
                records[item.index] = _record(item, root, future.result(), reused=False)
                _write_manifest(out, run, records.values())
            future.release()
    rows = sorted(records.values(), key=lambda r: r["index"])
    manifest = _write_manifest(out, run, rows)
    return RunSummary(rows, manifest, time.perf_counter() - start, submitted)


def summary_rows(summary: RunSummary) -> list[tuple[str, ...]]:
    """Rows of the end-of-run table: name, status, ESS %, effective samples, seconds, note."""
    rows = []
    for r in summary.records:
        seconds = sum(r[f"t_{s}"] or 0.0 for s in STAGES)
        ess = "" if r["ess"] is None else f"{100 * r['ess']:.1f}"
        n_eff = "" if r["ess_samples"] is None else f"{r['ess_samples']:.1f}"
        note = "reused" if r["reused"] else ""
        if r["status"] == "failed":
            note = f"{r['failed_stage']}: {r['error']}"
        rows.append((r["name"], r["status"], ess, n_eff, f"{seconds:.1f}", note))
    return rows
