"""Shared output of the benchmark scripts: a metric table on stdout and the flat ``--json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from confflow.atomic import write_json

__all__ = ["report_metrics"]


def report_metrics(out: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """Prints ``out`` as a two-column Markdown table and writes it as JSON to ``path``.

    Non-finite floats become ``None`` (JSON has no NaN).

    Returns:
        The cleaned mapping.
    """
    clean = {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()
    }
    width = max(len("metric"), *(len(k) for k in clean))
    print(f"| {'metric':<{width}} | {'value':>14} |\n|{'-' * (width + 2)}|{'-' * 16}|")
    for key, value in clean.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"| {key:<{width}} | {text:>14} |")
    if path is not None:
        write_json(path, clean)
    return clean
