"""MMFF94 and MMFF94s in torch: batched, differentiable, float32/float64, CPU and CUDA.

:class:`MMFFEnergy` evaluates RDKit's MMFF force field (same terms, same parameters, same
non-bonded pairs and dielectric options) for a batch of conformers at once. Parameters come
from RDKit's MMFF molecule properties (:func:`~confflow.energies.mmff_params.mmff_parameters`);
the terms are the batched functions of :mod:`confflow.energies.mmff_terms`.

Every term carries its analytic gradient, computed in the same pass as the energy; autograd
only chains it into whatever uses the energy. With ``compile=True`` the terms run through
``torch.compile``, which fuses them into a few kernels per block of conformers.
:meth:`MMFFEnergy.compile_in_background` compiles the energy-and-gradient kernel for one
molecule and dtype in a background thread instead (while the caller does something else,
e.g. MD); from then on every energy of the process with the same molecule and dtype uses it.

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

from concurrent.futures import Future
from typing import Unpack

import numpy as np
import torch
from rdkit import Chem
from torch import Tensor

from confflow.energies import mmff_terms
from confflow.energies.base import Energy
from confflow.energies.mmff_compile import SharedKernel, WithFallback
from confflow.energies.mmff_forms import KCAL_TO_KJ
from confflow.energies.mmff_params import MMFFOptions, MMFFParameters, mmff_parameters

__all__ = ["COMPILED_BLOCK", "MMFF_TERMS", "MMFFEnergy"]

#: Names of the MMFF terms, as returned by :meth:`MMFFEnergy.term_energies`.
MMFF_TERMS = ("bond", "angle", "stretch_bend", "oop", "torsion", "vdw", "electrostatic")

_NM_TO_A = 10.0

#: Eager evaluation splits the batch so that pair tensors stay below this many elements.
_EAGER_PAIR_ELEMENTS = 2**19

#: Compiled evaluation works on blocks of this many conformers (the last one padded), so one
#: compiled shape serves every batch size and each block's pair tensors stay in cache.
COMPILED_BLOCK = 128

#: Per-term constants kept as ``[M, 1]`` columns, as named in MMFFParameters.
_COLUMNS = (
    "bond_kb",
    "bond_r0",
    "angle_ka",
    "angle_theta0",
    "oop_koop",
    "pair_rstar",
    "pair_eps",
    "pair_qq",
)
_INDICES = ("bond_idx", "angle_idx", "oop_idx", "torsion_idx", "pair_idx")
#: Index tensors whose columns own the gradient pieces, in the order they are concatenated.
_OWNERS = ("bond_idx", "angle_idx", "oop_idx", "torsion_idx")
_STRETCH_BEND = ("kijk", "kkji", "r0ij", "r0kj")


class _Energy(torch.autograd.Function):
    """Energy whose backward reuses the analytic gradient computed with it."""

    @staticmethod
    def forward(ctx, x, evaluate):
        energy, gradient = evaluate(x)
        ctx.save_for_backward(gradient)
        return energy

    @staticmethod
    def backward(ctx, grad_energy):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative was requested
            raise RuntimeError(
                "MMFFEnergy: second derivatives (create_graph=True) are not supported; "
                "the gradient is analytic and not differentiable again"
            )
        (gradient,) = ctx.saved_tensors
        return grad_energy[:, None, None] * gradient, None


def _stretch_bend_per_angle(params: MMFFParameters) -> dict[str, np.ndarray]:
    """Stretch-bend constants moved onto the angle rows they couple (zero where none)."""
    row = {tuple(t): k for k, t in enumerate(params.angle_idx.tolist())}
    out = {name: np.zeros(len(row)) for name in _STRETCH_BEND}
    for k, triple in enumerate(params.stbn_idx.tolist()):
        a = row[tuple(triple)]  # every stretch-bend has its angle (mmff_parameters builds both)
        if params.stbn_theta0[k] != params.angle_theta0[a]:
            raise ValueError(f"stretch-bend {triple}: reference angle differs from the bend's")
        for name in _STRETCH_BEND:
            out[name][a] = getattr(params, f"stbn_{name}")[k]
    return out


def _pair_matrices(params: MMFFParameters) -> dict[str, np.ndarray]:
    """The pair list as dense symmetric ``[N, N]`` constants, zero (``R*`` one) off the list."""
    n = params.n_atoms
    i, j = params.pair_idx[:, 0], params.pair_idx[:, 1]
    out = {}
    for name, fill in (("rstar", 1.0), ("eps", 0.0), ("qq", 0.0)):
        matrix = np.full((n, n), fill)
        values = np.asarray(getattr(params, f"pair_{name}"), dtype=np.float64)
        matrix[i, j] = values
        matrix[j, i] = values
        out[f"dense_{name}"] = matrix
    out["dense_diagonal"] = np.eye(n)
    return out


def _gradient_owners(p: dict[str, Tensor], dense: bool) -> Tensor:
    """Atom of every gradient piece row of :func:`_energy_terms_and_gradient`, ``[K]``."""
    names = _OWNERS if dense else (*_OWNERS, "pair_idx")
    return torch.cat([p[name][:, c] for name in names for c in range(p[name].shape[1])])


def _energy_terms_and_gradient(
    x: Tensor, p: dict[str, Tensor], distance_dielectric: bool, dense: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Every MMFF term's energy, the gradient pieces and the dense non-bonded gradient.

    The full gradient is ``gradient.index_add(0, _gradient_owners(p, dense), pieces)``.

    Args:
        x: ``[3, N, B]`` positions in A.
        p: constants and index tensors as built by :class:`MMFFEnergy`: bonded constants
            ``[M, 1]``, angle rows carrying their stretch-bend constants, the pair list
            (``pair_*``) and the same pairs as dense ``[N, N, 1]`` matrices (``dense_*``).
        distance_dielectric: distance-dependent dielectric for the electrostatics.
        dense: non-bonded terms over all atom pairs (``pair_terms``, for compiled kernels)
            instead of the pair list (``pair_list_terms``, for eager evaluation,
            where memory traffic rather than arithmetic sets the pace).

    Returns:
        ``[7, B]`` energies in kcal/mol (rows in :data:`MMFF_TERMS` order), ``[K, 3, B]``
        gradient pieces and the ``[N, 3, B]`` dense non-bonded gradient (zero for the pair
        list), both in kcal/mol/A.
    """
    bond, bond_g = mmff_terms.bond_terms(x, p["bond_idx"], p["bond_kb"], p["bond_r0"])
    angle, stbn, angle_g = mmff_terms.angle_terms(
        x,
        p["angle_idx"],
        p["angle_ka"],
        p["angle_theta0"],
        p["angle_linear"],
        p["angle_kijk"],
        p["angle_kkji"],
        p["angle_r0ij"],
        p["angle_r0kj"],
    )
    oop, oop_g = mmff_terms.oop_terms(x, p["oop_idx"], p["oop_koop"])
    torsion, torsion_g = mmff_terms.torsion_terms(x, p["torsion_idx"], p["torsion_v"])
    pieces = [*bond_g, *angle_g, *oop_g, *torsion_g]
    if dense:
        vdw, elec, gradient = mmff_terms.pair_terms(
            x,
            p["dense_rstar"],
            p["dense_eps"],
            p["dense_qq"],
            p["dense_diagonal"],
            distance_dielectric,
        )
    else:
        vdw, elec, pair_g = mmff_terms.pair_list_terms(
            x, p["pair_idx"], p["pair_rstar"], p["pair_eps"], p["pair_qq"], distance_dielectric
        )
        pieces += pair_g
        gradient = torch.zeros_like(x.transpose(0, 1))
    energies = torch.stack([bond, angle, stbn, oop, torsion, vdw, elec])
    return energies, torch.cat(pieces), gradient


def _total_energy(
    x: Tensor, p: dict[str, Tensor], distance_dielectric: bool, dense: bool
) -> Tensor:
    """Total energy ``[B]`` in kcal/mol of ``x: [3, N, B]`` A.

    Compiled, the unused gradients drop out of the kernels; arguments as in
    :func:`_energy_terms_and_gradient`.
    """
    return _energy_terms_and_gradient(x, p, distance_dielectric, dense)[0].sum(0)


#: The energy-and-gradient kernel that background compilations prepare, shared by every
#: :class:`MMFFEnergy` of the process (torch caches compiled graphs per function).
_SHARED_GRADIENT = SharedKernel(_energy_terms_and_gradient)


class MMFFEnergy(Energy):
    """MMFF94 / MMFF94s potential energy of one molecule, batched over conformers.

    Matches RDKit's ``MMFFGetMoleculeForceField`` with the same options: energies in kJ/mol
    (RDKit's kcal/mol times 4.184), positions in nm (RDKit's Angstrom divided by 10). Energy
    and gradient come from one pass (the gradient is analytic, see
    :mod:`~confflow.energies.mmff_terms`); :meth:`energy` is differentiable once with respect
    to positions, second derivatives raise an error. Compiled, an energy that autograd does
    not track runs kernels without the gradient. The constants are non-persistent buffers
    (rebuilt from the molecule, so not part of a checkpoint's ``state_dict``).

    Args:
        mol: RDKit molecule with explicit hydrogens.
        compile: evaluate through ``torch.compile`` (fused kernels) in blocks of
            :data:`COMPILED_BLOCK` conformers, the last block padded, so the first call per
            dtype and device compiles (tens of seconds) and no batch size recompiles; a second
            molecule in the same process compiles once more for any term counts, and later
            molecules mostly reuse that kernel (a term type that is absent or single can
            compile again). If compilation fails the energy warns once and falls back to
            eager evaluation.
        **options: :class:`~confflow.energies.mmff_params.MMFFOptions` (variant, dielectric,
            which non-bonded pairs), as :func:`~confflow.energies.mmff_params.mmff_parameters`
            takes them.

    Raises:
        MMFFTypingError: atoms MMFF cannot type (named) or missing parameters.
        ValueError: bad options or a molecule with implicit hydrogens.
    """

    def __init__(
        self, mol: Chem.Mol, *, compile: bool = False, **options: Unpack[MMFFOptions]
    ) -> None:
        super().__init__()
        params = mmff_parameters(mol, **options)
        self._params = params
        self.n_atoms = params.n_atoms
        self.variant = params.variant
        self.distance_dielectric = params.dielectric_model == "distance"
        columns = {name: getattr(params, name) for name in _COLUMNS}
        columns.update({f"angle_{k}": v for k, v in _stretch_bend_per_angle(params).items()})
        dense = _pair_matrices(params)
        self._float_names = (*columns, "torsion_v", *dense)
        for name, values in columns.items():
            self._constant(name, torch.from_numpy(np.asarray(values)).reshape(-1, 1))
        self._constant("torsion_v", torch.from_numpy(params.torsion_v).reshape(-1, 3))
        self._constant("angle_linear", torch.from_numpy(params.angle_linear).reshape(-1, 1))
        for name, matrix in dense.items():
            self._constant(name, torch.from_numpy(matrix).unsqueeze(-1))
        for name in _INDICES:
            self._constant(name, torch.from_numpy(getattr(params, name)))
        p = self._tensors(torch.float64)
        self._constant("dense_owners", _gradient_owners(p, dense=True))
        self._constant("list_owners", _gradient_owners(p, dense=False))
        self._with_gradient = WithFallback(_energy_terms_and_gradient, compile)
        self._energy_only = WithFallback(_total_energy, compile)

    def _constant(self, name: str, value: Tensor) -> None:
        self.register_buffer(name, value, persistent=False)

    @property
    def params(self) -> MMFFParameters:
        """The MMFF parameters (MMFF units) this energy evaluates."""
        return self._params

    def _tensors(self, dtype: torch.dtype) -> dict[str, Tensor]:
        tensors = {name: getattr(self, name) for name in (*_INDICES, "angle_linear")}
        for name in self._float_names:
            tensors[name] = getattr(self, name).to(dtype)
        return tensors

    def _blocks(self, x: Tensor, compiled: bool) -> list[tuple[Tensor, int]]:
        """Blocks ``[3, N, b]`` of ``x`` in A and how many of each are real (not padding)."""
        if compiled:
            chunks = []
            for chunk in x.split(COMPILED_BLOCK):
                real = chunk.shape[0]
                if real < COMPILED_BLOCK:
                    pad = chunk[:1].expand(COMPILED_BLOCK - real, *chunk.shape[1:])
                    chunk = torch.cat([chunk, pad])
                chunks.append((chunk, real))
        else:
            size = max(1, _EAGER_PAIR_ELEMENTS // (3 * max(1, self.pair_idx.shape[0])))
            chunks = [(chunk, chunk.shape[0]) for chunk in x.split(size)]
        return [((c * _NM_TO_A).permute(2, 1, 0).contiguous(), real) for c, real in chunks]

    def _signature(self, dtype: torch.dtype, device: torch.device) -> tuple:
        """What a compiled kernel is specific to: term counts, dielectric, dtype, device."""
        counts = tuple(getattr(self, name).shape[0] for name in _INDICES)
        return (self.n_atoms, counts, self.distance_dielectric, dtype, device.type)

    def _kernel(self, x: Tensor, gradient: bool) -> tuple[WithFallback, bool]:
        """The kernel for ``x`` and whether it is compiled (dense non-bonded terms)."""
        kernel = self._with_gradient if gradient else self._energy_only
        if kernel.compiled:
            return kernel, True
        if gradient and _SHARED_GRADIENT.serves(self._signature(x.dtype, x.device)):
            return _SHARED_GRADIENT.kernel, True
        return kernel, False

    def compile_in_background(self, dtype: torch.dtype = torch.float32) -> Future[bool]:
        """Compiles the energy-and-gradient kernel for this molecule and ``dtype`` in a thread.

        Until it is done every evaluation runs eager as before; afterwards every
        :class:`MMFFEnergy` of the process with this molecule's term counts, ``dtype`` and
        device evaluates energies with gradients (:meth:`energy_and_forces`, and
        :meth:`energy` of positions that require grad) through it. A failed compilation
        warns once and leaves evaluation eager. Compiling takes seconds to tens of seconds
        of one core (less for a second molecule, whose compilation generalises the first).

        Args:
            dtype: the dtype of the positions the kernel will see.

        Returns:
            A future that holds whether the compiled kernel is in use once the (daemon)
            thread is done; wait for it before the process exits.
        """
        device = self.bond_idx.device
        gen = torch.Generator().manual_seed(0)
        x = 0.3 * torch.rand(COMPILED_BLOCK, self.n_atoms, 3, generator=gen).to(device, dtype)
        p = self._tensors(dtype)
        calls = [(block, p, self.distance_dielectric, True) for block, _ in self._blocks(x, True)]
        return _SHARED_GRADIENT.prepare(self._signature(dtype, device), calls)

    def _evaluate(self, x: Tensor, gradient: bool) -> tuple[Tensor, Tensor | None]:
        """Energies ``[B]`` in kJ/mol and, if asked, the gradient ``[B, N, 3]`` in kJ/mol/nm."""
        p = self._tensors(x.dtype)
        kernel, dense = self._kernel(x, gradient)
        owners = self.dense_owners if dense else self.list_owners
        energies, gradients = [], []
        for block, real in self._blocks(x, dense):
            if not gradient:
                energies.append(kernel(block, p, self.distance_dielectric, dense)[:real])
                continue
            terms, pieces, grad = kernel(block, p, self.distance_dielectric, dense)
            grad.index_add_(0, owners, pieces)
            energies.append(terms.sum(0)[:real])
            gradients.append(grad.permute(2, 0, 1)[:real])
        energy = KCAL_TO_KJ * torch.cat(energies)
        if not gradient:
            return energy, None
        return energy, (KCAL_TO_KJ * _NM_TO_A) * torch.cat(gradients)

    def _energy(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _Energy.apply(x, lambda xs: self._evaluate(xs.detach(), gradient=True))
        return self._evaluate(x, gradient=False)[0]

    def energy_and_forces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``[B]`` in kJ/mol and forces ``-dE/dx`` ``[B, N, 3]`` in kJ/mol/nm."""
        self._validate(x)
        energy, gradient = self._evaluate(x.detach(), gradient=True)
        return energy, -gradient

    def term_energies(self, x: Tensor) -> dict[str, Tensor]:
        """Energy of each MMFF term separately (eager), differentiable by autograd in ``x``.

        Slower than :meth:`energy` (no compiled kernel, autograd instead of the analytic
        gradient): for analysis, tests and fits on the separate terms.

        Args:
            x: ``[B, N, 3]`` positions in nm.

        Returns:
            ``{name: [B] energy in kJ/mol}`` for every name in :data:`MMFF_TERMS`.
        """
        self._validate(x)
        p = self._tensors(x.dtype)
        terms = [
            _energy_terms_and_gradient(block, p, self.distance_dielectric, False)[0]
            for block, _ in self._blocks(x, compiled=False)
        ]
        kj = KCAL_TO_KJ * torch.cat(terms, dim=1)
        return dict(zip(MMFF_TERMS, kj, strict=True))
