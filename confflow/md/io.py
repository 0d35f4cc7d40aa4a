"""Run directories: atomic HDF5 chunks with checkpoints, JSON metadata, resume, final merge.

Layout of a run directory ``out/``::

    metadata.json          system, force field, settings, seed, confflow version, progress
    chunks/000000.state    driver checkpoint after chunk 0 (OpenMM checkpoint bytes etc.)
    chunks/000000.h5       frames of chunk 0 (mdtraj HDF5: nm, ps, kJ/mol, K)
    ...
    trajectory.h5          all frames, written when the run completes (chunks are then removed)

Every file is written under a temporary name and renamed into place (:mod:`confflow.atomic`),
so a file that exists is complete. A chunk counts once its ``.h5`` exists; its ``.state`` is
renamed first, so a committed chunk always has its checkpoint. A run killed at any moment
(``SIGKILL`` included) resumes from the last committed chunk: later chunks and half-written
files are deleted and the driver restarts from that chunk's checkpoint, so no frame is missing
or duplicated.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
from mdtraj.formats import HDF5TrajectoryFile

from confflow import __version__
from confflow.atomic import atomic_path, remove_temporaries, write_bytes, write_text
from confflow.md.config import MDInputError

__all__ = ["Frames", "RunDirectory", "read_frames"]

_METADATA = "metadata.json"
_TRAJECTORY = "trajectory.h5"
_CHUNKS = "chunks"


@dataclass(frozen=True)
class Frames:
    """A block of stored frames.

    Attributes:
        positions: ``[F, N, 3]`` positions in nm.
        time: ``[F]`` simulation time in ps (production time, from 0).
        potential_energy: ``[F]`` potential energies in kJ/mol.
        kinetic_energy: ``[F]`` kinetic energies in kJ/mol.
        temperature: ``[F]`` instantaneous kinetic temperatures in K.
    """

    positions: np.ndarray
    time: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    temperature: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def _write_h5(path: Path, topology: mdtraj.Topology, frames: Frames) -> None:
    with atomic_path(path) as tmp, HDF5TrajectoryFile(str(tmp), "w") as handle:
        handle.topology = topology
        handle.write(
            coordinates=frames.positions.astype(np.float32),
            time=frames.time,
            potentialEnergy=frames.potential_energy,
            kineticEnergy=frames.kinetic_energy,
            temperature=frames.temperature,
        )


def read_frames(path: str | Path) -> Frames:
    """Reads a run's ``trajectory.h5`` (or one chunk) into :class:`Frames`.

    Positions come back as stored (float32, nm); energies in kJ/mol.
    """
    with HDF5TrajectoryFile(str(path), "r") as handle:
        data = handle.read()
    return Frames(
        positions=np.asarray(data.coordinates),
        time=np.asarray(data.time, dtype=np.float64),
        potential_energy=np.asarray(data.potentialEnergy, dtype=np.float64),
        kinetic_energy=np.asarray(data.kineticEnergy, dtype=np.float64),
        temperature=np.asarray(data.temperature, dtype=np.float64),
    )


class RunDirectory:
    """The output directory of one MD or replica-exchange run.

    Args:
        out: directory (created if missing).
        topology: topology written into every HDF5 file.
        run: JSON-ready description of the run (system, settings); a resumed run must match.

    Raises:
        MDInputError: ``out`` cannot be created or written.
    """

    def __init__(self, out: str | Path, topology: mdtraj.Topology, run: dict[str, Any]) -> None:
        self.out = Path(out)
        self.topology = topology
        self.run = json.loads(json.dumps(run))
        try:
            (self.out / _CHUNKS).mkdir(parents=True, exist_ok=True)
            probe = self.out / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise MDInputError(
                f"out: cannot write to {self.out} ({err.strerror or type(err).__name__})"
            ) from err

    @property
    def trajectory_path(self) -> Path:
        """Path of the merged trajectory (exists once the run is complete)."""
        return self.out / _TRAJECTORY

    @property
    def metadata_path(self) -> Path:
        """Path of the JSON metadata."""
        return self.out / _METADATA

    def _chunk(self, index: int, suffix: str) -> Path:
        return self.out / _CHUNKS / f"{index:06d}{suffix}"

    def read_metadata(self) -> dict[str, Any]:
        """The metadata JSON as a dict (empty when there is none)."""
        if not self.metadata_path.exists():
            return {}
        return json.loads(self.metadata_path.read_text())

    def write_metadata(self, **progress: Any) -> None:
        """Writes ``metadata.json`` atomically: the run description plus ``progress`` fields."""
        meta = {"confflow_version": __version__, **self.run, **progress}
        write_text(self.metadata_path, json.dumps(meta, indent=2))

    def start(self, resume: bool) -> tuple[int, int, dict[str, np.ndarray] | None]:
        """Prepares the directory for a fresh or resumed run.

        Args:
            resume: continue the run already in the directory.

        Returns:
            ``(chunks_done, frames_done, state)``: committed chunks and frames, and the
            driver checkpoint after the last committed chunk (``None`` when starting fresh).

        Raises:
            MDInputError: a fresh start in a directory that holds a run, a resume without
                a run, or a resume whose system or settings differ from the stored ones.
        """
        previous = self.read_metadata()
        if not resume:
            if previous or self.trajectory_path.exists() or self._committed():
                raise MDInputError(
                    f"out: {self.out} already holds a run; pass --resume or use another directory"
                )
            self._remove_temporaries()
            self.write_metadata(complete=False, n_frames_done=0)
            return 0, 0, None
        self.check_resumable(previous)
        self._remove_temporaries()
        committed = self._committed()
        self._remove_uncommitted(len(committed))
        if not committed:
            return 0, 0, None
        frames_done = sum(self._chunk_length(i) for i in committed)
        with np.load(self._chunk(committed[-1], ".state"), allow_pickle=False) as data:
            state = {key: data[key] for key in data.files}
        return len(committed), frames_done, state

    def check_resumable(self, previous: dict[str, Any]) -> None:
        """Checks that the stored metadata ``previous`` describe this run.

        Raises:
            MDInputError: no stored run, or its system or settings differ.
        """
        if not previous:
            raise MDInputError(f"out: {self.out} holds no run to resume (no {_METADATA})")
        stored = {key: previous.get(key) for key in self.run}
        if stored != self.run:
            changed = sorted(k for k in self.run if stored[k] != self.run[k])
            raise MDInputError(
                f"out: cannot resume {self.out}: {', '.join(changed)} differ from the stored run"
            )

    def _committed(self) -> list[int]:
        indices = []
        while self._chunk(len(indices), ".h5").exists():
            indices.append(len(indices))
        return indices

    def _chunk_length(self, index: int) -> int:
        with HDF5TrajectoryFile(str(self._chunk(index, ".h5")), "r") as handle:
            return len(handle)

    def _remove_temporaries(self) -> None:
        """Deletes half-written ``metadata.json`` and ``trajectory.h5`` of a killed run."""
        for name in (_METADATA, _TRAJECTORY):
            remove_temporaries(self.out / name)

    def _remove_uncommitted(self, n_committed: int) -> None:
        for path in (self.out / _CHUNKS).iterdir():
            stem = path.name.split(".")[0]
            stale = path.name.startswith(".") or not stem.isdigit() or int(stem) >= n_committed
            if stale or (path.suffix == ".state" and int(stem) < n_committed - 1):
                path.unlink()

    def write_chunk(self, index: int, frames: Frames, state: dict[str, np.ndarray]) -> None:
        """Commits chunk ``index``: its checkpoint ``state``, then its frames (both atomic).

        The previous chunk's checkpoint is deleted afterwards; only the latest one is needed.
        """
        buffer = io.BytesIO()
        np.savez(buffer, **state)
        write_bytes(self._chunk(index, ".state"), buffer.getvalue())
        _write_h5(self._chunk(index, ".h5"), self.topology, frames)
        if index > 0:
            with contextlib.suppress(FileNotFoundError):
                self._chunk(index - 1, ".state").unlink()

    def finish(self, **progress: Any) -> Path:
        """Merges the committed chunks into ``trajectory.h5`` and removes them.

        Args:
            progress: extra metadata fields (e.g. wall time, acceptance rates).

        Returns:
            The path of the merged trajectory.
        """
        n_frames = 0
        with atomic_path(self.trajectory_path) as tmp, HDF5TrajectoryFile(str(tmp), "w") as handle:
            handle.topology = self.topology
            for index in self._committed():
                frames = read_frames(self._chunk(index, ".h5"))
                handle.write(
                    coordinates=frames.positions,
                    time=frames.time,
                    potentialEnergy=frames.potential_energy,
                    kineticEnergy=frames.kinetic_energy,
                    temperature=frames.temperature,
                )
                n_frames += len(frames)
        self.write_metadata(complete=True, n_frames_done=n_frames, **progress)
        for path in (self.out / _CHUNKS).iterdir():
            path.unlink()
        (self.out / _CHUNKS).rmdir()
        return self.trajectory_path
