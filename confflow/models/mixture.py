r"""A Boltzmann generator over conformational states: one torsional flow per state.

Ring puckers, nitrogen invertomers and amide isomers (:mod:`confflow.chem.states`) are
separated by barriers that a torsional flow with one local structure never crosses.
:class:`StateMixture` makes the state a modelled variable: each *component* ``k`` is a
torsional Boltzmann generator whose local structure is a reference conformer of one state, and
each *entry* ``e = (k, s, P)`` is that component's conformers (``s = +1``) or their mirror
images (``s = -1``, for achiral molecules whose states come in mirror pairs), their atoms
relabelled by a graph automorphism ``P`` (states that are each other's relabelling) or not.
The model is

.. math::

    q(e, \theta) = \pi_e \, q_{k(e)}(\theta), \qquad
    p(e, \theta) \propto \exp\!\left(-E(x_e(\theta)) / kT + c_{k(e)}\right),

with :math:`x_e(\theta) = s\,P_e\,\mathrm{relax}_k(\theta)` the written conformer (nm), :math:`P_e`
the entry's atom relabelling, and
:math:`c_k = \log J_k - \tfrac12 \log\det H_k` (nats) the harmonic entropy of the local
structure of state ``k``: :math:`J_k = \prod b^2 \prod \sin a` the Cartesian volume element of
the reference's bonds ``b`` and angles ``a``, :math:`H_k` the Hessian of the energy in the
local coordinates at the reference. Integrating the local coordinates out of
:math:`\exp(-E/kT)` in the harmonic approximation gives :math:`e^{c_k}` up to a constant that
every state shares, so differences of :math:`c_k` carry the different stiffness of the states
(a twist-boat is softer than a chair). Log-weights
:math:`\log w = -E/kT + c_k - \log \pi_e - \log q_k(\theta)` are exact for this target; the
mixture weights :math:`\pi` only decide where samples go. The states' supports must not
overlap, or a region would count twice: the caller drops samples that left their state
(:class:`confflow.generate.states.StateAssignment`), so that each state's target lives on its
own cell of conformation space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from confflow.energies import Energy, LocalRelaxation, TorsionalEnergy
from confflow.models.builder import BoltzmannGenerator
from confflow.reweighting import kish_ess

__all__ = ["StateMixture", "local_entropy"]


def local_entropy(energy: TorsionalEnergy) -> float:
    """``c_k`` (nats): harmonic entropy of the torsional energy's local structure.

    ``log J - log det(H) / 2`` with ``J`` the volume element ``prod b^2 prod sin(a)`` of the
    reference's bonds (nm) and angles, ``H`` the reference Hessian of the local coordinates
    (kJ/mol per squared nm or rad). Only differences between states of one molecule mean
    anything. A frozen energy (no relaxation) gets the Hessian of its reference all the same.
    """
    relaxation = energy.relaxation
    if relaxation is None:
        relaxation = LocalRelaxation(energy.cartesian, energy.embedding, 0)
    n = energy.embedding.n_atoms
    z = energy.embedding.z_ref.double()
    log_volume = 2.0 * z[: n - 1].log().sum() + z[n - 1 : 2 * n - 3].sin().log().sum()
    return float(log_volume) - 0.5 * relaxation.log_det_hessian


class StateMixture(nn.Module):
    """Torsional generators of several states as one model over ``(entry, torsions)``.

    Each entry writes its component's conformers through one symmetry of the molecule: the
    conformer itself, its mirror image (sign ``-1``, achiral molecules), an atom relabelling by
    a graph automorphism (a symmetric ring's two chairs with a substituent on either side are
    one state relabelled), or both. The energy is invariant under each, so an entry's target is
    its component's, carried over exactly (the maps preserve volume).

    Args:
        components: torsional Boltzmann generators of one molecule, one per state (same
            temperature and atoms).
        entries: ``(component, sign)`` or ``(component, sign, permutation)`` per entry; sign
            ``-1`` writes mirror images, ``permutation`` indexes ``permutations``.
        log_pi: ``[E]`` log mixture weights (normalised here).
        corrections: ``[K]`` local entropies ``c_k`` (nats) of the components.
        permutations: ``[P, N]`` atom relabellings: written atom ``i`` is the component's atom
            ``permutations[p, i]``; default the identity only.

    Raises:
        ValueError: entries that name no component or permutation, signs other than +/-1,
            permutations that are not bijections, or shapes that do not fit.
    """

    def __init__(
        self,
        components: list[BoltzmannGenerator],
        entries: list[tuple[int, ...]],
        log_pi: Tensor,
        corrections: Tensor,
        permutations: Tensor | None = None,
    ) -> None:
        super().__init__()
        k = len(components)
        n = components[0].energy.cartesian.n_atoms
        if permutations is None:
            permutations = torch.arange(n)[None]
        permutations = torch.as_tensor(permutations, dtype=torch.long)
        full = [(int(e[0]), int(e[1]), int(e[2]) if len(e) > 2 else 0) for e in entries]
        if not full or any(
            not 0 <= c < k or s not in (1, -1) or not 0 <= p < len(permutations) for c, s, p in full
        ):
            raise ValueError(
                f"StateMixture: entries must be (component < {k}, +/-1, permutation < "
                f"{len(permutations)})"
            )
        if permutations.shape[1:] != (n,) or not bool(
            (permutations.sort(1).values == torch.arange(n)).all()
        ):
            raise ValueError(f"StateMixture: permutations must be [P, {n}] bijections")
        if log_pi.shape != (len(full),) or corrections.shape != (k,):
            raise ValueError(
                f"StateMixture: log_pi [{len(full)}] and corrections [{k}] expected, got "
                f"{list(log_pi.shape)} and {list(corrections.shape)}"
            )
        self.components = nn.ModuleList(components)
        self.entries = full
        self.temperature = components[0].temperature
        self.register_buffer("log_pi", torch.log_softmax(log_pi.double(), 0))
        self.register_buffer("corrections", corrections.double())
        self.register_buffer("permutations", permutations, persistent=False)
        self.register_buffer("inverses", torch.argsort(permutations, 1), persistent=False)

    def to_entry(self, e: int, x: Tensor) -> Tensor:
        """Entry ``e``'s image ``[B, N, 3]`` of its component's conformers ``x`` (nm)."""
        _, sign, p = self.entries[e]
        return sign * x[:, self.permutations[p].to(x.device)]

    def from_entry(self, e: int, x: Tensor) -> Tensor:
        """The component's conformers ``[B, N, 3]`` (nm) of entry ``e``'s conformers ``x``."""
        _, sign, p = self.entries[e]
        return sign * x[:, self.inverses[p].to(x.device)]

    @property
    def fingerprint(self) -> str:
        """Identity of the molecule and force field."""
        return self.components[0].fingerprint

    @property
    def cartesian(self) -> Energy:
        """The energy over positions ``[B, N, 3]`` nm (kJ/mol) shared by the components."""
        return self.components[0].energy.cartesian

    def set_log_weights(self, log_pi: Tensor) -> None:
        """Replaces the mixture weights by ``softmax(log_pi)`` (``[E]``)."""
        self.log_pi.copy_(torch.log_softmax(log_pi.double().to(self.log_pi), 0))

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draws ``n`` conformers: entries from ``pi``, torsions from the entry's component.

        Returns:
            ``(x, entry)``: ``[n, N, 3]`` float64 positions (nm) of the relaxed conformers (or
            mirror images) and ``[n]`` long entry indices. ``log q`` is for
            :meth:`log_prob`, on the positions as written.
        """
        device = self.log_pi.device
        pick = torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=generator)
        x = torch.empty(n, self.cartesian.n_atoms, 3, dtype=torch.float64, device=device)
        for e, (k, _, _) in enumerate(self.entries):
            rows = torch.nonzero(pick == e).squeeze(1)
            if rows.numel():
                component = self.components[k]
                theta, _ = component.sample(int(rows.numel()), generator)
                x[rows] = self.to_entry(e, component.energy.positions(theta.double()))
        return x, pick

    def log_prob(self, x: Tensor, entry: Tensor) -> Tensor:
        """``log q(e, theta)`` ``[B]`` (nats, float64) of conformers ``x [B, N, 3]`` (nm).

        The torsions are those of ``x`` (mapped back to the component: mirrored, relabelled) in
        the entry's component.
        """
        out = torch.full(entry.shape, -math.inf, dtype=torch.float64, device=x.device)
        for e, (k, _, _) in enumerate(self.entries):
            rows = torch.nonzero(entry == e).squeeze(1)
            if rows.numel():
                component = self.components[k]
                theta = component.energy.embedding.project(self.from_entry(e, x[rows]).double())
                log_q = component.log_prob(theta.float()).double()
                out[rows] = self.log_pi[e] + log_q
        return out

    def log_correction(self, entry: Tensor) -> Tensor:
        """``c_k`` ``[B]`` (nats) of each entry's component."""
        index = torch.tensor([k for k, _, _ in self.entries], device=entry.device)
        return self.corrections.to(entry.device)[index[entry]]

    @torch.no_grad()
    def log_partition(
        self,
        n: int,
        generator: torch.Generator | None = None,
        states: Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Importance-sampling estimates of each component's ``log Z_k`` and ESS.

        ``Z_k = E_q_k[exp(c_k - u(theta)) / q_k(theta)]`` over ``n`` fresh samples of the
        component; mirror images have the same ``Z``.

        Args:
            n: flow samples per component.
            generator: sampling generator.
            states: the components to estimate (default: all), in this order.

        Returns:
            ``(log_z, ess)``: ``[len(states)]`` float64 (nats; ``-inf`` where no sample is
            finite) and ``[len(states)]`` Kish ESS fractions.
        """
        log_z, ess = [], []
        for k in range(len(self.components)) if states is None else states:
            component = self.components[k]
            theta, log_q = component.sample(n, generator)
            log_w = component.log_weights(theta, log_q) + self.corrections[k]
            log_z.append(torch.logsumexp(log_w, 0) - math.log(n))
            ess.append(kish_ess(log_w) if bool(torch.isfinite(log_w).any()) else 0.0)
        return torch.stack(log_z).double(), torch.tensor(ess, dtype=torch.float64)
