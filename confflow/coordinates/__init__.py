"""Internal coordinates: Z-matrices, the Cartesian <-> internal bijection, normalisation, stereo.

Positions are ``[B, N, 3]`` in nm; bonds nm, angles and torsions rad.
"""

from confflow.coordinates.internal import InternalCoordinates, internal_domain
from confflow.coordinates.zmatrix import ZMatrix, ZMatrixError

__all__ = ["InternalCoordinates", "ZMatrix", "ZMatrixError", "internal_domain"]
