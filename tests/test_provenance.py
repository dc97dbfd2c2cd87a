"""``provenance.json`` apart from training (a run's own record is checked in tests/test_train.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from configs import base
from conftest import REPO_ROOT
from experiments import provenance


def experiment_like(workdir, **overrides):
    """What ``provenance.start`` reads of an ``Experiment``."""
    config = base.get_base_config()
    config.update(overrides)
    return SimpleNamespace(workdir=workdir, config=config, compiler_options={"an_option": "x"})


def test_attempts_are_appended_atomically(tmp_path):
    first = provenance.start(experiment_like(tmp_path, seed=3), 0, argv=["a", "--b"])
    assert first.end(0) == 0
    second = provenance.start(experiment_like(tmp_path, seed=3, data_seed=8), 5)
    attempts = provenance.read(tmp_path)
    assert len(attempts) == 2
    assert attempts[0]["argv"] == ["a", "--b"] and attempts[0]["end"]["exit_status"] == 0
    assert (attempts[0]["seed"], attempts[0]["data_seed"]) == (3, 3)  # data_seed None: the seed
    assert (attempts[1]["seed"], attempts[1]["data_seed"]) == (3, 8)
    assert attempts[1]["start_step"] == 5 and attempts[1]["end"] is None  # has not returned
    assert attempts[1]["determinism"]["step_compiler_options"] == {"an_option": "x"}
    second.end(130)
    assert provenance.read(tmp_path)[1]["end"]["exit_status"] == 130
    assert provenance.read(tmp_path)[0] == attempts[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [provenance.PROVENANCE_FILE]


def test_an_unreadable_file_is_kept_aside(tmp_path, capsys):
    (tmp_path / provenance.PROVENANCE_FILE).write_text('{"attempts": [')  # cut off
    provenance.start(experiment_like(tmp_path), 0)
    kept = tmp_path / "provenance.unreadable-0.json"
    assert kept.read_text() == '{"attempts": ['
    assert len(provenance.read(tmp_path)) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: ") and "kept as provenance.unreadable-0.json" in line


def test_xla_flags_and_determinism(monkeypatch):
    flags = "--xla_gpu_deterministic_ops=true --xla_force_host_platform_device_count=4 --xla_dump"
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert provenance.xla_flags() == {
        "xla_gpu_deterministic_ops": "true",
        "xla_force_host_platform_device_count": "4",
        "xla_dump": "true",
    }
    state = provenance.determinism(None)
    assert state == {
        "xla_gpu_deterministic_ops": True,
        "xla_gpu_exclude_nondeterministic_ops": False,
        "step_compiler_options": {},
    }
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    assert provenance.determinism(None)["xla_gpu_deterministic_ops"] is False


def test_git_state_of_a_checkout_and_of_a_copy(tmp_path, monkeypatch):
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("the source is not a git checkout here")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert provenance.git_state()["commit"] == head
    # A copy that is not a checkout, or lies inside another repository: nulls, no error.
    monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path)
    assert provenance.git_state() == {"commit": None, "dirty": None}
    monkeypatch.setattr(provenance, "SOURCE_ROOT", REPO_ROOT / "experiments")
    assert provenance.git_state() == {"commit": None, "dirty": None}
    # A checkout with a changed tracked file is dirty.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m"]
    subprocess.run(["git", "add", "f"], cwd=tmp_path, check=True)
    subprocess.run(commit, cwd=tmp_path, check=True)
    monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path.resolve())
    assert provenance.git_state()["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert provenance.git_state()["dirty"] is True
    assert json.dumps(provenance.git_state())  # plain JSON
