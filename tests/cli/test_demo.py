"""The command line, run as a user runs it."""

import json
import subprocess
import sys

import confflow

CLI = [sys.executable, "-m", "confflow"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def test_version():
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"confflow {confflow.__version__}"


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    assert "demo" in out.stdout


def test_demo_writes_metrics(tmp_path):
    path = tmp_path / "demo.json"
    out = run("demo", "--steps", "60", "--json", str(path))
    assert out.returncode == 0, out.stderr
    metrics = json.loads(path.read_text())
    assert set(metrics) >= {"test_nll", "true_nll", "kl_estimate", "ess"}
    assert 0 < metrics["ess"] <= 1
    assert "ESS of flow samples" in out.stdout


def test_demo_reports_unwritable_output(tmp_path):
    (tmp_path / "a-file").write_text("")
    out = run("demo", "--steps", "5", "--json", str(tmp_path / "a-file" / "demo.json"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {tmp_path / 'a-file'}: File exists"]


def test_bad_option_value_exits_2_with_one_line():
    out = run("demo", "--steps", "0")
    assert out.returncode == 2
    assert out.stderr.startswith("error: confflow demo: Invalid value for '--steps'")
    assert len(out.stderr.strip().splitlines()) == 1
