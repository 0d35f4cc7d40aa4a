"""The level's surrogate: its fit recovers known coefficients, and its energy adds kT * Delta_hat.

The synthetic difference ``Delta = sum_t beta_t (u_t - mean_t) + Fourier(theta) + c`` with noise
of 0.01 kT is recovered to 0.02 from 600 samples (the ridge's bias is about 1/600 relative).
"""

import math

import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confflow.chem import Molecule
from confflow.coordinates import TorsionalEmbedding
from confflow.energies import MMFFEnergy, TorsionalEnergy, kT
from confflow.generate.surrogate import (
    FOURIER_ORDER,
    SLOPE_FLOOR,
    SurrogateTorsionalEnergy,
    fit_level,
    fourier_features,
)

#: Slopes of the synthetic difference on three terms (all above the floor).
SLOPES = torch.tensor([-0.3, 0.5, -0.8], dtype=torch.float64)


def _synthetic(m: int, k: int, seed: int, slopes: torch.Tensor = SLOPES):
    """Torsions ``[m, k]``, terms ``[m, T]`` (kT, means 5, 10, ...), Delta ``[m]``, harmonics."""
    gen = torch.Generator().manual_seed(seed)
    theta = (torch.rand(m, k, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    means = 5.0 * torch.arange(1, len(slopes) + 1, dtype=torch.float64)
    terms = means + 2 * torch.randn(m, len(slopes), generator=gen, dtype=torch.float64)
    coef = torch.randn(2 * FOURIER_ORDER * k, generator=gen, dtype=torch.float64)
    delta = (terms - means) @ slopes + fourier_features(theta) @ coef + 1.5
    delta = delta + 0.01 * torch.randn(m, generator=gen, dtype=torch.float64)
    return theta, terms, delta, coef


def test_fourier_features_are_the_harmonics():
    theta = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    f = fourier_features(theta, order=2)
    expected = [math.cos(0.3), math.cos(0.6), math.cos(-1.2), math.cos(-2.4)]
    expected += [math.sin(0.3), math.sin(0.6), math.sin(-1.2), math.sin(-2.4)]
    torch.testing.assert_close(f[0], torch.tensor(expected, dtype=torch.float64))


def test_fit_recovers_known_coefficients():
    theta, terms, delta, coef = _synthetic(800, 3, seed=0)
    fit = fit_level(theta[:600], terms[:600], delta[:600])
    assert fit is not None and fit.samples >= 595
    torch.testing.assert_close(fit.slopes, SLOPES, rtol=0, atol=0.02)
    torch.testing.assert_close(fit.coef, coef, rtol=0, atol=0.02)
    assert fit.residual < 0.02
    # held-out samples of the same difference
    torch.testing.assert_close(fit(theta[600:], terms[600:]), delta[600:], rtol=0, atol=0.1)


def test_no_slope_falls_below_the_floor():
    """A term the level charges at -1.6 times MMFF's: its slope is held at the floor, and the
    other slopes and the harmonics are still recovered, to about 4 standard errors of the
    1.2 kT the floor leaves unfitted (0.02 kT for a slope, 0.06 kT for a harmonic)."""
    slopes = torch.tensor([-0.3, -1.6, 0.4], dtype=torch.float64)
    theta, terms, delta, coef = _synthetic(800, 3, seed=6, slopes=slopes)
    fit = fit_level(theta, terms, delta)
    assert fit is not None
    assert math.isclose(float(fit.slopes[1]), SLOPE_FLOOR, rel_tol=1e-12)
    torch.testing.assert_close(fit.slopes[[0, 2]], slopes[[0, 2]], rtol=0, atol=0.1)
    torch.testing.assert_close(fit.coef, coef, rtol=0, atol=0.25)


def test_outliers_and_strained_samples_do_not_tilt_the_fit():
    """5% of the samples 30 kT off (a proton moved) and 5% 200 kT up in MMFF (clashes)."""
    theta, terms, delta, coef = _synthetic(600, 3, seed=3)
    delta[::20] += 30.0
    terms[1::20, 2] += 200.0
    fit = fit_level(theta, terms, delta)
    assert fit is not None and fit.samples == 600 - 60
    torch.testing.assert_close(fit.slopes, SLOPES, rtol=0, atol=0.02)
    torch.testing.assert_close(fit.coef, coef, rtol=0, atol=0.02)
    assert fit.residual < 0.02


def test_too_few_samples_give_no_fit():
    theta, terms, delta, _ = _synthetic(20, 3, seed=1)  # 16 coefficients need 32 samples
    assert fit_level(theta, terms, delta) is None


def test_surrogate_energy_adds_kt_delta_hat_and_its_gradient():
    molecule = Molecule.from_smiles("CCCCO")
    mol = Chem.Mol(molecule.rdkit_mol)
    AllChem.EmbedMolecule(mol, randomSeed=1)
    AllChem.MMFFOptimizeMolecule(mol)
    reference = torch.from_numpy(mol.GetConformer().GetPositions()) / 10
    embedding = TorsionalEmbedding(molecule, reference.float())
    torsional = TorsionalEnergy(MMFFEnergy(molecule.rdkit_mol).double(), embedding).double()
    k = embedding.dim
    # one slope per MMFF term
    theta, terms, delta, _ = _synthetic(
        300, k, seed=2, slopes=torch.linspace(-0.6, 0.6, 7, dtype=torch.float64)
    )
    fit = fit_level(theta, terms, delta)
    surrogate = SurrogateTorsionalEnergy(torsional, fit, 300.0)
    t = torch.rand(5, k, generator=torch.Generator().manual_seed(4), dtype=torch.float64) - 0.5
    t = (3 * t).requires_grad_(True)
    e_ff = torsional.energy(t)
    kt = kT(300.0)
    parts = MMFFEnergy(molecule.rdkit_mol).double().term_energies(torsional.positions(t))
    expected = e_ff + kt * fit(t, torch.stack(list(parts.values()), dim=1) / kt)
    e = surrogate.energy(t)
    torch.testing.assert_close(e, expected)
    (grad,) = torch.autograd.grad(e.sum(), t)
    step = 1e-6
    for j in range(k):
        shift = torch.zeros_like(t)
        shift[:, j] = step
        with torch.no_grad():
            diff = (surrogate.energy(t + shift) - surrogate.energy(t - shift)) / (2 * step)
        torch.testing.assert_close(grad[:, j], diff, rtol=1e-5, atol=1e-4)


def test_kernel_term_follows_a_local_bump_and_fades_away_from_the_samples():
    """A 3 kT bump of 0.3 rad width, which two harmonics cannot carry, on samples of theta_1
    in (-1, 1): the kernel term takes the held-out residual from a third of a kT to under a
    third of that (0.34 -> 0.09 kT here), and adds nothing at theta_1 = pi, where no sample
    lies."""
    gen = torch.Generator().manual_seed(5)
    m = 1500
    theta = (torch.rand(m, 2, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    theta[:, 0] = theta[:, 0] / math.pi
    u = 20 + 3 * torch.randn(m, 1, generator=gen, dtype=torch.float64)  # one term, kT
    bump = 3.0 * torch.exp(-((theta - torch.tensor([0.2, 0.5])).square().sum(1)) / (2 * 0.09))
    delta = -0.3 * (u[:, 0] - 20) + torch.cos(theta[:, 1]) + bump
    fit = fit_level(theta[:1200], u[:1200], delta[:1200])
    assert fit is not None

    def parametric(th: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
        return (terms - fit.means) @ fit.slopes + fourier_features(th) @ fit.coef + fit.offset

    without = (parametric(theta, u) - delta)[1200:].square().mean().sqrt()
    with_kernel = (fit(theta, u) - delta)[1200:].square().mean().sqrt()
    assert without > 0.3
    assert with_kernel < without / 3
    far = torch.tensor([[math.pi, 0.5]], dtype=torch.float64)
    u_far = torch.tensor([[20.0]], dtype=torch.float64)
    kernel_far = fit(far, u_far) - parametric(far, u_far)
    assert abs(float(kernel_far[0])) < 1e-3
