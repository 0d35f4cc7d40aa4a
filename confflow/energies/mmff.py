"""MMFF94 and MMFF94s in torch: batched, differentiable, float32/float64, CPU and CUDA.

:class:`MMFFEnergy` evaluates RDKit's MMFF force field (same terms, same parameters, same
non-bonded pairs and dielectric options) for a batch of conformers at once. Parameters come
from RDKit's MMFF molecule properties (:func:`~confflow.energies.mmff_params.mmff_parameters`);
the terms are the batched functions of :mod:`confflow.energies.mmff_terms`.

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

__all__ = ["MMFF_TERMS", "MMFFEnergy"]

#: Names of the MMFF terms, as returned by :meth:`MMFFEnergy.term_energies`.
MMFF_TERMS = ("bond", "angle", "stretch_bend", "oop", "torsion", "vdw", "electrostatic")

_NM_TO_A = 10.0

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
    "torsion_v",
    "pair_rstar",
    "pair_eps",
    "pair_qq",
)
_INDEX_BUFFERS = ("bond_idx", "angle_idx", "stbn_idx", "oop_idx", "torsion_idx", "pair_idx")


def _total_energy(x: Tensor, p: dict[str, Tensor], distance_dielectric: bool) -> Tensor:
    """Sum of all MMFF terms: ``x [B, N, 3]`` in A -> ``[B]`` kcal/mol."""
    return (
        mmff_terms.bond_energy(x, p["bond_idx"], p["bond_kb"], p["bond_r0"])
        + mmff_terms.angle_energy(
            x, p["angle_idx"], p["angle_ka"], p["angle_theta0"], p["angle_linear"]
        )
        + mmff_terms.stretch_bend_energy(
            x,
            p["stbn_idx"],
            p["stbn_kijk"],
            p["stbn_kkji"],
            p["stbn_r0ij"],
            p["stbn_r0kj"],
            p["stbn_theta0"],
        )
        + mmff_terms.oop_energy(x, p["oop_idx"], p["oop_koop"])
        + mmff_terms.torsion_energy(x, p["torsion_idx"], p["torsion_v"])
        + mmff_terms.nonbonded_energy(
            x, p["pair_idx"], p["pair_rstar"], p["pair_eps"], p["pair_qq"], distance_dielectric
        )
    )


class MMFFEnergy(Energy):
    """MMFF94 / MMFF94s potential energy of one molecule, batched over conformers.

    Matches RDKit's ``MMFFGetMoleculeForceField`` with the same options: energies in kJ/mol
    (RDKit's kcal/mol times 4.184), positions in nm (RDKit's Angstrom divided by 10).

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
        compile: evaluate through ``torch.compile`` (fused kernels; the first call per batch
            shape and device compiles). If compilation fails the energy warns once and falls
            back to eager evaluation.

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
            self.register_buffer(name, torch.from_numpy(np.asarray(getattr(params, name))))
        for name in _INDEX_BUFFERS:
            self.register_buffer(name, torch.from_numpy(np.asarray(getattr(params, name))))
        self.register_buffer("angle_linear", torch.from_numpy(params.angle_linear))
        self._compiled: Callable[..., Tensor] | None = (
            torch.compile(_total_energy, dynamic=None) if compile else None
        )

    @property
    def params(self) -> MMFFParameters:
        """The MMFF parameters (MMFF units) this energy evaluates."""
        return self._params

    def _tensors(self, dtype: torch.dtype) -> dict[str, Tensor]:
        tensors = {name: getattr(self, name) for name in _INDEX_BUFFERS}
        tensors["angle_linear"] = self.angle_linear
        for name in _FLOAT_BUFFERS:
            tensors[name] = getattr(self, name).to(dtype)
        return tensors

    def _energy(self, x: Tensor) -> Tensor:
        xa = x * _NM_TO_A
        p = self._tensors(x.dtype)
        if self._compiled is not None:
            try:
                return mmff_terms.KCAL_TO_KJ * self._compiled(xa, p, self.distance_dielectric)
            except Exception as exc:  # any compiler failure falls back to eager
                warnings.warn(
                    f"MMFFEnergy: torch.compile failed ({type(exc).__name__}: {exc}); "
                    "falling back to eager evaluation",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._compiled = None
        return mmff_terms.KCAL_TO_KJ * _total_energy(xa, p, self.distance_dielectric)

    def term_energies(self, x: Tensor) -> dict[str, Tensor]:
        """Energy of each MMFF term separately (eager), for analysis and per-term tests.

        Args:
            x: ``[B, N, 3]`` positions in nm.

        Returns:
            ``{name: [B] energy in kJ/mol}`` for every name in :data:`MMFF_TERMS`.
        """
        self._validate(x)
        xa = x * _NM_TO_A
        p = self._tensors(x.dtype)
        zero = torch.zeros_like(p["pair_qq"])
        kcal = {
            "bond": mmff_terms.bond_energy(xa, p["bond_idx"], p["bond_kb"], p["bond_r0"]),
            "angle": mmff_terms.angle_energy(
                xa, p["angle_idx"], p["angle_ka"], p["angle_theta0"], p["angle_linear"]
            ),
            "stretch_bend": mmff_terms.stretch_bend_energy(
                xa,
                p["stbn_idx"],
                p["stbn_kijk"],
                p["stbn_kkji"],
                p["stbn_r0ij"],
                p["stbn_r0kj"],
                p["stbn_theta0"],
            ),
            "oop": mmff_terms.oop_energy(xa, p["oop_idx"], p["oop_koop"]),
            "torsion": mmff_terms.torsion_energy(xa, p["torsion_idx"], p["torsion_v"]),
            "vdw": mmff_terms.nonbonded_energy(
                xa, p["pair_idx"], p["pair_rstar"], p["pair_eps"], zero, False
            ),
            "electrostatic": mmff_terms.nonbonded_energy(
                xa, p["pair_idx"], p["pair_rstar"], zero, p["pair_qq"], self.distance_dielectric
            ),
        }
        return {name: mmff_terms.KCAL_TO_KJ * value for name, value in kcal.items()}
