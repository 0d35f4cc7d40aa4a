"""The PNG plots are written and are images of the expected size."""

import math

import pytest
import torch

from confflow.reweighting.plots import free_energy_profile, log_weight_histogram, ramachandran

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path):
    gen = torch.Generator().manual_seed(0)
    phi = (torch.rand(2000, generator=gen) * 2 - 1) * math.pi
    psi = (torch.rand(2000, generator=gen) * 2 - 1) * math.pi
    lw = -0.5 * phi**2
    paths = [
        ramachandran(tmp_path / "rama.png", (phi, psi), (phi, psi), lw),
        free_energy_profile(tmp_path / "profile.png", phi, lw, n_bootstrap=20, reference=phi),
        log_weight_histogram(tmp_path / "lw.png", lw),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
        assert path.stat().st_size > 5_000


def test_plot_path_must_be_png(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.png"):
        log_weight_histogram(tmp_path / "lw.pdf", torch.zeros(5))
