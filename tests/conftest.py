"""Shared fixtures. Tests that read ../shared/data are marked ``shared_data``: developer and CI machines
have it, a user's machine does not, and there they are skipped with that reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_dir(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs {path} (the shared MNIST files on developer/CI machines)")
    return path


def run_main(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs ``python -m experiments.main ARGS`` from the repo root and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
