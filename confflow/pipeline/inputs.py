"""Input files of a pipeline run: SMILES per line (optional name) or a multi-record SDF."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rdkit import Chem, rdBase

from confflow.chem import Molecule, MoleculeError
from confflow.pipeline.config import PipelineError

__all__ = ["MoleculeInput", "read_inputs"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class MoleculeInput:
    """One molecule of the input.

    Attributes:
        index: 1-based position in the input file.
        name: unique, file-system-safe name (its output folder).
        smiles: the SMILES (as written, or from the SDF record); validated by the featurize
            stage, so a bad one fails that molecule only.
        error: why the record could not be read (SDF), else ``None``.
    """

    index: int
    name: str
    smiles: str
    error: str | None = None


def _safe(name: str, index: int) -> str:
    cleaned = _UNSAFE.sub("_", name).strip("._")[:64]
    return cleaned or f"mol-{index:05d}"


def _unique(items: list[tuple[str, str, str | None]]) -> list[MoleculeInput]:
    seen: set[str] = set()
    out = []
    for i, (name, smiles, error) in enumerate(items, start=1):
        safe = _safe(name, i)
        if safe in seen:
            safe = f"{safe}-{i:05d}"
        seen.add(safe)
        out.append(MoleculeInput(i, safe, smiles, error))
    return out


def _read_smiles(text: str) -> list[tuple[str, str, str | None]]:
    items = []
    for line in text.splitlines():
        fields = line.split(maxsplit=1)
        if not fields or fields[0].startswith("#"):
            continue
        if not items and fields[0].lower() == "smiles":  # header line
            continue
        name = fields[1].strip() if len(fields) > 1 else ""
        items.append((name or f"mol-{len(items) + 1:05d}", fields[0], None))
    return items


def _read_sdf(path: Path) -> list[tuple[str, str, str | None]]:
    items = []
    with rdBase.BlockLogs():
        records = list(Chem.ForwardSDMolSupplier(str(path), removeHs=False, sanitize=True))
    for i, mol in enumerate(records, start=1):
        default = f"mol-{i:05d}"
        if mol is None:
            items.append((default, "", f"SDF record {i}: unreadable or invalid"))
            continue
        name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        try:
            smiles = Molecule.from_rdkit(mol).smiles
        except MoleculeError as err:
            items.append((name or default, "", f"SDF record {i}: {err}"))
            continue
        items.append((name or default, smiles, None))
    return items


def read_inputs(path: str | Path) -> list[MoleculeInput]:
    """Reads the molecules of a pipeline input file.

    ``.sdf``/``.sdf``-like files are read record by record (3-D stereo kept); any other file
    is SMILES per line, optionally followed by a name; blank lines and ``#`` comments are
    skipped, as is a first line starting with ``smiles``.

    Args:
        path: the input file.

    Returns:
        The molecules in file order, with unique folder-safe names.

    Raises:
        PipelineError: the file is missing, unreadable, or holds no molecule.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".sdf", ".sd", ".mol"):
            with path.open("rb"):
                pass
            items = _read_sdf(path)
        else:
            items = _read_smiles(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not a text file"
        raise PipelineError(f"input {path}: cannot read ({reason})") from err
    if not items:
        raise PipelineError(f"input {path}: no molecules in the file")
    return _unique(items)
