"""Diagnostic plots of Boltzmann generators, written as PNG (matplotlib's Agg canvas).

* :func:`ramachandran` — phi/psi densities of MD, flow samples, and reweighted flow samples;
* :func:`free_energy_profile` — ``F(s) = -log p(s)`` (kT) along a collective variable, with a
  bootstrap band, optionally against a reference (MD);
* :func:`log_weight_histogram` — the distribution of log-weights (heavy tails show here).

All functions take float tensors or arrays, write the PNG atomically (:mod:`confflow.atomic`),
return its path, and never touch matplotlib's global backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from confflow.atomic import atomic_path
from confflow.reweighting.free_energy import free_energy_curve
from confflow.reweighting.weights import kish_ess, normalized_weights

__all__ = ["free_energy_profile", "log_weight_histogram", "ramachandran"]

_ArrayLike = np.ndarray | torch.Tensor


def _np(a: _ArrayLike) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _weights(log_w: _ArrayLike | None, n: int) -> np.ndarray:
    if log_w is None:
        return np.full(n, 1.0 / n)
    return normalized_weights(torch.as_tensor(_np(log_w))).numpy()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot path {path}: must end in .png")
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path


def ramachandran(
    path: str | Path,
    md: tuple[_ArrayLike, _ArrayLike],
    flow: tuple[_ArrayLike, _ArrayLike],
    log_w: _ArrayLike,
    bins: int = 60,
) -> Path:
    """Three panels of ``-log p(phi, psi)`` (kT): MD, flow, flow reweighted to the target.

    Args:
        path: output ``.png``.
        md: ``(phi [T], psi [T])`` rad of MD frames.
        flow: ``(phi [N], psi [N])`` rad of flow samples.
        log_w: ``[N]`` log-weights of the flow samples.
        bins: histogram bins per axis.
    """
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    n = len(_np(flow[0]))
    panels = (
        ("MD", md, _weights(None, len(_np(md[0])))),
        ("flow", flow, _weights(None, n)),
        ("flow, reweighted", flow, _weights(log_w, n)),
    )
    fig = Figure(figsize=(12, 4), layout="constrained")
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    for ax, (title, (phi, psi), w) in zip(axes, panels, strict=True):
        hist, _, _ = np.histogram2d(_np(phi), _np(psi), bins=[edges, edges], weights=w)
        with np.errstate(divide="ignore"):
            free = -np.log(hist / hist.sum())
        free -= np.nanmin(free[np.isfinite(free)]) if np.isfinite(free).any() else 0.0
        image = ax.pcolormesh(edges, edges, free.T, vmin=0, vmax=10, cmap="viridis")
        ax.set_title(title)
        ax.set_xlabel("phi (rad)")
    axes[0].set_ylabel("psi (rad)")
    fig.colorbar(image, ax=axes, label="free energy (kT)")
    return _save(fig, path)


def free_energy_profile(
    path: str | Path,
    cv: _ArrayLike,
    log_w: _ArrayLike,
    bins: int = 50,
    n_bootstrap: int = 100,
    reference: _ArrayLike | None = None,
    label: str = "phi (rad)",
    seed: int = 0,
) -> Path:
    """``F(s) = -log p(s)`` (kT, minimum at 0) of reweighted samples with a 68% bootstrap band.

    The curve is :func:`~confflow.reweighting.free_energy_curve`'s, shifted to minimum 0.

    Args:
        path: output ``.png``.
        cv: ``[N]`` collective variable of the flow samples (rad for torsions).
        log_w: ``[N]`` log-weights.
        bins: histogram bins over ``[min, max]`` of the data (``[-pi, pi]`` for rad labels).
        n_bootstrap: bootstrap replicates for the band.
        reference: optional ``[T]`` unweighted reference samples (MD) of the same variable.
        label: axis label.
        seed: bootstrap seed.
    """
    s = torch.as_tensor(_np(cv))
    if "rad" in label:
        edges = torch.linspace(-math.pi, math.pi, bins + 1, dtype=torch.float64)
    else:
        edges = torch.linspace(float(s.min()), float(s.max()), bins + 1, dtype=torch.float64)
    curve = free_energy_curve(
        s,
        torch.as_tensor(_np(log_w)),
        edges,
        n_bootstrap=n_bootstrap,
        generator=torch.Generator().manual_seed(seed),
    )
    centres = curve.centres.numpy()
    shift = float(curve.value[torch.isfinite(curve.value)].min())
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(centres, curve.value.numpy() - shift, label="flow, reweighted")
    low, high = curve.low.numpy() - shift, curve.high.numpy() - shift  # NaN gaps: empty bins
    ax.fill_between(centres, low, high, alpha=0.3, label="68% bootstrap band")
    if reference is not None:
        r = torch.as_tensor(_np(reference))
        ref = free_energy_curve(r, torch.zeros(len(r)), edges, n_bootstrap=0).value
        ax.plot(centres, (ref - ref[torch.isfinite(ref)].min()).numpy(), "k--", label="reference")
    ax.set_xlabel(label)
    ax.set_ylabel("free energy (kT)")
    ax.legend()
    return _save(fig, path)


def log_weight_histogram(path: str | Path, log_w: _ArrayLike, bins: int = 100) -> Path:
    """Histogram of ``log w - max log w`` (nats), with the Kish ESS in the title."""
    lw = _np(log_w)
    finite = lw[np.isfinite(lw)]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(finite - finite.max(), bins=bins)
    ess = kish_ess(torch.as_tensor(lw))
    ax.set_title(f"log-weights of {len(lw)} samples, ESS {100 * ess:.1f}%")
    ax.set_xlabel("log w - max log w (nats)")
    ax.set_ylabel("samples")
    ax.set_yscale("log")
    return _save(fig, path)
