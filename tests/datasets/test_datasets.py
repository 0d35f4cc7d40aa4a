import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from confflow.chem import MoleculeError
from confflow.datasets import (
    CACHE_ENV,
    DATASETS,
    cache_dir,
    dataset_path,
    generate,
    get_recipe,
    load,
    phi_free_energy,
    time_block_split,
)
from confflow.md import MDInputError, read_frames


def test_registry_has_the_issue_datasets_with_sizes_and_costs():
    for name in ("aldp", "aldp-ff96", "aldp-vacuum", "aldp-reference", "aldp-rex", "aldp-small"):
        recipe = DATASETS[name]
        assert recipe.n_frames > 0 and recipe.size_mb > 0 and recipe.cpu_hours > 0
        assert recipe.config.temperature == 300.0
        assert name in recipe.describe() and "core-h" in recipe.describe()
    reference = DATASETS["aldp-reference"]
    assert reference.umbrella.n_windows == 72 and reference.umbrella.n_chains == 4
    assert reference.n_frames == 4 * 72 * 1000 and "4 chains x 72 windows" in reference.describe()
    assert DATASETS["aldp-rex"].replicas.n_replicas == 4
    assert DATASETS["aldp-small"].n_frames == 200
    # ff96 runs at ~75 ns/day here: 1 ns costs hours, the vacuum system minutes
    assert DATASETS["aldp-ff96"].cpu_hours > 10 * DATASETS["aldp-vacuum"].cpu_hours


def test_smiles_recipes_and_bad_names():
    recipe = get_recipe("smiles:CCO")
    assert recipe.system == "smiles:CCO" and recipe.n_atoms == 9 and recipe.n_frames == 1000
    with pytest.raises(MDInputError, match="dataset: unknown dataset 'nope'"):
        get_recipe("nope")
    with pytest.raises(MoleculeError, match="SMILES 'C1CC': invalid SMILES"):
        get_recipe("smiles:C1CC")
    path = dataset_path("smiles:CC(=O)O", "/cache")
    assert path.parent == Path("/cache") and "/" not in path.name and "(" not in path.name
    assert dataset_path("smiles:CC(=O)O", "/c") != dataset_path("smiles:CC(=O)N", "/c")


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == tmp_path / "xdg" / "confflow"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "confflow"


def test_time_block_split_is_contiguous_and_complete():
    train, val, test = time_block_split(1000)
    assert (train, val, test) == (slice(0, 800), slice(800, 900), slice(900, 1000))
    parts = time_block_split(7, (0.5, 0.25, 0.25))
    assert [len(range(7)[p]) for p in parts] == [4, 2, 1]
    with pytest.raises(ValueError, match="fractions: need three positive fractions"):
        time_block_split(100, (0.8, 0.3, -0.1))
    with pytest.raises(ValueError, match="n_frames: 3 frames are too few"):
        time_block_split(3)


def test_generate_and_load_aldp_small(tmp_path):
    with pytest.raises(MDInputError, match="dataset: 'aldp-small' is not in the cache"):
        load("aldp-small", tmp_path)
    result = generate("aldp-small", tmp_path)
    assert result.n_frames == 200 and result.trajectory.parent == tmp_path / "aldp-small"
    assert generate("aldp-small", tmp_path).wall_s == 0.0  # cached, not rerun
    splits = load("aldp-small", tmp_path)
    assert splits.train.shape == (160, 22, 3) and splits.validation.shape == (20, 22, 3)
    assert splits.test.shape == (20, 22, 3) and splits.topology.n_atoms == 22
    frames = read_frames(result.trajectory)
    np.testing.assert_array_equal(splits.train.numpy(), frames.positions[:160])
    np.testing.assert_array_equal(splits.test.numpy(), frames.positions[180:])
    np.testing.assert_array_equal(splits.energies[1].numpy(), frames.potential_energy[160:180])
    est = phi_free_energy(result.trajectory, n_blocks=5)
    assert est.n_frames == 200 and 0.0 <= est.fraction < 0.2


def test_cli_datasets_generate_and_errors(tmp_path):
    cmd = [sys.executable, "-m", "confflow", "datasets", "generate"]
    done = subprocess.run(
        [*cmd, "aldp-small", "--cache", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "frames      200" in done.stdout and "F(phi>0) - F(phi<0)" in done.stdout
    umbrella = subprocess.run(
        [*cmd, "aldp-reference-small", "--cache", str(tmp_path), "--no-progress", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert umbrella.returncode == 0, umbrella.stderr
    assert "frames      640" in umbrella.stdout and "F(phi>0) - F(phi<0)" in umbrella.stdout
    assert "chain 0 alone" in umbrella.stdout and "chain 1 alone" in umbrella.stdout
    bad = subprocess.run([*cmd, "nope", "--cache", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: dataset: unknown dataset 'nope'"), bad.stderr
