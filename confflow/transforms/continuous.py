r"""Continuous normalizing flows (CNFs) as :class:`~confflow.transforms.base.Transform`\ s.

A vector field ``f(t, x)`` defines ``dx/dt = f``; the flow of time ``0 -> 1`` maps latent to
data (``forward``) and ``1 -> 0`` back (``inverse``). Along a path
``d log|det dx(t)/dx(0)| / dt = div f(t, x(t))``, so the log-determinant is integrated with the
state (Chen et al. 2018; Grathwohl et al. 2019, "FFJORD"). The divergence is

* ``"exact"`` (default): the trace of the Jacobian, one vectorised backward pass per
  dimension (``torch.autograd.grad`` with batched cotangents);
* ``"hutchinson"``: ``E[eps^T J eps]`` with Rademacher or Gaussian probes ``eps`` drawn once
  per integration, averaged over ``n_probes`` (unbiased; for training).

Solvers and tolerances are data (:class:`ODEConfig`), checked when built; integration uses
torchdiffeq's ``odeint`` or, with ``adjoint=True``, ``odeint_adjoint``. After every call
:attr:`CNF.nfe` holds the number of vector-field evaluations it took. A non-finite velocity or
divergence stops the integration with :class:`IntegrationError` naming the evaluation and
time.

Vector fields are modules ``field(t, x, context) -> velocity`` with ``x`` and the velocity of
shape ``[B, *event_shape]`` and ``t`` a 0-d tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from confflow.domains import Domain, Kind, wrap_angle
from confflow.errors import RunError
from confflow.transforms.base import Transform

__all__ = [
    "ADAPTIVE_SOLVERS",
    "CNF",
    "FIXED_STEP_SOLVERS",
    "IntegrationError",
    "ODEConfig",
    "exact_divergence",
    "hutchinson_divergence",
    "sample_probes",
]

#: Adaptive-step solvers of torchdiffeq selectable by name (use ``rtol``/``atol``).
ADAPTIVE_SOLVERS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: Fixed-step solvers selectable by name (use ``step_size``).
FIXED_STEP_SOLVERS: tuple[str, ...] = ("euler", "midpoint", "heun3", "rk4")
_DIVERGENCES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")
_TOL_RANGE = (1e-12, 1e-1)


class IntegrationError(RunError):
    """The vector field returned NaN or infinite values during integration."""


@dataclass(frozen=True)
class ODEConfig:
    """How a :class:`CNF` integrates.

    Attributes:
        solver: one of :data:`ADAPTIVE_SOLVERS` or :data:`FIXED_STEP_SOLVERS`.
        rtol: relative tolerance of adaptive solvers, in ``[1e-12, 0.1]``.
        atol: absolute tolerance of adaptive solvers, in ``[1e-12, 0.1]``.
        step_size: step in flow time for fixed-step solvers, in ``(0, 1]``; required by them,
            rejected by adaptive ones.
        adjoint: back-propagate with the adjoint method (memory independent of the steps).
        divergence: ``"exact"`` or ``"hutchinson"``.
        probe: Hutchinson probe distribution, ``"rademacher"`` or ``"gaussian"``.
        n_probes: Hutchinson probes per integration (>= 1).

    Raises:
        ValueError: an unknown name or a value out of range, naming the field.
    """

    solver: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    step_size: float | None = None
    adjoint: bool = False
    divergence: str = "exact"
    probe: str = "rademacher"
    n_probes: int = 1

    def __post_init__(self) -> None:
        solvers = ADAPTIVE_SOLVERS + FIXED_STEP_SOLVERS
        if self.solver not in solvers:
            raise ValueError(f"solver: unknown solver {self.solver!r}; choose from {solvers}")
        lo, hi = _TOL_RANGE
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and lo <= value <= hi):
                raise ValueError(f"{name}: must lie in [{lo:g}, {hi:g}], got {value!r}")
        fixed = self.solver in FIXED_STEP_SOLVERS
        if fixed and (self.step_size is None or not 0 < self.step_size <= 1):
            raise ValueError(
                f"step_size: fixed-step solver {self.solver!r} needs a step in (0, 1], "
                f"got {self.step_size!r}"
            )
        if not fixed and self.step_size is not None:
            raise ValueError(f"step_size: adaptive solver {self.solver!r} takes no step_size")
        if self.divergence not in _DIVERGENCES:
            raise ValueError(f"divergence: choose from {_DIVERGENCES}, got {self.divergence!r}")
        if self.probe not in _PROBES:
            raise ValueError(f"probe: choose from {_PROBES}, got {self.probe!r}")
        if not (isinstance(self.n_probes, int) and self.n_probes >= 1):
            raise ValueError(f"n_probes: must be an integer >= 1, got {self.n_probes!r}")


def exact_divergence(v: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    """Trace of the per-sample Jacobian ``dv/dx``, exactly.

    Args:
        v: ``[B, *event]`` output of a map applied sample-wise to ``x`` (graph attached).
        x: ``[B, *event]`` input with ``requires_grad``.
        create_graph: keep the graph of the result (for training through it).

    Returns:
        ``[B]`` divergences.
    """
    b = v.shape[0]
    d = v[0].numel()
    basis = torch.eye(d, dtype=v.dtype, device=v.device)[:, None, :].expand(d, b, d)
    (rows,) = torch.autograd.grad(
        v, x, basis.reshape(d, *v.shape), is_grads_batched=True, create_graph=create_graph
    )
    return torch.diagonal(rows.reshape(d, b, d), dim1=0, dim2=2).sum(-1)


def sample_probes(
    shape: tuple[int, ...],
    n_probes: int,
    kind: str,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``[n_probes, *shape]`` probes with ``E[eps eps^T] = I`` (Rademacher or Gaussian).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in _PROBES:
        raise ValueError(f"probe: choose from {_PROBES}, got {kind!r}")
    if kind == "gaussian":
        return torch.randn(n_probes, *shape, dtype=dtype, device=device, generator=generator)
    bits = torch.randint(0, 2, (n_probes, *shape), device=device, generator=generator)
    return bits.to(dtype) * 2 - 1


def hutchinson_divergence(
    v: Tensor, x: Tensor, probes: Tensor, create_graph: bool = False
) -> Tensor:
    """Hutchinson's unbiased estimate ``mean_p eps_p^T (dv/dx) eps_p`` of the divergence.

    Args:
        v: ``[B, *event]`` output of a sample-wise map of ``x`` (graph attached).
        x: ``[B, *event]`` input with ``requires_grad``.
        probes: ``[P, B, *event]`` probe vectors.
        create_graph: keep the graph of the result.

    Returns:
        ``[B]`` estimates.
    """
    (vjp,) = torch.autograd.grad(v, x, probes, is_grads_batched=True, create_graph=create_graph)
    return (vjp * probes).reshape(probes.shape[0], v.shape[0], -1).sum(-1).mean(0)


class _Dynamics(nn.Module):
    """The augmented right-hand side ``(x, l) -> (f(t, x), div f(t, x))``."""

    def __init__(self, field: nn.Module, config: ODEConfig) -> None:
        super().__init__()
        self.field = field
        self.config = config
        self.context: Tensor | None = None
        self.probes: Tensor | None = None
        self.nfe = 0
        self.direction = "forward"

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        self.nfe += 1
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            v = self.field(t, x, self.context)
            if self.config.divergence == "exact":
                div = exact_divergence(v, x, create_graph)
            else:
                div = hutchinson_divergence(v, x, self.probes, create_graph)
        if not (bool(torch.isfinite(v).all()) and bool(torch.isfinite(div).all())):
            raise IntegrationError(
                f"CNF.{self.direction}: non-finite vector field or divergence at function "
                f"evaluation {self.nfe} (t = {float(t):.6g})"
            )
        if not create_graph:
            v, div = v.detach(), div.detach()
        return v, div


class CNF(Transform):
    """A continuous normalizing flow ``x(1) = x(0) + int_0^1 f(t, x(t)) dt``.

    ``forward`` integrates ``0 -> 1`` (latent -> data), ``inverse`` ``1 -> 0``; ``ladj`` is the
    integrated divergence. With ``mean_free`` the event is ``[N, 3]`` positions and inputs are
    centred first; the field must then be mean-free and translation invariant, and the density
    lives on the ``3(N-1)``-dimensional centre-of-mass-free subspace. Circular features of
    ``domain`` are wrapped to ``[-pi, pi)`` after integration (the field must be ``2 pi``
    periodic in them).

    Args:
        field: vector field module ``field(t, x, context) -> [B, *event_shape]``.
        event_shape: shape of one sample, e.g. ``(D,)`` or ``(N, 3)``.
        config: solver settings.
        domain: layout of the (1-d) event; intervals must be invariant under the field.
        mean_free: positions ``[N, 3]`` on the centre-of-mass-free subspace.

    Attributes:
        nfe: vector-field evaluations of the last ``forward``/``inverse`` call.

    Example:
        >>> class Linear(nn.Module):
        ...     def forward(self, t, x, context):
        ...         return -x
        >>> cnf = CNF(Linear(), (2,), ODEConfig(rtol=1e-8, atol=1e-8))
        >>> y, ladj = cnf(torch.ones(1, 2))
        >>> round(float(ladj.detach()), 4)
        -2.0
    """

    def __init__(
        self,
        field: nn.Module,
        event_shape: tuple[int, ...],
        config: ODEConfig | None = None,
        domain: Domain | None = None,
        mean_free: bool = False,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else ODEConfig()
        event_shape = tuple(int(s) for s in event_shape)
        if not event_shape or min(event_shape) < 1:
            raise ValueError(f"event_shape: need positive sizes, got {event_shape}")
        if mean_free and (len(event_shape) != 2 or event_shape[1] != 3):
            raise ValueError(f"mean_free: needs an event shape (N, 3), got {event_shape}")
        if domain is not None and (len(event_shape) != 1 or domain.dim != event_shape[0]):
            raise ValueError(f"domain: {domain.dim} features for event shape {event_shape}")
        self.event_shape = event_shape
        self.event_ndim = len(event_shape)
        self.features = event_shape[-1]
        self.domain = domain
        self.latent_domain = domain
        self.mean_free = mean_free
        self.dynamics = _Dynamics(field, self.config)
        self.nfe = 0

    def _integrate(
        self, x: Tensor, context: Tensor | None, t0: float, t1: float, direction: str
    ) -> tuple[Tensor, Tensor]:
        if x.shape[1:] != self.event_shape:
            raise ValueError(
                f"CNF.{direction}: expected event shape {self.event_shape}, got {tuple(x.shape)}"
            )
        cfg = self.config
        if self.mean_free:
            x = x - x.mean(dim=1, keepdim=True)
        dyn = self.dynamics
        dyn.context, dyn.nfe, dyn.direction = context, 0, direction
        dyn.probes = None
        if cfg.divergence == "hutchinson":
            dyn.probes = sample_probes(tuple(x.shape), cfg.n_probes, cfg.probe, x.dtype, x.device)
        times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        state = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
        options = {"step_size": cfg.step_size} if cfg.step_size is not None else None
        solve = odeint_adjoint if cfg.adjoint else odeint
        kwargs = {"adjoint_params": tuple(dyn.parameters())} if cfg.adjoint else {}
        try:
            xs, ls = solve(
                dyn,
                state,
                times,
                rtol=cfg.rtol,
                atol=cfg.atol,
                method=cfg.solver,
                options=options,
                **kwargs,
            )
        finally:
            self.nfe = dyn.nfe
            dyn.context = dyn.probes = None
        y, ladj = xs[-1], ls[-1]
        if self.domain is not None and Kind.CIRCLE in self.domain.kinds:
            circle = self.domain.mask(Kind.CIRCLE).to(y.device)
            y = torch.where(circle, wrap_angle(y), y)
        return y, ladj

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._integrate(x, context, 0.0, 1.0, "forward")

    def _inverse(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._integrate(y, context, 1.0, 0.0, "inverse")
