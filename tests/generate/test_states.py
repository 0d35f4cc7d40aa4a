"""Conformational states in ``confflow generate``: found among the seeds, modelled as a mixture.

Methylcyclohexane (chairs with the methyl axial or equatorial, in mirror pairs) runs once with
a small budget; its outputs are checked for the states, their weights and the written tags.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from rdkit import Chem

from confflow.chem import Molecule
from confflow.chem.conformation import substituent_position
from confflow.chem.minima import harmonic_minima
from confflow.chem.states import StateElements, state_descriptor
from confflow.chem.stereo import rdkit_stereo_kept
from confflow.coordinates import TorsionalEmbedding
from confflow.energies import MMFFEnergy
from confflow.generate import GenerateConfig, GenerateError, run_generate
from confflow.generate.data import seed_conformers
from confflow.generate.model import build_model, load_model
from confflow.generate.stages import state_assignment
from confflow.generate.state_training import (
    DOMINANT_CLAIM,
    FIRST_ROUND,
    MIN_ROUND_S,
    ROUND_SHARE,
    _next_round,
    _state_frames,
    allocation_shares,
    expected_ess,
    first_round_share,
    variance_shares,
)
from confflow.generate.states import StateAssignment, check_rings, find_states
from confflow.models import StateMixture, local_entropy

SIX = (1, 2, 3, 4, 5, 6)


def _states(smiles: str):
    molecule = Molecule.from_smiles(smiles, stereo="first")
    x, _ = seed_conformers(molecule, 64, 1)
    return molecule, find_states(molecule, x, GenerateConfig(smiles, "x.sdf"))


def test_methylcyclohexane_has_two_mirrored_chair_states():
    _, states = _states("CC1CCCCC1")
    assert states.mirrored == (True, True)
    gap = float(states.energies[1] - states.energies[0])
    assert 4.5 < gap < 7.0  # MMFF94 axial penalty of the methyl, ~5.7 kJ/mol
    assert states.left_out >= 1  # twist-boats, ~25 kJ/mol up
    assert [e[1] for e in states.entries()] == [1, -1, 1, -1]


def test_secondary_amide_gets_its_cis_state_from_the_flip_proposal():
    molecule, states = _states("CNC(C)=O")
    elements = StateElements.from_molecule(molecule)
    cis = state_descriptor(elements, states.references).cis[:, 0].tolist()
    assert cis == [False, True]  # trans lowest
    assert states.mirrored == (False, False)  # the mirror of an amide isomer is the same state


def test_chiral_molecule_has_no_mirror_states():
    _, states = _states("CC(=O)N1CCC[C@H]1C(=O)OC")
    assert len(states.mirrored) >= 2 and not any(states.mirrored)


def test_relabelled_ring_states_share_one_flow():
    """A symmetric ring's chairs with the substituent on either arm are one state relabelled."""
    molecule, states = _states("C[C@@H](O)C1(O)CCCCC1")
    assert not any(states.mirrored)  # chiral: no mirror images
    relabelled = [(k, sign, p) for k, sign, p in states.entries() if p > 0]
    assert relabelled, "the ring's two arms swap: some state has a relabelled image"
    mmff = MMFFEnergy(molecule.rdkit_mol).double()
    for k, sign, p in relabelled:
        perm = states.permutations[p]
        # a graph automorphism: every bond maps onto a bond, the energy is the same
        bonds = {tuple(sorted(b)) for b in molecule.bonds}
        assert {tuple(sorted((int(perm[a]), int(perm[b])))) for a, b in bonds} == bonds
        image = states.image(k, sign, p)
        torch.testing.assert_close(
            mmff.energy(image[None]), mmff.energy(states.references[k][None]), rtol=1e-9, atol=0
        )
    # every image lands in its own cell, and the input's stereo is kept
    refs = torch.stack([states.image(*e) for e in states.entries()])
    assign = StateAssignment(molecule, refs)
    assert assign(refs).tolist() == list(range(len(refs)))
    assert bool(rdkit_stereo_kept(molecule, refs).all())


def test_macrocycle_is_refused_naming_the_ring():
    molecule = Molecule.from_smiles("OC1CCCCCCCCCCC1")
    with pytest.raises(GenerateError, match=r"ring of 12 atoms \(1-2-.*--model cartesian"):
        check_rings(molecule)


def test_mirror_image_reference_has_the_same_local_entropy():
    molecule, states = _states("CC1CCCCC1")
    config = GenerateConfig("CC1CCCCC1", "x.sdf")
    entropies = []
    for ref in (states.references[0], -states.references[0]):
        layout = {"model": "torsional", "reference": ref.tolist(), "relax_steps": 4}
        entropies.append(local_entropy(build_model(molecule, config, layout).energy))
    assert math.isclose(entropies[0], entropies[1], rel_tol=0.0, abs_tol=1e-4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("states") / "mch.sdf"
    config = GenerateConfig(
        "CC1CCCCC1", out, budget=8.0, md_ns=0.0, n=1500, progress=False, device="cpu"
    )
    return run_generate(config)


def test_report_lists_every_state_with_populations(run):
    report = json.loads(run.sdf.with_suffix(".json").read_text())
    assert report["model"] == "states"
    states = report["states"]
    assert len(states) == 4 and [s["mirror"] for s in states] == [False, True, False, True]
    assert math.isclose(sum(s["population"] for s in states), 1.0, rel_tol=1e-9)
    assert math.isclose(sum(s["pi"] for s in states), 1.0, rel_tol=1e-9)
    assert sum(s["samples"] for s in states) == report["samples_kept"]
    axial = states[2]["population"] + states[3]["population"]
    assert 0.02 < axial < 0.2  # MMFF94: ~6% axial at 300 K
    assert "c_k" in report["target"]


def test_axial_population_matches_the_harmonic_reference(run):
    """Against a reference computed without the generator: harmonic free energies of every
    MMFF94 minimum (the target omits nothing a factor 1.5 would hide: ~6% axial)."""
    molecule = Molecule.from_smiles("CC1CCCCC1")
    minima = harmonic_minima(molecule, n_conformers=100)
    axial = substituent_position(minima.x, (1, 2, 3, 4, 5, 6), 1, 0)
    reference = float(minima.population[axial].sum())
    states = json.loads(run.sdf.with_suffix(".json").read_text())["states"]
    generated = states[2]["population"] + states[3]["population"]
    assert 1 / 1.5 < generated / reference < 1.5


def test_sdf_state_tags_match_the_geometry(run):
    records = list(Chem.SDMolSupplier(str(run.sdf), removeHs=False))
    molecule = Molecule.from_smiles("CC1CCCCC1")
    elements = StateElements.from_molecule(molecule)
    x = torch.from_numpy(np.stack([r.GetConformer().GetPositions() for r in records])) / 10.0
    chirality = state_descriptor(elements, x).chirality[:, 0]
    ring = state_descriptor(elements, x).ring_torsions[:, 0]
    state = torch.tensor([int(r.GetProp("state")) for r in records])
    names = [r.GetProp("conformation") for r in records]
    report = json.loads(run.sdf.with_suffix(".json").read_text())
    for e, entry in enumerate(report["states"]):
        axial = "(0 ax)" in entry["conformation"]
        assert axial == (e >= 2)  # states 0/1: equatorial chairs, 2/3: axial
        assert all(("(0 ax)" in n) == axial for n, s in zip(names, state, strict=True) if s == e)
    for e in range(4):
        members = state == e
        assert bool(members.any())
        # one state, one chair orientation and one side of the methyl
        assert len(set(chirality[members].tolist())) == 1
        assert len(set(torch.sign(ring[members]).tolist())) == 1


def test_state_mixture_log_prob_is_the_sampled_density(run):
    molecule = Molecule.from_smiles("CC1CCCCC1")
    config = GenerateConfig("CC1CCCCC1", run.sdf)
    model, _ = load_model(run.checkpoint, molecule, config)
    assert isinstance(model, StateMixture)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        x, entry = model.sample(64, gen)
        log_q = model.log_prob(x, entry)
        for e, (k, _, _) in enumerate(model.entries):
            rows = entry == e
            component = model.components[k]
            theta = component.energy.embedding.project(model.from_entry(e, x[rows]))
            # the torsions rebuild the conformer: positions are a function of them
            again = model.to_entry(e, component.energy.positions(theta))
            torch.testing.assert_close(again, x[rows], atol=1e-5, rtol=0)
            direct = model.log_pi[e] + component.log_prob(theta.float()).double()
            torch.testing.assert_close(log_q[rows], direct)


def test_entry_references_are_assigned_to_their_own_states():
    molecule, states = _states("CC1CCCCC1")
    entries = states.entries()
    refs = torch.stack([states.image(*e) for e in entries])
    assign = StateAssignment(molecule, refs)
    assert assign(refs).tolist() == list(range(len(entries)))
    # a methyl-axial conformer is not in an equatorial state: the minima of other states land
    # in their own cells
    x, _ = seed_conformers(molecule, 32, 7)
    labels = assign(x)
    assert bool((labels >= 0).all())
    assert len(set(labels.tolist())) >= 2


def test_isomer_bonds_are_held_in_the_torsional_embedding():
    molecule = Molecule.from_smiles("CNC(C)=O")
    x, _ = seed_conformers(molecule, 1, 1)
    free = TorsionalEmbedding(molecule, x[0])
    held = TorsionalEmbedding(molecule, x[0], rigid_bonds=((2, 1),))
    assert held.dim == free.dim - 1
    with pytest.raises(ValueError, match="do not rotate"):
        TorsionalEmbedding(molecule, x[0], rigid_bonds=((2, 4),))  # C=O


def test_secondary_amide_samples_keep_their_isomer(tmp_path):
    torch.set_num_threads(1)
    config = GenerateConfig(
        "CNC(C)=O", tmp_path / "nma.sdf", budget=3.0, md_ns=0.0, n=400, progress=False
    )
    result = run_generate(config)
    report = result.report_data
    assert report["model"] == "states" and len(report["states"]) == 2
    records = list(Chem.SDMolSupplier(str(result.sdf), removeHs=False))
    x = torch.from_numpy(np.stack([r.GetConformer().GetPositions() for r in records])) / 10.0
    state = torch.tensor([int(r.GetProp("state")) for r in records])
    cis = state_descriptor(StateElements.from_molecule(Molecule.from_smiles("CNC(C)=O")), x).cis
    assert torch.equal(cis[:, 0], state == 1)  # state 1 is the cis amide
    cis_population = report["states"][1]["population"]
    assert 1e-3 < cis_population < 0.1  # MMFF94: cis ~9 kJ/mol above trans


def test_macrocycle_run_writes_nothing(tmp_path):
    out = tmp_path / "macro.sdf"
    with pytest.raises(GenerateError, match="macrocycle"):
        run_generate(GenerateConfig("OC1CCCCCCCCCCC1", out, progress=False))
    assert list(tmp_path.iterdir()) == []


def test_rigid_molecule_samples_both_chairs_with_harmonic_weights(tmp_path):
    """No rotatable bond: each state is its relaxed reference, weighted by its harmonic free
    energy; the axial/equatorial split of fluorocyclohexane against the independent reference."""
    torch.set_num_threads(1)
    config = GenerateConfig("FC1CCCCC1", tmp_path / "f.sdf", md_ns=0.0, n=2000, progress=False)
    report = run_generate(config).report_data
    assert report["model"] == "states"
    axial = sum(s["population"] for s in report["states"] if "(0 ax)" in s["conformation"])
    molecule = Molecule.from_smiles("FC1CCCCC1")
    minima = harmonic_minima(molecule, n_conformers=100)
    reference = float(minima.population[substituent_position(minima.x, SIX, 1, 0)].sum())
    assert 0.3 < reference < 0.8  # MMFF94 puts fluorine axial more than half the time
    assert 1 / 1.5 < axial / reference < 1.5


def test_each_state_learns_from_the_frames_in_its_own_cells(run):
    molecule = Molecule.from_smiles("CC1CCCCC1")
    model, _ = load_model(run.checkpoint, molecule, GenerateConfig("CC1CCCCC1", run.sdf))
    assign = state_assignment(model, molecule)
    frames, _ = seed_conformers(molecule, 64, 3)
    entries = assign(frames)
    own = _state_frames(model, frames, entries, min_frames=1)
    plus = {k: e for e, (k, sign, p) in enumerate(model.entries) if sign == 1 and p == 0}
    for k, x in enumerate(own):
        held = sum(int((entries == e).sum()) for e, (c, _, _) in enumerate(model.entries) if c == k)
        assert x.shape[0] == held
        # mirror-image frames come back as the component's own conformers
        assert set(assign(x).tolist()) <= {plus[k]}
    # too few frames in a state's cells: it learns from all of them
    every = _state_frames(model, frames, entries, min_frames=65)
    assert all(x.shape[0] == 64 for x in every)


def test_later_rounds_go_to_the_state_that_limits_the_ess():
    # P_k / ESS_k: a well-trained major state costs less than a poor minor one
    shares = variance_shares(torch.tensor([0.8, 0.2]), torch.tensor([0.8, 0.05]))
    torch.testing.assert_close(shares, torch.tensor([0.2, 0.8]))
    # a poorly fitted state whose estimate says 3% but whose reference says 30% claims the
    # round by the larger of the two; by its estimate alone it would not
    population, reference = torch.tensor([0.97, 0.03]), torch.tensor([0.7, 0.3])
    ess = torch.tensor([0.12, 0.005])
    assert int(torch.argmax(variance_shares(population, ess))) == 0
    claims = allocation_shares(population, reference, ess)
    assert int(torch.argmax(claims)) == 1
    torch.testing.assert_close(claims.sum(), torch.tensor(1.0))


def test_later_rounds_take_a_part_of_the_time_left_or_all_of_it():
    claims = torch.tensor([0.2, 0.7, 0.1, 0.0])
    assert _next_round(claims, 300.0, []) == (1, 300.0 * ROUND_SHARE)
    assert _next_round(claims, 2 * MIN_ROUND_S, []) == (1, MIN_ROUND_S)
    # a rest below twice the minimum is one last round
    assert _next_round(claims, 1.5 * MIN_ROUND_S, []) == (1, 1.5 * MIN_ROUND_S)
    # a state with nine tenths of the claims takes all the time left
    for part, whole in ((DOMINANT_CLAIM + 0.01, True), (DOMINANT_CLAIM - 0.01, False)):
        claims = torch.tensor([1 - part, part, 0.0], dtype=torch.float64)
        assert _next_round(claims, 300.0, []) == (1, 300.0 if whole else 300.0 * ROUND_SHARE)
        # past the budget, the extension goes in rounds: the claims are weighed again
        assert _next_round(claims, 300.0, [], extension=True) == (1, 300.0 * ROUND_SHARE)


def test_a_plateaued_state_leaves_the_rounds_to_the_others():
    # the largest claim has plateaued: the next one takes the round, and all of the time left
    # where it holds nine tenths of the claims still open
    claims = torch.tensor([0.25, 0.55, 0.2, 0.0], dtype=torch.float64)
    assert _next_round(claims, 300.0, [1]) == (0, 300.0 * ROUND_SHARE)
    assert _next_round(claims, 300.0, [0, 1]) == (2, 300.0)
    # a state below a tenth of all the claims is not worth a round once another has plateaued
    claims = torch.tensor([0.95, 0.05], dtype=torch.float64)
    assert _next_round(claims, 300.0, [0]) is None
    assert _next_round(claims, 300.0, []) == (0, 300.0)
    assert _next_round(claims, 300.0, [0, 1]) is None


def test_expected_ess_of_the_mixture_counts_each_state_with_its_guarded_population():
    # two states of half the population at 20% and 5% of their own: 1 / (0.5/0.2 + 0.5/0.05)
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    ess = torch.tensor([0.2, 0.05], dtype=torch.float64)
    assert math.isclose(expected_ess(half, torch.zeros(2, dtype=torch.float64), ess), 0.08)
    # one state alone: its own ESS
    one = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert math.isclose(expected_ess(one, one, ess), 0.2)
    # a state estimated at 0% but expected at 50% by its reference counts: the larger of the
    # two populations, renormalised to (2/3, 1/3)
    reference = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert math.isclose(expected_ess(one, reference, ess), 1 / (2 / 3 / 0.2 + 1 / 3 / 0.05))


def test_a_budget_too_short_for_a_later_round_goes_whole_to_the_first():
    # the default 120 s leaves 72 s to the later rounds
    assert first_round_share(120.0, 2) == FIRST_ROUND
    # 40 s would leave 24 s, less two estimates: no later round, so no time set aside
    assert first_round_share(40.0, 2) == 1.0
    assert first_round_share(2 * MIN_ROUND_S / (1 - FIRST_ROUND), 2) == FIRST_ROUND
    # one trainable state (the others rigid, or images of it): later rounds could only split
    # its training
    assert first_round_share(120.0, 1) == 1.0
    assert first_round_share(120.0, 0) == 1.0
