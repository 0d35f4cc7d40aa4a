"""MMFF94 and MMFF94s in torch: batched, differentiable, float32/float64, CPU and CUDA.

:class:`MMFFEnergy` evaluates RDKit's MMFF force field (same terms, same parameters, same
non-bonded pairs and dielectric options) for a batch of conformers at once. Parameters come
from RDKit's MMFF molecule properties (:func:`~confflow.energies.mmff_params.mmff_parameters`);
the terms are the batched functions of :mod:`confflow.energies.mmff_terms`.

Bonded terms are differentiated by autograd; the non-bonded terms (most of the cost) carry an
analytic gradient computed in the same pass. With ``compile=True`` both parts run through
``torch.compile``, which fuses them into a few kernels.

Example:
    >>> import torch
    >>> from rdkit import Chem
    >>> mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    >>> energy = MMFFEnergy(mol)
    >>> x = torch.randn(4, mol.GetNumAtoms(), 3, dtype=torch.float64) * 0.1
    >>> energy(x).shape
    torch.Size([4])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from rdkit import Chem
from torch import Tensor

from confflow.energies import mmff_terms
from confflow.energies.base import Energy
from confflow.energies.mmff_params import (
    DielectricModel,
    MMFFParameters,
    Variant,
    mmff_parameters,
)

__all__ = ["COMPILED_BLOCK", "MMFF_TERMS", "MMFFEnergy"]

#: Names of the MMFF terms, as returned by :meth:`MMFFEnergy.term_energies`.
MMFF_TERMS = ("bond", "angle", "stretch_bend", "oop", "torsion", "vdw", "electrostatic")

_NM_TO_A = 10.0

#: Eager evaluation splits the batch so that pair tensors stay below this many elements.
_EAGER_PAIR_ELEMENTS = 2**22

#: Compiled evaluation works on blocks of this many conformers (the last one padded), so one
#: compiled shape serves every batch size and each block's pair tensors stay in cache.
COMPILED_BLOCK = 128

_FLOAT_BUFFERS = (
    "bond_kb",
    "bond_r0",
    "angle_ka",
    "angle_theta0",
    "stbn_kijk",
    "stbn_kkji",
    "stbn_r0ij",
    "stbn_r0kj",
    "stbn_theta0",
    "oop_koop",
)
_INDEX_BUFFERS = ("bond_idx", "angle_idx", "stbn_idx", "oop_idx", "torsion_idx", "pair_idx")
_PAIR_BUFFERS = ("pair_rstar", "pair_eps", "pair_qq")


class _Nonbonded(torch.autograd.Function):
    """Non-bonded energy whose backward reuses the analytic gradient of the forward pass."""

    @staticmethod
    def forward(ctx, x, idx, rstar, eps, qq, distance_dielectric, kernel):
        energy, gradient = kernel(x, idx, rstar, eps, qq, distance_dielectric)
        ctx.save_for_backward(gradient)
        return energy

    @staticmethod
    def backward(ctx, grad_energy):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative was requested
            raise RuntimeError(
                "MMFFEnergy: second derivatives (create_graph=True) are not supported; "
                "the non-bonded gradient is analytic and not differentiable again"
            )
        (gradient,) = ctx.saved_tensors
        return grad_energy * gradient, None, None, None, None, None, None


class _WithFallback:
    """Calls a compiled function; on its first failure warns and uses the eager one for good."""

    def __init__(self, fn: Callable[..., Any], compile: bool) -> None:
        self.eager = fn
        self.current = torch.compile(fn, dynamic=False) if compile else fn

    @property
    def compiled(self) -> bool:
        return self.current is not self.eager

    def __call__(self, *args: Any) -> Any:
        if not self.compiled:
            return self.eager(*args)
        try:
            return self.current(*args)
        except Exception as exc:  # any compiler failure falls back to eager
            warnings.warn(
                f"MMFFEnergy: torch.compile failed ({type(exc).__name__}: {exc}); "
                "falling back to eager evaluation",
                RuntimeWarning,
                stacklevel=2,
            )
            self.current = self.eager
            return self.eager(*args)


class MMFFEnergy(Energy):
    """MMFF94 / MMFF94s potential energy of one molecule, batched over conformers.

    Matches RDKit's ``MMFFGetMoleculeForceField`` with the same options: energies in kJ/mol
    (RDKit's kcal/mol times 4.184), positions in nm (RDKit's Angstrom divided by 10). The
    energy is differentiable once with respect to positions (forces); second derivatives of
    the non-bonded part are not available and raise an error.

    Args:
        mol: RDKit molecule with explicit hydrogens.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        dielectric_model: ``"constant"`` (Coulomb ``1/r``) or ``"distance"`` (``1/r^2``).
        dielectric_constant: relative permittivity ``D``.
        nonbonded_threshold: in nm, as RDKit's ``nonBondedThresh``: non-bonded pairs farther
            apart than this in conformer ``conf_id`` of ``mol`` are left out. ``None`` (the
            default) keeps every pair, which is what RDKit's default (10 nm) does for any
            molecule smaller than 10 nm.
        ignore_interfragment_interactions: leave out non-bonded pairs between disconnected
            fragments, as RDKit does by default.
        conf_id: conformer used by ``nonbonded_threshold``.
        compile: evaluate through ``torch.compile`` (fused kernels) in blocks of
            :data:`COMPILED_BLOCK` conformers, the last block padded, so the first call per
            dtype and device compiles (tens of seconds) and no batch size recompiles. If
            compilation fails the energy warns once and falls back to eager evaluation.

    Raises:
        MMFFTypingError: atoms MMFF cannot type (named) or missing parameters.
        ValueError: bad options or a molecule with implicit hydrogens.
    """

    def __init__(
        self,
        mol: Chem.Mol,
        variant: Variant = "MMFF94",
        dielectric_model: DielectricModel = "constant",
        dielectric_constant: float = 1.0,
        nonbonded_threshold: float | None = None,
        ignore_interfragment_interactions: bool = True,
        conf_id: int = -1,
        compile: bool = False,
    ) -> None:
        super().__init__()
        params = mmff_parameters(
            mol,
            variant=variant,
            dielectric_model=dielectric_model,
            dielectric_constant=dielectric_constant,
            nonbonded_threshold=nonbonded_threshold,
            ignore_interfragment_interactions=ignore_interfragment_interactions,
            conf_id=conf_id,
        )
        self._params = params
        self.n_atoms = params.n_atoms
        self.variant = variant
        self.distance_dielectric = dielectric_model == "distance"
        for name in _FLOAT_BUFFERS:
            column = torch.from_numpy(np.asarray(getattr(params, name))).reshape(-1, 1)
            self.register_buffer(name, column)
        self.register_buffer("torsion_v", torch.from_numpy(params.torsion_v).reshape(-1, 3))
        self.register_buffer("angle_linear", torch.from_numpy(params.angle_linear).reshape(-1, 1))
        for name in _INDEX_BUFFERS:
            self.register_buffer(name, torch.from_numpy(getattr(params, name)))
        for name in _PAIR_BUFFERS:
            column = torch.from_numpy(np.asarray(getattr(params, name))).reshape(-1, 1)
            self.register_buffer(name, column)
        self._bonded = _WithFallback(mmff_terms.bonded_energy, compile)
        self._nonbonded = _WithFallback(mmff_terms.nonbonded_energy_and_gradient, compile)

    @property
    def params(self) -> MMFFParameters:
        """The MMFF parameters (MMFF units) this energy evaluates."""
        return self._params

    def _tensors(self, dtype: torch.dtype) -> dict[str, Tensor]:
        tensors = {name: getattr(self, name) for name in _INDEX_BUFFERS}
        tensors["angle_linear"] = self.angle_linear
        for name in (*_FLOAT_BUFFERS, "torsion_v", *_PAIR_BUFFERS):
            tensors[name] = getattr(self, name).to(dtype)
        return tensors

    def _chunks(self, x: Tensor) -> list[tuple[Tensor, int]]:
        """Blocks of ``x`` and how many leading conformers of each are real (not padding)."""
        if not self._nonbonded.compiled:
            size = max(1, _EAGER_PAIR_ELEMENTS // (3 * max(1, self.pair_idx.shape[0])))
            return [(chunk, chunk.shape[0]) for chunk in x.split(size)]
        blocks = []
        for chunk in x.split(COMPILED_BLOCK):
            real = chunk.shape[0]
            if real < COMPILED_BLOCK:
                pad = chunk[:1].expand(COMPILED_BLOCK - real, *chunk.shape[1:])
                chunk = torch.cat([chunk, pad])
            blocks.append((chunk, real))
        return blocks

    def _energy(self, x: Tensor) -> Tensor:
        p = self._tensors(x.dtype)
        out = []
        for chunk, real in self._chunks(x):
            xt = (chunk * _NM_TO_A).permute(1, 2, 0).contiguous()  # [N, 3, B] in A
            nonbonded = _Nonbonded.apply(
                xt,
                p["pair_idx"],
                p["pair_rstar"],
                p["pair_eps"],
                p["pair_qq"],
                self.distance_dielectric,
                self._nonbonded,
            )
            out.append((self._bonded(xt, p) + nonbonded)[:real])
        return mmff_terms.KCAL_TO_KJ * torch.cat(out)

    def term_energies(self, x: Tensor) -> dict[str, Tensor]:
        """Energy of each MMFF term separately (eager, no gradient), for analysis and tests.

        Args:
            x: ``[B, N, 3]`` positions in nm.

        Returns:
            ``{name: [B] energy in kJ/mol}`` for every name in :data:`MMFF_TERMS`.
        """
        self._validate(x)
        p = self._tensors(x.dtype)
        xt = (x.detach() * _NM_TO_A).permute(1, 2, 0).contiguous()
        zero = torch.zeros_like(p["pair_qq"])
        nonbonded = mmff_terms.nonbonded_energy_and_gradient
        kcal = {
            "bond": mmff_terms.bond_energy(xt, p["bond_idx"], p["bond_kb"], p["bond_r0"]),
            "angle": mmff_terms.angle_energy(
                xt, p["angle_idx"], p["angle_ka"], p["angle_theta0"], p["angle_linear"]
            ),
            "stretch_bend": mmff_terms.stretch_bend_energy(
                xt,
                p["stbn_idx"],
                p["stbn_kijk"],
                p["stbn_kkji"],
                p["stbn_r0ij"],
                p["stbn_r0kj"],
                p["stbn_theta0"],
            ),
            "oop": mmff_terms.oop_energy(xt, p["oop_idx"], p["oop_koop"]),
            "torsion": mmff_terms.torsion_energy(xt, p["torsion_idx"], p["torsion_v"]),
            "vdw": nonbonded(xt, p["pair_idx"], p["pair_rstar"], p["pair_eps"], zero, False)[0],
            "electrostatic": nonbonded(
                xt, p["pair_idx"], p["pair_rstar"], zero, p["pair_qq"], self.distance_dielectric
            )[0],
        }
        return {name: mmff_terms.KCAL_TO_KJ * value for name, value in kcal.items()}
