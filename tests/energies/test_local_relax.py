"""Batched relaxation of the local structure at fixed torsions (LocalRelaxation)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from confflow.coordinates import TorsionalEmbedding
from confflow.energies import LocalRelaxation, MMFFEnergy, TorsionalEnergy
from confflow.energies.local_relax import ANGLE_MARGIN
from confflow.energies.relax import relax_at_torsions
from confflow.testing import assert_not_above
from tests.coordinates.conftest import molecule

KJ_PER_KCAL = 4.184


def _setup(smiles: str = "CCOC(=O)c1ccc(N)cc1"):
    mol = molecule(smiles)
    emb = TorsionalEmbedding(mol, mol.embed(1, seed=1, mmff=True)[0])
    return mol, emb, MMFFEnergy(mol.rdkit_mol).double()


def _torsions(emb: TorsionalEmbedding, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, emb.dim, dtype=torch.float64, generator=gen) - 1) * math.pi


def test_relaxed_energy_is_the_rdkit_energy_of_its_conformers_with_torsions_held():
    mol, emb, cartesian = _setup()
    energy = TorsionalEnergy(cartesian, emb, relax_steps=4).double()
    theta = _torsions(emb, 16, 0)
    x = energy.positions(theta)
    e = energy.energy(theta)
    work = Chem.Mol(mol.rdkit_mol)
    work.AddConformer(Chem.Conformer(mol.n_atoms), assignId=True)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props)
    rdkit = np.array([ff.CalcEnergy((p * 10.0).ravel().tolist()) for p in x.numpy()])
    np.testing.assert_allclose(e.detach().numpy(), rdkit * KJ_PER_KCAL, atol=1e-6, rtol=0)
    held = (emb.project(x) - theta + math.pi) % (2 * math.pi) - math.pi
    assert held.abs().max() < 1e-9


def test_relaxation_lowers_every_energy_and_more_steps_lower_it_further():
    _, emb, cartesian = _setup()
    theta = _torsions(emb, 64, 1)
    energies = [
        TorsionalEnergy(cartesian, emb, relax_steps=k).double().energy(theta).detach()
        for k in (0, 1, 4, 12)
    ]
    for before, after in itertools.pairwise(energies):
        # a rejected step keeps the structure; its energy, recomputed, may differ by rounding
        assert_not_above(after, before)
    # conformers away from the reference relax by many kT (kJ/mol)
    assert (energies[0] - energies[-1]).median() > 5.0


def test_converged_relaxation_reaches_rdkits_constrained_minimum():
    """With enough steps, most conformers end at RDKit's minimum with the torsions held."""
    mol, emb, cartesian = _setup()
    theta = _torsions(emb, 48, 2)
    ours = TorsionalEnergy(cartesian, emb, relax_steps=30).double().energy(theta).detach()
    rdkit, _ = relax_at_torsions(mol.rdkit_mol, emb.embed(theta), emb.torsions)
    reference = cartesian.energy(rdkit)
    frozen = TorsionalEnergy(cartesian, emb).double().energy(theta).detach()
    close = (ours - reference).abs() < 0.5  # kJ/mol
    assert close.float().mean() > 0.75
    # where they differ, the frozen gap is still mostly closed
    assert ((ours - reference) / (frozen - reference).clamp_min(1e-6)).median() < 0.05


def test_relaxation_of_a_conformer_does_not_depend_on_its_batch():
    _, emb, cartesian = _setup()
    relaxation = LocalRelaxation(cartesian, emb, steps=6)
    theta = _torsions(emb, 32, 3)
    together = relaxation.relax(theta)
    alone = torch.cat([relaxation.relax(theta[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(alone, together[:5], rtol=0, atol=1e-10)
    assert torch.equal(relaxation.relax(theta), together)


def test_gradient_holds_the_relaxed_structure_and_matches_autograd_both_ways():
    """dE/dtheta at fixed relaxed structure: finite differences and autograd agree."""
    _, emb, cartesian = _setup("CCCCO")
    relaxation = LocalRelaxation(cartesian, emb, steps=4)
    theta = _torsions(emb, 4, 4)
    local = relaxation.relax(theta)
    assert torch.autograd.gradcheck(
        lambda t: relaxation.energy_at(t, local), (theta.clone().requires_grad_(True),)
    )
    energy = TorsionalEnergy(cartesian, emb, relax_steps=4).double()
    t = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(t).sum(), t)
    t2 = theta.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(relaxation.energy_at(t2, local).sum(), t2)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("steps", [0, 4])
def test_separate_terms_sum_to_the_energy_with_its_gradient_at_the_held_structure(steps):
    """Terms at the relaxed conformers: their sum is the energy, their gradients (autograd at
    the held structure) sum to the energy's, and each term's gradient matches finite
    differences at that structure."""
    _, emb, cartesian = _setup("CCCCO")
    energy = TorsionalEnergy(cartesian, emb, relax_steps=steps).double()
    theta = _torsions(emb, 4, 6)
    t = theta.clone().requires_grad_(True)
    e, terms = energy.energy_and_terms(t)
    assert terms.shape == (4, 7)
    torch.testing.assert_close(terms.sum(1), e, rtol=0, atol=1e-8)  # kJ/mol
    torch.testing.assert_close(e.detach(), energy.energy(theta))
    (grad_e,) = torch.autograd.grad(e.sum(), t, retain_graph=True)
    weights = torch.linspace(-1.0, 2.0, 7, dtype=torch.float64)
    (grad_w,) = torch.autograd.grad((terms @ weights).sum(), t, retain_graph=True)
    (grad_terms,) = torch.autograd.grad(terms.sum(), t)
    torch.testing.assert_close(grad_terms, grad_e, rtol=1e-6, atol=1e-6)  # kJ/mol/rad
    relaxation = energy.relaxation
    local = relaxation.relax(theta) if relaxation else None

    def weighted(th: torch.Tensor) -> torch.Tensor:
        x = emb.embed(th) if local is None else emb.ic(relaxation.internal(th, local))[0]
        return torch.stack(list(cartesian.term_energies(x).values()), dim=1) @ weights

    h = 1e-6
    for k in range(emb.dim):
        step = torch.zeros_like(theta)
        step[:, k] = h
        with torch.no_grad():
            fd = (weighted(theta + step) - weighted(theta - step)) / (2 * h)
        torch.testing.assert_close(grad_w[:, k], fd, rtol=1e-5, atol=1e-4)


def test_converged_gradient_is_the_total_derivative_of_the_relaxed_energy():
    """Envelope theorem: near a converged relaxation, d/dtheta of the relaxed energy."""
    _, emb, cartesian = _setup("CCCCO")
    energy = TorsionalEnergy(cartesian, emb, relax_steps=40).double()
    theta = _torsions(emb, 3, 5)
    t = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(t).sum(), t)
    h = 1e-4
    for k in range(emb.dim):
        step = torch.zeros_like(theta)
        step[:, k] = h
        fd = (energy.energy(theta + step) - energy.energy(theta - step)).detach() / (2 * h)
        torch.testing.assert_close(grad[:, k], fd, rtol=0.02, atol=0.05)  # kJ/mol/rad


def test_bad_arguments_are_rejected():
    _, emb, cartesian = _setup("CCCCO")
    with pytest.raises(ValueError, match="steps must be >= 0"):
        LocalRelaxation(cartesian, emb, steps=-1)
    other = MMFFEnergy(molecule("CCCCCO").rdkit_mol)
    with pytest.raises(ValueError, match="atoms"):
        LocalRelaxation(other, emb, steps=2)
    frozen = TorsionalEnergy(cartesian, emb, relax_steps=0)
    assert frozen.relaxation is None


def test_relaxation_starts_from_the_frozen_structure_with_near_linear_angles():
    """An alkyne's ~180 degree angles are kept as they are, not pulled inside a margin."""
    _, emb, cartesian = _setup("CC#CCO")
    n = emb.n_atoms
    assert float(emb.z_ref[n - 1 : 2 * n - 3].max()) > math.pi - ANGLE_MARGIN
    relaxation = LocalRelaxation(cartesian, emb, steps=4)
    theta = _torsions(emb, 8, 6)
    start = relaxation.reference.expand(8, -1)
    frozen = TorsionalEnergy(cartesian, emb).double().energy(theta)
    torch.testing.assert_close(relaxation.energy_at(theta, start), frozen)
    relaxed = relaxation.energy_at(theta, relaxation.relax(theta))
    assert_not_above(relaxed, frozen)
