from pathlib import Path

import pytest

from confflow.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny() -> PipelineConfig:
    """Seconds per molecule: 8 seeds, no MD, 1 s of training, 64 samples."""
    return PipelineConfig(n_seeds=8, md_ns=0.0, budget=1.0, n_samples=64, device="cpu")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
