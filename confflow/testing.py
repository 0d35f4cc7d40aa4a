"""Test helpers that users can run on their own transforms.

* :func:`assert_bijective` — round trips in both directions, and forward/inverse log-dets
  that cancel.
* :func:`assert_ladj_matches_autograd` — ``ladj`` against ``slogdet`` of the Jacobian that
  ``torch.autograd`` computes, in float64, in both directions.
* :func:`assert_equivariant` / :func:`assert_invariant` — vector fields and densities on
  positions ``[B, N, 3]`` under random rotations, translations and permutations.
* :func:`assert_not_above` — ``a <= b`` up to the rounding of values that were computed
  along different paths (another batch, another CPU's vector width, another thread count).

Tolerances per dtype are declared once, here, in :data:`ROUND_TRIP_TOL`, :data:`LADJ_TOL`
and :data:`RECOMPUTE_RTOL`.

Example:
    >>> import torch
    >>> from confflow.transforms import ElementwiseAffine
    >>> t = ElementwiseAffine(3)
    >>> x = torch.randn(8, 3, dtype=torch.float64)
    >>> assert_bijective(t, x)
    >>> assert_ladj_matches_autograd(t, x)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from confflow.domains import Domain, Kind
from confflow.transforms.base import Transform

__all__ = [
    "EQUIVARIANCE_TOL",
    "INVARIANCE_TOL",
    "LADJ_TOL",
    "RECOMPUTE_RTOL",
    "ROUND_TRIP_TOL",
    "assert_bijective",
    "assert_equivariant",
    "assert_frame_ladj_matches_autograd",
    "assert_invariant",
    "assert_ladj_matches_autograd",
    "assert_not_above",
    "max_abs_difference",
    "random_rotation",
]

#: Largest allowed round-trip error, relative to ``max(1, |x|)``, per dtype.
ROUND_TRIP_TOL: dict[torch.dtype, float] = {torch.float64: 1e-10, torch.float32: 1e-5}

#: Largest allowed difference between ``ladj`` and autograd's log|det J| (float64 only).
LADJ_TOL: dict[torch.dtype, float] = {torch.float64: 1e-8, torch.float32: 1e-3}

#: Relative rounding allowed between two evaluations of one quantity along different paths:
#: a few hundred ulps of the magnitude, far below any physical difference.
RECOMPUTE_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-12, torch.float32: 1e-5}


def assert_not_above(a: Tensor, b: Tensor, rtol: float | None = None) -> None:
    """Asserts ``a <= b`` elementwise, allowing the rounding of a recomputed value.

    A minimiser that rejects a step returns the same structure, but its energy, evaluated again
    in another batch or with another reduction order, can come out a few ulps higher. Use this
    instead of an exact ``<=`` whenever ``a`` and ``b`` come from separate evaluations.

    Args:
        a: ``[...]`` values that must not exceed ``b`` (any unit).
        b: ``[...]`` bounds, same shape and unit.
        rtol: allowed excess relative to ``max(1, |b|)``; default :data:`RECOMPUTE_RTOL` of
            ``b``'s dtype.

    Raises:
        AssertionError: naming the worst element and its excess.

    Example:
        >>> import torch
        >>> e = torch.tensor([10.0, 5.0], dtype=torch.float64)
        >>> assert_not_above(e * (1 + 1e-15), e)
    """
    tol = rtol if rtol is not None else RECOMPUTE_RTOL[b.dtype]
    excess = (a - b) / b.abs().clamp(min=1.0)
    if excess.numel() and not bool((excess <= tol).all()):
        worst = int(excess.argmax())
        value = float(excess.flatten()[worst])
        raise AssertionError(
            f"assert_not_above: element {worst} exceeds its bound by {value:.3g} (relative), "
            f"tolerance {tol:g}"
        )


def max_abs_difference(a: Tensor, b: Tensor, domain: Domain | None = None) -> float:
    """Largest elementwise difference ``|a - b| / max(1, |b|)``; circles compared modulo 2 pi.

    Args:
        a: ``[B, ..., D]`` values to check.
        b: ``[B, ..., D]`` reference values, same shape.
        domain: layout of the last axis; circular features use the wrapped angle difference.

    Returns:
        The largest scaled difference as a Python float.
    """
    diff = (a - b).abs()
    if domain is not None and Kind.CIRCLE in domain.kinds:
        circle = domain.mask(Kind.CIRCLE).to(a.device)
        wrapped = torch.minimum(diff, 2 * math.pi - diff)
        diff = torch.where(circle, wrapped, diff)
    scale = b.abs().clamp(min=1.0)
    return float((diff / scale).max()) if diff.numel() else 0.0


def assert_bijective(
    t: Transform, x: Tensor, context: Tensor | None = None, atol: float | None = None
) -> None:
    """Checks ``inverse(forward(x)) == x``, ``forward(inverse(y)) == y`` and cancelling log-dets.

    Args:
        t: the transform.
        x: ``[B, ...]`` latent points in its latent domain; ``y = forward(x)`` serves as the
            data-side start of the second round trip.
        context: optional ``[B, C]`` context.
        atol: tolerance relative to ``max(1, |x|)``; default :data:`ROUND_TRIP_TOL` of the dtype.

    Raises:
        AssertionError: naming the transform, the direction and the error found.
    """
    tol = atol if atol is not None else ROUND_TRIP_TOL[x.dtype]
    name = type(t).__name__
    with torch.no_grad():
        y, ladj_f = t.forward(x, context)
        x_back, ladj_i = t.inverse(y, context)
        err = max_abs_difference(x_back, x, t.latent_domain)
        assert err <= tol, f"{name}: inverse(forward(x)) differs from x by {err:.3e} > {tol:.1e}"
        y_back, _ = t.forward(x_back, context)
        err = max_abs_difference(y_back, y, t.domain)
        assert err <= tol, f"{name}: forward(inverse(y)) differs from y by {err:.3e} > {tol:.1e}"
        assert ladj_f.shape == (x.shape[0],), f"{name}: ladj shape {tuple(ladj_f.shape)} != [B]"
        assert ladj_i.shape == (x.shape[0],), f"{name}: ladj shape {tuple(ladj_i.shape)} != [B]"
        scale = ladj_f.abs().clamp(min=1.0)
        err = float(((ladj_f + ladj_i).abs() / scale).max())
        assert err <= 100 * tol, f"{name}: forward and inverse log-dets differ by {err:.3e}"


def _blockwise_logdet(fn, inputs: Tensor) -> Tensor:
    """log|det| of the per-sample Jacobians of a batched map ``[B, D] -> [B, D]``."""
    batch = inputs.shape[0]
    flat = inputs.reshape(batch, -1)
    jac = torch.autograd.functional.jacobian(
        lambda v: fn(v.reshape(inputs.shape)).reshape(batch, -1), flat, vectorize=True
    )
    idx = torch.arange(batch)
    blocks = jac[idx, :, idx, :]  # [B, D_out, D_in]
    if blocks.shape[-1] != blocks.shape[-2]:
        raise ValueError(
            f"Jacobian blocks are {tuple(blocks.shape[1:])}: not square; "
            "this helper needs a map between spaces of equal dimension"
        )
    return torch.linalg.slogdet(blocks)[1]


def _assert_ladj_close(
    name: str, tol: float, checks: Iterable[tuple[str, Callable[[Tensor], Tensor], Tensor, Tensor]]
) -> None:
    """Asserts that each ``(direction, map, start [B, D], ladj [B])`` agrees with autograd.

    The reference is ``slogdet`` of the map's per-sample Jacobian at ``start``; the largest
    absolute difference in nats must be at most ``tol``.
    """
    for direction, fn, start, ladj in checks:
        ref = _blockwise_logdet(fn, start)
        err = float((ref - ladj).abs().max())
        assert err <= tol, (
            f"{name}.{direction}: ladj differs from autograd by {err:.3e} > {tol:.1e}"
        )


def _float64_round_trip(
    t: Transform, x: Tensor, context: Tensor | None, atol: float | None
) -> tuple[str, float, Transform, Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """What both log-det checks start from, in float64.

    Returns:
        The name of ``t``, the tolerance (``atol``, or float64's), a float64 copy of ``t``,
        float64 ``x`` and context, ``y = forward(x)`` and both log-dets.
    """
    tol = atol if atol is not None else LADJ_TOL[torch.float64]
    t64 = copy.deepcopy(t).to(torch.float64)
    x64 = x.detach().to(torch.float64)
    c64 = None if context is None else context.detach().to(torch.float64)
    with torch.no_grad():
        y64, ladj_f = t64.forward(x64, c64)
        _, ladj_i = t64.inverse(y64, c64)
    return type(t).__name__, tol, t64, x64, c64, y64, ladj_f, ladj_i


def assert_ladj_matches_autograd(
    t: Transform, x: Tensor, context: Tensor | None = None, atol: float | None = None
) -> None:
    """Compares ``ladj`` with ``slogdet`` of autograd's Jacobian, in float64, both directions.

    The transform is copied and cast to float64, so the caller's module is left untouched.

    Args:
        t: the transform; its Jacobian must be square per sample.
        x: ``[B, ...]`` latent points; keep ``B`` small (the full batch Jacobian is built).
        context: optional ``[B, C]`` context.
        atol: absolute tolerance in nats; default :data:`LADJ_TOL` for float64.

    Raises:
        AssertionError: naming the transform, the direction and the largest difference.
    """
    name, tol, t64, x64, c64, y64, ladj_f, ladj_i = _float64_round_trip(t, x, context, atol)
    _assert_ladj_close(
        name,
        tol,
        (
            ("forward", lambda v: t64.forward(v, c64)[0], x64, ladj_f),
            ("inverse", lambda v: t64.inverse(v, c64)[0], y64, ladj_i),
        ),
    )


def _frame_components(n_atoms: int, frame_atoms: tuple[int, int, int]) -> Tensor:
    """Indices into flattened ``[N * 3]`` positions of the ``3N-6`` free canonical components."""
    a0, a1, a2 = frame_atoms
    fixed = {3 * a0, 3 * a0 + 1, 3 * a0 + 2, 3 * a1 + 1, 3 * a1 + 2, 3 * a2 + 2}
    return torch.tensor([c for c in range(3 * n_atoms) if c not in fixed], dtype=torch.long)


def assert_frame_ladj_matches_autograd(
    t: Transform,
    z: Tensor,
    frame_atoms: tuple[int, int, int],
    context: Tensor | None = None,
    atol: float | None = None,
) -> None:
    """Checks ``ladj`` of a map ``[B, 3N-6] -> [B, N, 3]`` on the canonical-frame subspace.

    ``forward`` must return positions in the canonical pose: ``frame_atoms[0]`` at the origin,
    ``frame_atoms[1]`` on the x axis, ``frame_atoms[2]`` in the xy-plane. The ``3N-6`` free
    components ``s`` (all but those six fixed ones) are the coordinates of that subspace; this
    compares ``forward``'s ``ladj`` with ``slogdet(ds/dz)`` and ``inverse``'s with
    ``slogdet(dz/ds)`` from autograd, in float64.

    Args:
        t: the transform (copied and cast to float64).
        z: ``[B, 3N-6]`` latent points; keep ``B`` small.
        frame_atoms: the atoms fixed at the origin, on the x axis and in the xy-plane.
        context: optional ``[B, C]`` context.
        atol: absolute tolerance in nats; default :data:`LADJ_TOL` for float64.

    Raises:
        AssertionError: the output is not in the canonical pose, or a log-det differs (the
            message names the transform, the direction and the largest difference).
    """
    name, tol, t64, z64, c64, x64, ladj_f, ladj_i = _float64_round_trip(t, z, context, atol)
    batch, n_atoms = x64.shape[0], x64.shape[1]
    keep = _frame_components(n_atoms, frame_atoms)
    fixed = x64.reshape(batch, -1).clone()
    fixed[:, keep] = 0.0
    assert float(fixed.abs().max()) <= ROUND_TRIP_TOL[torch.float64], (
        f"{name}.forward: output is not in the canonical pose of frame atoms {frame_atoms}"
    )

    def to_frame(v: Tensor) -> Tensor:
        return t64.forward(v, c64)[0].reshape(batch, -1)[:, keep]

    def from_frame(s: Tensor) -> Tensor:
        full = s.new_zeros(batch, 3 * n_atoms).index_copy(1, keep, s)
        return t64.inverse(full.reshape(batch, n_atoms, 3), c64)[0]

    s64 = x64.reshape(batch, -1)[:, keep]
    _assert_ladj_close(
        name, tol, (("forward", to_frame, z64, ladj_f), ("inverse", from_frame, s64, ladj_i))
    )


#: Largest allowed equivariance error of a vector field, relative to ``max(1, |f(x)|)``.
EQUIVARIANCE_TOL: dict[torch.dtype, float] = {torch.float64: 1e-5, torch.float32: 1e-3}

#: Largest allowed change of an invariant (e.g. a log-density in nats) under the group.
INVARIANCE_TOL: dict[torch.dtype, float] = {torch.float64: 1e-4, torch.float32: 1e-2}


def random_rotation(
    dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None
) -> Tensor:
    """A uniformly random proper rotation matrix ``[3, 3]`` (QR of a Gaussian matrix)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _class_permutation(classes: Tensor, generator: torch.Generator | None) -> Tensor:
    """A random permutation of atom indices that only exchanges atoms of equal class."""
    perm = torch.arange(classes.numel())
    for c in torch.unique(classes):
        idx = (classes == c).nonzero().flatten()
        perm[idx] = idx[torch.randperm(idx.numel(), generator=generator)]
    return perm


def _group_actions(x: Tensor, classes, trials: int, seed: int):
    """Yields ``(rotation [3, 3], translation [3], permutation [N])`` triples."""
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[1]
    cls = torch.zeros(n, dtype=torch.long) if classes is None else torch.as_tensor(classes)
    if cls.shape != (n,):
        raise ValueError(f"classes: expected {n} labels, got shape {tuple(cls.shape)}")
    for _ in range(trials):
        rot = random_rotation(x.dtype, gen).to(x.device)
        shift = torch.randn(3, dtype=torch.float64, generator=gen).to(x)
        perm = _class_permutation(cls, gen).to(x.device)
        yield rot, shift, perm


def assert_equivariant(
    fn,
    x: Tensor,
    classes=None,
    trials: int = 3,
    atol: float | None = None,
    seed: int = 0,
) -> None:
    """Checks ``fn(P x R^T + c) == P fn(x) R^T`` for random rotations, shifts and permutations.

    ``fn`` maps positions to vectors (velocities, forces), so translations act on the input
    only. Permutations exchange atoms with equal ``classes`` label; give labels under which
    ``fn`` should be symmetric (e.g. equal atom types without bond context, or graph-equivalent
    atoms such as the hydrogens of one methyl group).

    Args:
        fn: ``x [B, N, 3] -> [B, N, 3]``, e.g. ``lambda x: field(t, x)``.
        x: ``[B, N, 3]`` positions.
        classes: ``[N]`` exchangeable-atom labels; ``None`` allows any permutation.
        trials: number of random group elements.
        atol: tolerance relative to ``max(1, |fn(x)|)``; default :data:`EQUIVARIANCE_TOL`.
        seed: seed of the random group elements.

    Raises:
        AssertionError: naming the trial and the largest error.
    """
    tol = atol if atol is not None else EQUIVARIANCE_TOL[x.dtype]
    with torch.no_grad():
        out = fn(x)
        if out.shape != x.shape:
            raise ValueError(f"fn: output shape {tuple(out.shape)} differs from {tuple(x.shape)}")
        scale = max(1.0, float(out.abs().max()))
        for k, (rot, shift, perm) in enumerate(_group_actions(x, classes, trials, seed)):
            moved = fn(x[:, perm] @ rot.T + shift)
            expected = out[:, perm] @ rot.T
            err = float((moved - expected).abs().max()) / scale
            assert err <= tol, (
                f"not equivariant: trial {k} (rotation, translation, permutation) changes the "
                f"output by {err:.3e} > {tol:.1e}"
            )


def assert_invariant(
    fn,
    x: Tensor,
    classes=None,
    trials: int = 3,
    atol: float | None = None,
    seed: int = 0,
) -> None:
    """Checks ``fn(P x R^T + c) == fn(x)`` for random rotations, shifts and permutations.

    Args:
        fn: ``x [B, N, 3] -> [B, ...]``, e.g. a log-density.
        x: ``[B, N, 3]`` positions.
        classes: ``[N]`` exchangeable-atom labels; ``None`` allows any permutation.
        trials: number of random group elements.
        atol: absolute tolerance; default :data:`INVARIANCE_TOL`.
        seed: seed of the random group elements.

    Raises:
        AssertionError: naming the trial and the largest change.
    """
    tol = atol if atol is not None else INVARIANCE_TOL[x.dtype]
    with torch.no_grad():
        out = fn(x)
        for k, (rot, shift, perm) in enumerate(_group_actions(x, classes, trials, seed)):
            err = float((fn(x[:, perm] @ rot.T + shift) - out).abs().max())
            assert err <= tol, (
                f"not invariant: trial {k} (rotation, translation, permutation) changes the "
                f"output by {err:.3e} > {tol:.1e}"
            )
