import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from confflow.energies.openmm_gb import UnsupportedCustomGBError
from confflow.energies.openmm_torch import OpenMMSystemEnergy, UnsupportedForceError
from confflow.energies.systems import _openmmtools_data, alanine_dipeptide

E_ABS, E_REL, F_ABS = 1e-4, 1e-6, 1e-3  # kJ/mol, relative, kJ/mol/nm (acceptance criteria)


def reference(system: openmm.System, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ctx = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    energies, forces = [], []
    for x in positions:
        ctx.setPositions(x)
        state = ctx.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        )
    return np.array(energies), np.array(forces)


def md_snapshots(system: openmm.System, start: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` snapshots 100 fs apart from Langevin MD at 300 K (1 fs steps, no constraints)."""
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.001)
    integrator.setRandomNumberSeed(seed)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(start)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    integrator.step(200)
    frames = []
    for _ in range(n):
        integrator.step(100)
        frames.append(
            ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        )
    return np.array(frames)


def configurations(system: openmm.System, start: np.ndarray, seed: int) -> np.ndarray:
    """MD snapshots, the same snapshots distorted by 0.01 and 0.03 nm noise, and the start."""
    md = md_snapshots(system, start, 6, seed)
    rng = np.random.default_rng(seed)
    distorted = [md + scale * rng.standard_normal(md.shape) for scale in (0.01, 0.03)]
    return np.concatenate([md, *distorted, start[None]])


def assert_matches_openmm(system: openmm.System, x: np.ndarray) -> None:
    e_ref, f_ref = reference(system, x)
    energy = OpenMMSystemEnergy(system)
    e, f = energy.energy_and_forces(torch.as_tensor(x))
    e_err = np.abs(e.numpy() - e_ref)
    assert (e_err <= E_ABS + E_REL * np.abs(e_ref)).all(), f"energy errors {e_err.max():.2e}"
    f_err = np.abs(f.numpy() - f_ref).max()
    assert f_err <= F_ABS, f"force error {f_err:.2e} kJ/mol/nm"


@pytest.fixture(scope="module", params=["aldp-vacuum", "aldp", "aldp-ff96"])
def aldp_case(request):
    ref = alanine_dipeptide(request.param)
    return ref, configurations(ref.system, ref.positions, seed=len(request.param))


def test_matches_openmm_reference_on_md_and_distorted(aldp_case):
    ref, x = aldp_case
    assert_matches_openmm(ref.system, x)


def test_energy_gradient_is_minus_forces_and_float32_is_close(aldp_case):
    ref, x = aldp_case
    energy = OpenMMSystemEnergy(ref.system)
    x64 = torch.as_tensor(x).requires_grad_(True)
    e64 = energy(x64)
    (grad,) = torch.autograd.grad(e64.sum(), x64)
    _, forces = energy.energy_and_forces(x64.detach())
    assert torch.equal(grad, -forces)
    e32, f32 = energy.energy_and_forces(x64.detach().float())
    assert e32.dtype == torch.float32
    assert torch.allclose(e32.double(), e64.detach(), rtol=1e-5, atol=1e-2)
    assert (f32.double() - forces).abs().max() <= 1e-4 * forces.abs().max()


def test_each_force_alone_matches_openmm():
    """Per-force comparison on a distorted structure, so a wrong term cannot hide."""
    ref = alanine_dipeptide("aldp")
    x = ref.positions[None] + 0.02 * np.random.default_rng(1).standard_normal((3, 22, 3))
    for i, force in enumerate(ref.system.getForces()):
        if isinstance(force, openmm.CMMotionRemover):
            continue
        single = openmm.System()
        for _ in range(ref.system.getNumParticles()):
            single.addParticle(1.0)
        single.addForce(openmm.XmlSerializer.clone(ref.system.getForce(i)))
        assert_matches_openmm(single, x)


def test_obc2_custom_gb_matches_openmm():
    """The OBC2 member of OpenMM's CustomGBForce family (other tanh coefficients, ACE on)."""
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    ref = alanine_dipeptide("aldp")
    system = openmm.XmlSerializer.clone(ref.system)
    index = next(i for i, f in enumerate(system.getForces()) if isinstance(f, openmm.GBSAOBCForce))
    native = system.getForce(index)
    custom = GBSAOBC2Force(solventDielectric=native.getSolventDielectric(), SA="ACE")
    for i in range(native.getNumParticles()):
        charge, radius, scale = native.getParticleParameters(i)
        custom.addParticle([charge, radius, scale])
    custom.finalize()
    system.removeForce(index)
    system.addForce(custom)
    x = ref.positions[None] + 0.02 * np.random.default_rng(2).standard_normal((4, 22, 3))
    assert_matches_openmm(system, x)


@pytest.mark.slow
def test_compiled_matches_eager():
    ref = alanine_dipeptide("aldp-ff96")
    x = torch.as_tensor(
        ref.positions[None] + 0.01 * np.random.default_rng(3).standard_normal((16, 22, 3))
    )
    e_eager, f_eager = OpenMMSystemEnergy(ref.system).energy_and_forces(x)
    e_comp, f_comp = OpenMMSystemEnergy(ref.system, compile=True).energy_and_forces(x)
    assert torch.allclose(e_comp, e_eager, rtol=1e-12, atol=1e-9)
    assert torch.allclose(f_comp, f_eager, rtol=1e-10, atol=1e-8)


def test_unsupported_forces_are_all_listed():
    ref = alanine_dipeptide("aldp-vacuum")
    system = openmm.XmlSerializer.clone(ref.system)
    system.addForce(openmm.CustomExternalForce("x^2"))
    system.addForce(openmm.CustomBondForce("r^2"))
    with pytest.raises(UnsupportedForceError, match="CustomExternalForce, CustomBondForce"):
        OpenMMSystemEnergy(system)


def test_cutoff_and_periodic_nonbonded_are_rejected():
    system = openmm.XmlSerializer.clone(alanine_dipeptide("aldp-vacuum").system)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffNonPeriodic)
    with pytest.raises(UnsupportedForceError, match="NonbondedForce with nonbonded method"):
        OpenMMSystemEnergy(system)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"implicitSolvent": app.GBn}, "tabulated functions are not supported"),
        (
            {"implicitSolvent": app.OBC1, "implicitSolventSaltConc": 0.15},
            "salt screening|not an OBC",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Non-optimal GB parameters")
def test_unsupported_custom_gb_is_rejected(kwargs, match):
    prmtop = app.AmberPrmtopFile(str(_openmmtools_data() / "alanine-dipeptide.prmtop"))
    system = prmtop.createSystem(constraints=None, nonbondedCutoff=None, **kwargs)
    with pytest.raises(UnsupportedCustomGBError, match=match):
        OpenMMSystemEnergy(system)


def test_modified_custom_gb_expression_is_rejected():
    system = openmm.XmlSerializer.clone(alanine_dipeptide("aldp-ff96").system)
    gb = next(f for f in system.getForces() if isinstance(f, openmm.CustomGBForce))
    expression, kind = gb.getEnergyTermParameters(2)
    gb.setEnergyTermParameters(
        2, expression.replace("charge1*charge2/f", "charge1*charge2/f^2"), kind
    )
    with pytest.raises(UnsupportedCustomGBError, match="is not an OBC term"):
        OpenMMSystemEnergy(system)


def test_wrong_shape_is_rejected():
    energy = OpenMMSystemEnergy(alanine_dipeptide("aldp-vacuum").system)
    with pytest.raises(ValueError, match=r"expected positions of shape \[B, 22, 3\]"):
        energy(torch.zeros(2, 21, 3))


def test_blocks_give_the_same_result_as_one_batch():
    ref = alanine_dipeptide("aldp")
    x = torch.as_tensor(
        ref.positions[None] + 0.01 * np.random.default_rng(4).standard_normal((10, 22, 3))
    )
    e_one, f_one = OpenMMSystemEnergy(ref.system).energy_and_forces(x)
    e_blocks, f_blocks = OpenMMSystemEnergy(ref.system, block_size=4).energy_and_forces(x)
    assert torch.allclose(e_blocks, e_one, rtol=1e-13, atol=1e-10)
    assert torch.allclose(f_blocks, f_one, rtol=1e-13, atol=1e-10)
    with pytest.raises(ValueError, match="block_size: must be >= 1"):
        OpenMMSystemEnergy(ref.system, block_size=0)
