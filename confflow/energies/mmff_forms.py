"""MMFF94's functional forms and their constants, shared by the torch terms and the OpenMM System.

Both :mod:`confflow.energies.mmff_terms` and :mod:`confflow.energies.mmff_openmm` evaluate
these forms in MMFF units (Angstrom, degrees, kcal/mol; Halgren 1996, constants as in RDKit's
MMFF):

* bond stretch: ``0.5 c1 kb dr^2 (1 + cs dr + 7/12 cs^2 dr^2)``;
* angle bend: ``0.5 c2 ka dth^2 (1 + cb dth)`` with ``dth`` in degrees; linear centres
  ``c1 ka (1 + cos th)``;
* stretch-bend: ``c1 (pi / 180) (k_ijk dr_ij + k_kji dr_kj) dth``, on the angle's atoms;
* out-of-plane: ``0.5 c2 koop chi^2``, ``chi`` the Wilson angle in degrees;
* torsion: ``0.5 (V1 (1 + cos phi) + V2 (1 - cos 2 phi) + V3 (1 + cos 3 phi))``;
* buffered 14-7 van der Waals:
  ``eps (1.07 R* / (r + 0.07 R*))^7 (1.12 R*^7 / (r^7 + 0.12 R*^7) - 2)``;
* buffered Coulomb: ``332.0716 q_i q_j / (D (r + 0.05)^n)``, ``n = 1`` (constant dielectric)
  or ``n = 2`` (distance-dependent), 1-4 pairs scaled by 0.75.
"""

from __future__ import annotations

import math

__all__ = ["C1", "C2", "C3", "CB", "COULOMB", "COULOMB_BUFFER", "CS", "DEG", "KCAL_TO_KJ"]

#: Thermochemical calorie: kcal/mol -> kJ/mol.
KCAL_TO_KJ = 4.184
#: ``c1``: mdyne A -> kcal/mol, MMFF's rounded literal.
C1 = 143.9325
#: ``cs``: cubic bond-stretch constant in 1/A.
CS = -2.0
#: Quartic bond-stretch factor ``7/12`` (multiplies ``cs^2``).
C3 = 7.0 / 12.0
#: Degrees per radian.
DEG = 180.0 / math.pi
#: ``c2 = c1 (pi / 180)^2``: bend constants in mdyne A/rad^2 -> kcal/mol/deg^2.
C2 = C1 / (DEG * DEG)
#: ``cb``: cubic angle-bend constant in 1/deg.
CB = -0.006981317
#: Coulomb constant in kcal A / (mol e^2).
COULOMB = 332.0716
#: Buffer added to the Coulomb distance, in A.
COULOMB_BUFFER = 0.05
