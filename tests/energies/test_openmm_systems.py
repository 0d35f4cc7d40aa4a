import mdtraj
import numpy as np
import openmm
import pytest
from openmm import unit

from confflow.energies.systems import (
    ALANINE_DIPEPTIDE_SYSTEMS,
    ALDP_PHI,
    ALDP_PSI,
    alanine_dipeptide,
)


def force_names(system: openmm.System) -> set[str]:
    return {type(f).__name__ for f in system.getForces()}


@pytest.mark.parametrize("name", ALANINE_DIPEPTIDE_SYSTEMS)
def test_systems_have_no_constraints_and_no_box(name):
    ref = alanine_dipeptide(name)
    assert ref.system.getNumParticles() == 22 == ref.topology.getNumAtoms()
    assert ref.system.getNumConstraints() == 0
    assert not ref.system.usesPeriodicBoundaryConditions()
    assert ref.positions.shape == (22, 3) and ref.positions.dtype == np.float64
    assert ref.temperature == 300.0


@pytest.mark.parametrize("name", ALANINE_DIPEPTIDE_SYSTEMS)
def test_backbone_torsion_atoms_are_the_ones_mdtraj_finds(name):
    topology = mdtraj.Topology.from_openmm(alanine_dipeptide(name).topology)
    phi = mdtraj.geometry.dihedral.indices_phi(topology)
    psi = mdtraj.geometry.dihedral.indices_psi(topology)
    assert [tuple(a) for a in phi] == [ALDP_PHI]
    assert [tuple(a) for a in psi] == [ALDP_PSI]


def test_solvent_models():
    assert "GBSAOBCForce" not in force_names(alanine_dipeptide("aldp-vacuum").system)
    assert "CustomGBForce" not in force_names(alanine_dipeptide("aldp-vacuum").system)
    assert "GBSAOBCForce" in force_names(alanine_dipeptide("aldp").system)
    assert "CustomGBForce" in force_names(alanine_dipeptide("aldp-ff96").system)


def test_ff96_equals_openmmtools_alanine_dipeptide_implicit():
    testsystems = pytest.importorskip("openmmtools.testsystems")
    theirs = testsystems.AlanineDipeptideImplicit(constraints=None)
    ours = alanine_dipeptide("aldp-ff96")
    serialize = openmm.XmlSerializer.serialize
    assert serialize(ours.system) == serialize(theirs.system)
    expected = theirs.positions.value_in_unit(unit.nanometer)
    assert np.array_equal(ours.positions, np.asarray(expected))


def test_unknown_name():
    with pytest.raises(ValueError, match="name: unknown alanine dipeptide system 'aldp-x'"):
        alanine_dipeptide("aldp-x")
