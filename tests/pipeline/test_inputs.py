"""Input files, settings, file checksums and jobqueue YAML: no cluster needed."""

from pathlib import Path

import pytest
import yaml

from confflow.chem import Molecule, write_sdf
from confflow.pipeline import PipelineConfig, PipelineError, load_jobqueue, read_inputs
from confflow.pipeline.files import describe_files, files_match

from .conftest import REPO, write_lines


def test_smiles_file_names_comments_header_and_duplicates(tmp_path):
    path = write_lines(
        tmp_path / "in.smi",
        ["SMILES name", "# a comment", "", "CCO ethanol", "C1CC1", "XYZ bad one", "CCO ethanol"],
    )
    items = read_inputs(path)
    assert [i.smiles for i in items] == ["CCO", "C1CC1", "XYZ", "CCO"]
    assert [i.name for i in items] == ["ethanol", "mol-00002", "bad_one", "ethanol-00004"]
    assert [i.index for i in items] == [1, 2, 3, 4]
    assert all(i.error is None for i in items)


def test_sdf_records_keep_names_and_report_unreadable_ones(tmp_path):
    mol = Molecule.from_smiles("CC(O)C", stereo="first")
    path = tmp_path / "in.sdf"
    write_sdf(path, mol, mol.embed(2, seed=1))
    text = path.read_text()
    path.write_text(text + "garbage\n  no atoms here\n\n  0  0  0  0\nM  END\n$$$$\n")
    items = read_inputs(path)
    assert len(items) == 3
    assert items[0].error is None
    assert Molecule.from_smiles(items[0].smiles).n_atoms == mol.n_atoms
    assert items[2].smiles == ""
    assert "SDF record 3" in items[2].error


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot read"),
        ("", "no molecules"),
        ("# only a comment\n\n", "no molecules"),
        (b"\xff\xfe\x00binary", r"cannot read \(not a text file\)"),
    ],
)
def test_bad_input_files(tmp_path, content, match):
    path = tmp_path / "in.smi"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(PipelineError, match=rf"input .*in\.smi: {match}"):
        read_inputs(path)


def test_directory_as_input(tmp_path):
    with pytest.raises(PipelineError, match="cannot read"):
        read_inputs(tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_seeds", 0, "n_seeds: must be a positive integer"),
        ("n_samples", 0, "n_samples: must be a positive integer"),
        ("budget", 0.0, "budget: must be positive"),
        ("md_ns", -1.0, "md_ns: must be >= 0"),
        ("t_max", 250.0, "t_max: 250.0 K must exceed"),
        ("device", "tpu", "device: expected 'auto', 'cpu' or 'cuda"),
        ("energy", "gaff", "energy: unknown force field 'gaff'"),
        ("retries", -1, "retries: must be a non-negative integer"),
        ("model", "spline", "model: unknown model 'spline'"),
        ("unique", -0.1, "unique: RMSD must be positive"),
        ("bootstrap", 0, "bootstrap: must be a positive integer"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(PipelineError, match=match):
        PipelineConfig(**{field: value})


def test_config_unknown_key_and_fingerprint():
    with pytest.raises(PipelineError, match=r"settings: unknown keys \['budgett'\]"):
        PipelineConfig.from_dict({"budgett": 3}, where="settings")
    base = PipelineConfig()
    assert base.fingerprint("CCO") == PipelineConfig(retries=5, threads=2).fingerprint("CCO")
    assert base.fingerprint("CCO") != PipelineConfig(budget=10).fingerprint("CCO")
    assert base.fingerprint("CCO") != PipelineConfig(unique=0.05).fingerprint("CCO")
    assert base.fingerprint("CCO") != base.fingerprint("CCC")
    assert PipelineConfig.from_dict(base.to_dict()) == base


def test_files_match_detects_changed_and_missing_files(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"1234")
    record = describe_files(tmp_path, ["x.bin"])
    assert files_match(tmp_path, record)
    (tmp_path / "x.bin").write_bytes(b"1235")  # same size, other content
    assert not files_match(tmp_path, record)
    (tmp_path / "x.bin").unlink()
    assert not files_match(tmp_path, record)
    assert not files_match(tmp_path, {})


def test_documented_jobqueue_example_is_valid():
    settings = load_jobqueue(REPO / "slurm" / "jobqueue.yaml")
    kwargs = settings.cluster_kwargs()
    assert kwargs["queue"] == "gpu"
    assert "--gres=gpu:1" in kwargs["job_extra_directives"]
    assert kwargs["worker_extra_args"] == ["--resources", "GPU=1"]
    assert (settings.minimum_jobs, settings.maximum_jobs) == (0, 16)


def _jobqueue(tmp_path: Path, section: dict) -> Path:
    path = tmp_path / "jobqueue.yaml"
    path.write_text(yaml.safe_dump({"slurm": section}))
    return path


GOOD = {
    "partition": "debug",
    "walltime": "00:10:00",
    "memory": "2GB",
    "cores": 1,
    "gpus": 1,
    "adapt": {"minimum-jobs": 0, "maximum-jobs": 2},
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"walltime": None, "gpus": None}, r"missing keys slurm\.walltime, slurm\.gpus"),
        ({"queue": "x"}, r"unknown keys slurm\.queue"),
        ({"adapt": {"maximum-jobs": 2}}, "slurm.adapt needs minimum-jobs and maximum-jobs"),
        ({"cores": "4"}, r"slurm\.cores: expected an integer"),
        ({"adapt": {"minimum-jobs": 3, "maximum-jobs": 2}}, "minimum-jobs <= maximum-jobs"),
        ({"processes": 2}, r"slurm\.processes: must be >= 1 and divide gpus"),
        ({"job-extra": "--exclusive"}, r"slurm\.job-extra: expected a list of strings"),
    ],
)
def test_jobqueue_errors(tmp_path, change, match):
    section = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(PipelineError, match=match):
        load_jobqueue(_jobqueue(tmp_path, section))


def test_jobqueue_file_errors(tmp_path):
    with pytest.raises(PipelineError, match="cannot read"):
        load_jobqueue(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("slurm: [unclosed\n")
    with pytest.raises(PipelineError, match="invalid YAML"):
        load_jobqueue(tmp_path / "bad.yaml")
    (tmp_path / "none.yaml").write_text("other: 1\n")
    with pytest.raises(PipelineError, match="missing the 'slurm' section"):
        load_jobqueue(tmp_path / "none.yaml")
