from pathlib import Path

import pytest

from confflow.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny() -> PipelineConfig:
    """Seconds per molecule: 8 seeds, a 2-layer flow of 16 units, 10 steps, 64 samples."""
    return PipelineConfig(
        n_conformers=8,
        layers=2,
        bins=4,
        hidden=(16,),
        steps=10,
        batch_size=16,
        kl_batch_size=16,
        n_samples=64,
        device="cpu",
    )


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
