"""MMFF94 / MMFF94s parameters of one molecule, read from RDKit's MMFF molecule properties.

:func:`mmff_parameters` turns an RDKit molecule with explicit hydrogens into index lists and
force constants for every MMFF term, selected exactly as RDKit's MMFF force-field builder
selects them (which angles, stretch-bends, out-of-plane and torsion quadruples, which
non-bonded pairs, 1-4 scaling of electrostatics). Units are MMFF's own: Angstrom, degrees,
mdyne/A, kcal/mol, elementary charges. The torch energy (:mod:`confflow.energies.mmff`) and the
OpenMM system (:mod:`confflow.energies.mmff_openmm`) both consume :class:`MMFFParameters`.

Reference: T. A. Halgren, J. Comput. Chem. 17, 490-519 (1996), parts I-V.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
from rdkit import Chem

from confflow.energies.mmff_checks import MMFFTypingError, check_options, typed_properties

__all__ = [
    "LINEAR_ATOM_TYPES",
    "MMFFOptions",
    "MMFFParameters",
    "MMFFTypingError",
    "mmff_parameters",
]

Variant = Literal["MMFF94", "MMFF94s"]
DielectricModel = Literal["constant", "distance"]


class MMFFOptions(TypedDict, total=False):
    """The options every MMFF entry point passes on to :func:`mmff_parameters`.

    :class:`~confflow.energies.mmff.MMFFEnergy` and
    :func:`~confflow.energies.mmff_openmm.mmff_openmm_system` take them as keyword arguments;
    their meanings and defaults are those of :func:`mmff_parameters`.
    """

    variant: Variant
    dielectric_model: DielectricModel
    dielectric_constant: float
    nonbonded_threshold: float | None
    ignore_interfragment_interactions: bool
    conf_id: int


#: MMFF atom types flagged linear ("lin" in MMFFPROP.PAR): angles centred on them use
#: ``k (1 + cos theta)`` and carry no stretch-bend term.
LINEAR_ATOM_TYPES = frozenset({4, 42, 53, 61})

#: Scale factor of 1-4 electrostatics in MMFF94.
ELECTROSTATIC_14_SCALE = 0.75

# RDKit's torsion bonds: neither end triple-bonded nor terminal.
_TORSION_BOND_SMARTS = "[!$(*#*)&!D1]~[!$(*#*)&!D1]"


@dataclass(frozen=True)
class MMFFParameters:
    """Index lists and constants of every MMFF term of one molecule (MMFF units).

    Index arrays are ``int64``, constants ``float64`` (NumPy). Shapes use ``n_*`` for the
    number of terms of each kind.

    Attributes:
        n_atoms: number of atoms ``N``.
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        bond_idx: ``[n_bond, 2]`` atoms ``(i, j)``.
        bond_kb: ``[n_bond]`` force constants in mdyne/A.
        bond_r0: ``[n_bond]`` reference lengths in A.
        angle_idx: ``[n_angle, 3]`` atoms ``(i, j, k)``, ``j`` central.
        angle_ka: ``[n_angle]`` force constants in mdyne A/rad^2.
        angle_theta0: ``[n_angle]`` reference angles in degrees.
        angle_linear: ``[n_angle]`` bool, central atom of a linear type.
        stbn_idx: ``[n_stbn, 3]`` atoms ``(i, j, k)``.
        stbn_kijk: ``[n_stbn]`` constant coupling ``r_ij`` with the angle, mdyne/rad.
        stbn_kkji: ``[n_stbn]`` constant coupling ``r_kj`` with the angle, mdyne/rad.
        stbn_r0ij: ``[n_stbn]`` reference length of ``i-j`` in A.
        stbn_r0kj: ``[n_stbn]`` reference length of ``k-j`` in A.
        stbn_theta0: ``[n_stbn]`` reference angle in degrees.
        oop_idx: ``[n_oop, 4]`` atoms ``(i, j, k, l)``, ``j`` central, ``l`` out of plane.
        oop_koop: ``[n_oop]`` force constants in mdyne A/rad^2.
        torsion_idx: ``[n_torsion, 4]`` atoms ``(i, j, k, l)``.
        torsion_v: ``[n_torsion, 3]`` ``(V1, V2, V3)`` in kcal/mol.
        pair_idx: ``[n_pair, 2]`` non-bonded pairs ``i < j`` (1-4 and beyond).
        pair_rstar: ``[n_pair]`` buffered 14-7 minimum distance ``R*_ij`` in A.
        pair_eps: ``[n_pair]`` well depth in kcal/mol.
        pair_qq: ``[n_pair]`` ``q_i q_j / D``, 1-4 pairs already scaled by 0.75, in e^2.
        charges: ``[N]`` MMFF partial charges in e.
        atom_types: ``[N]`` MMFF numeric atom types.
        dielectric_model: ``"constant"`` (``1/r``) or ``"distance"`` (``1/r^2``).
        dielectric_constant: ``D``.
    """

    n_atoms: int
    variant: str
    bond_idx: np.ndarray
    bond_kb: np.ndarray
    bond_r0: np.ndarray
    angle_idx: np.ndarray
    angle_ka: np.ndarray
    angle_theta0: np.ndarray
    angle_linear: np.ndarray
    stbn_idx: np.ndarray
    stbn_kijk: np.ndarray
    stbn_kkji: np.ndarray
    stbn_r0ij: np.ndarray
    stbn_r0kj: np.ndarray
    stbn_theta0: np.ndarray
    oop_idx: np.ndarray
    oop_koop: np.ndarray
    torsion_idx: np.ndarray
    torsion_v: np.ndarray
    pair_idx: np.ndarray
    pair_rstar: np.ndarray
    pair_eps: np.ndarray
    pair_qq: np.ndarray
    charges: np.ndarray
    atom_types: np.ndarray
    dielectric_model: str
    dielectric_constant: float


def mmff_parameters(
    mol: Chem.Mol,
    variant: Variant = "MMFF94",
    dielectric_model: DielectricModel = "constant",
    dielectric_constant: float = 1.0,
    nonbonded_threshold: float | None = None,
    ignore_interfragment_interactions: bool = True,
    conf_id: int = -1,
) -> MMFFParameters:
    """Reads all MMFF terms of ``mol`` from RDKit, selected as RDKit's force-field builder does.

    Args:
        mol: RDKit molecule with explicit hydrogens (not modified; MMFF aromaticity is
            perceived on a copy).
        variant: ``"MMFF94"`` or ``"MMFF94s"``.
        dielectric_model: ``"constant"`` (Coulomb ``1/r``) or ``"distance"`` (``1/r^2``).
        dielectric_constant: relative permittivity ``D > 0``.
        nonbonded_threshold: in nm; as RDKit's ``nonBondedThresh``, drops non-bonded pairs
            farther apart than this in conformer ``conf_id``. ``None`` keeps every pair
            (RDKit's default of 10 nm keeps every pair of any molecule smaller than that).
        ignore_interfragment_interactions: drop non-bonded pairs between disconnected
            fragments (RDKit's default ``True``).
        conf_id: conformer used by ``nonbonded_threshold``.

    Returns:
        The :class:`MMFFParameters`.

    Raises:
        MMFFTypingError: atoms MMFF cannot type (named with element and index) or missing
            parameters.
        ValueError: implicit hydrogens, unknown variant or dielectric options, a threshold
            without a conformer.
    """
    check_options(mol, variant, dielectric_model, dielectric_constant, nonbonded_threshold)
    work = Chem.Mol(mol)
    props = typed_properties(work, mol, variant)
    props.SetMMFFDielectricModel(2 if dielectric_model == "distance" else 1)
    props.SetMMFFDielectricConstant(dielectric_constant)
    n = work.GetNumAtoms()
    atom_types = np.array([props.GetMMFFAtomType(i) for i in range(n)], dtype=np.int64)
    charges = np.array([props.GetMMFFPartialCharge(i) for i in range(n)], dtype=np.float64)
    bonds = _bonds(work, props)
    angles = _angles(work, props, atom_types)
    return MMFFParameters(
        n_atoms=n,
        variant=variant,
        **bonds,
        **angles,
        **_stretch_bends(work, props, atom_types),
        **_out_of_plane(work, props),
        **_torsions(work, props),
        **_pairs(
            work,
            props,
            charges,
            dielectric_constant,
            nonbonded_threshold,
            ignore_interfragment_interactions,
            conf_id,
        ),
        charges=charges,
        atom_types=atom_types,
        dielectric_model=dielectric_model,
        dielectric_constant=float(dielectric_constant),
    )


def _array(values: list, dtype: type, width: int | None = None) -> np.ndarray:
    arr = np.array(values, dtype=dtype)
    if width is not None:
        arr = arr.reshape(-1, width)
    return arr


def _terms(prefix: str, width: int, rows: list[tuple], **columns: type) -> dict[str, np.ndarray]:
    """The arrays of one MMFF term from its rows ``(atom indices, *parameters)``.

    Returns:
        ``{prefix_idx: [M, width] int64}`` and ``{prefix_<name>: [M]}`` of each column's dtype,
        in the order of ``columns``.
    """
    out = {f"{prefix}_idx": _array([row[0] for row in rows], np.int64, width)}
    for c, (name, dtype) in enumerate(columns.items(), start=1):
        out[f"{prefix}_{name}"] = _array([row[c] for row in rows], dtype)
    return out


def _bonds(mol: Chem.Mol, props) -> dict[str, np.ndarray]:
    rows = []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        params = props.GetMMFFBondStretchParams(mol, i, j)
        if params:
            rows.append(((i, j), params[1], params[2]))
    return _terms("bond", 2, rows, kb=float, r0=float)


def _neighbour_pairs(atom: Chem.Atom) -> list[tuple[int, int]]:
    nbrs = [n.GetIdx() for n in atom.GetNeighbors()]
    return [(nbrs[a], nbrs[b]) for a in range(len(nbrs)) for b in range(a + 1, len(nbrs))]


def _angles(mol: Chem.Mol, props, atom_types: np.ndarray) -> dict[str, np.ndarray]:
    rows = []
    for atom in mol.GetAtoms():
        j = atom.GetIdx()
        linear = int(atom_types[j]) in LINEAR_ATOM_TYPES
        for i, k in _neighbour_pairs(atom):
            params = props.GetMMFFAngleBendParams(mol, i, j, k)
            if params:
                rows.append(((i, j, k), params[1], params[2], linear))
    return _terms("angle", 3, rows, ka=float, theta0=float, linear=bool)


def _stretch_bends(mol: Chem.Mol, props, atom_types: np.ndarray) -> dict[str, np.ndarray]:
    rows = []
    for atom in mol.GetAtoms():
        j = atom.GetIdx()
        if int(atom_types[j]) in LINEAR_ATOM_TYPES:
            continue
        for i, k in _neighbour_pairs(atom):
            params = props.GetMMFFStretchBendParams(mol, i, j, k)
            angle = props.GetMMFFAngleBendParams(mol, i, j, k)
            bond_ij = props.GetMMFFBondStretchParams(mol, i, j)
            bond_kj = props.GetMMFFBondStretchParams(mol, k, j)
            if params and angle and bond_ij and bond_kj:
                rows.append(((i, j, k), params[1], params[2], bond_ij[2], bond_kj[2], angle[2]))
    return _terms("stbn", 3, rows, kijk=float, kkji=float, r0ij=float, r0kj=float, theta0=float)


def _out_of_plane(mol: Chem.Mol, props) -> dict[str, np.ndarray]:
    idx, koop = [], []
    for atom in mol.GetAtoms():
        if atom.GetDegree() != 3:
            continue
        j = atom.GetIdx()
        a, b, c = (n.GetIdx() for n in atom.GetNeighbors())
        k = props.GetMMFFOopBendParams(mol, a, j, b, c)
        if k is None:
            continue
        # each neighbour in turn is the out-of-plane atom l
        for i, kk, ll in ((a, b, c), (a, c, b), (b, c, a)):
            idx.append((i, j, kk, ll))
            koop.append(k)
    return {"oop_idx": _array(idx, np.int64, 4), "oop_koop": _array(koop, np.float64)}


def _torsions(mol: Chem.Mol, props) -> dict[str, np.ndarray]:
    hybrid = (Chem.HybridizationType.SP2, Chem.HybridizationType.SP3)
    query = Chem.MolFromSmarts(_TORSION_BOND_SMARTS)
    idx, v = [], []
    for j, k in mol.GetSubstructMatches(query, maxMatches=1000):
        atom_j, atom_k = mol.GetAtomWithIdx(j), mol.GetAtomWithIdx(k)
        if atom_j.GetHybridization() not in hybrid or atom_k.GetHybridization() not in hybrid:
            continue
        central = mol.GetBondBetweenAtoms(j, k).GetIdx()
        for bond1 in atom_j.GetBonds():
            if bond1.GetIdx() == central:
                continue
            i = bond1.GetOtherAtomIdx(j)
            for bond2 in atom_k.GetBonds():
                if bond2.GetIdx() in (central, bond1.GetIdx()):
                    continue
                m = bond2.GetOtherAtomIdx(k)
                if m == i:
                    continue
                params = props.GetMMFFTorsionParams(mol, i, j, k, m)
                if params:
                    idx.append((i, j, k, m))
                    v.append(params[1:4])
    return {"torsion_idx": _array(idx, np.int64, 4), "torsion_v": _array(v, np.float64, 3)}


def _pairs(
    mol: Chem.Mol,
    props,
    charges: np.ndarray,
    dielectric_constant: float,
    nonbonded_threshold: float | None,
    ignore_interfragment: bool,
    conf_id: int,
) -> dict[str, np.ndarray]:
    n = mol.GetNumAtoms()
    topo = Chem.GetDistanceMatrix(mol)
    ii, jj = np.triu_indices(n, k=1)
    keep = topo[ii, jj] >= 3
    if ignore_interfragment:
        frag = np.zeros(n, dtype=np.int64)
        for f, atoms in enumerate(Chem.GetMolFrags(mol)):
            frag[list(atoms)] = f
        keep &= frag[ii] == frag[jj]
    if nonbonded_threshold is not None:
        pos = mol.GetConformer(conf_id).GetPositions()
        dist = np.linalg.norm(pos[ii] - pos[jj], axis=-1)
        keep &= dist <= 10.0 * nonbonded_threshold
    ii, jj = ii[keep], jj[keep]
    rstar, eps = [], []
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        params = props.GetMMFFVdWParams(i, j)
        rstar.append(params[2])
        eps.append(params[3])
    scale = np.where(topo[ii, jj] == 3, ELECTROSTATIC_14_SCALE, 1.0)
    return {
        "pair_idx": np.stack([ii, jj], axis=1).astype(np.int64).reshape(-1, 2),
        "pair_rstar": _array(rstar, np.float64),
        "pair_eps": _array(eps, np.float64),
        "pair_qq": charges[ii] * charges[jj] / dielectric_constant * scale,
    }
