"""Internal coordinates: Z-matrices, the Cartesian <-> internal bijection, normalisation, stereo.

Positions are ``[B, N, 3]`` in nm; bonds nm, angles and torsions rad.
"""

from confflow.coordinates.align import aligned_rmsd, kabsch_align
from confflow.coordinates.chirality import StereoCheck
from confflow.coordinates.internal import InternalCoordinates, internal_domain
from confflow.coordinates.normalize import InternalNormalization, structurally_rigid
from confflow.coordinates.torsional import TorsionalEmbedding, rotatable_bonds
from confflow.coordinates.zmatrix import ZMatrix, ZMatrixError

__all__ = [
    "InternalCoordinates",
    "InternalNormalization",
    "StereoCheck",
    "TorsionalEmbedding",
    "ZMatrix",
    "ZMatrixError",
    "aligned_rmsd",
    "internal_domain",
    "kabsch_align",
    "rotatable_bonds",
    "structurally_rigid",
]
