"""Shared fixtures. Tests that read ../shared/data are marked ``shared_data``: developer and CI machines
have it, a user's machine does not, and there they are skipped with that reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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


def traced_operations(fn, *args) -> list[tuple[str, list]]:
    """``(primitive name, operand avals)`` of every operation of ``jax.make_jaxpr(fn)(*args)``,
    those inside sub-programs (jit, custom VJPs, cond, scan) included: what a test reads to see
    which dtypes a computation runs in."""
    import jax

    found = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            found.append((eqn.primitive.name, [var.aval for var in eqn.invars]))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if hasattr(sub, "eqns"):
                        visit(sub)
                    elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                        visit(sub.jaxpr)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


# One XLA compilation per distinct program for the whole test run. Many tests build an Experiment
# from the same tiny config, in this process or in a `python -m experiments.main` subprocess, and
# every Experiment jits its own steps, so XLA would compile the same program again and again (most
# of the suite's time). JAX's persistent compilation cache, in a fresh folder for the run that
# pytest-xdist's workers and the subprocesses inherit through the environment, keeps each compiled
# executable: a hit is the executable XLA built for the identical program and compiler options, so
# no result changes, and JAX still reports the compilation event that tests count. A partly written
# entry (another process writing it, or one killed by a test) is read as a miss and compiled again.
# GAN_VAE_JAX_TEST_COMPILATION_CACHE=0 turns it off; a JAX_COMPILATION_CACHE_DIR set beforehand is
# used as it is.
TEST_COMPILATION_CACHE_VAR = "GAN_VAE_JAX_TEST_COMPILATION_CACHE"
_CACHE_WARNINGS = (
    "Error reading persistent compilation cache entry",
    "Error writing persistent compilation cache entry",
)
_CACHE_DIR_KEY = pytest.StashKey[str]()


def pytest_configure(config):
    if os.environ.get(TEST_COMPILATION_CACHE_VAR, "1") == "0":
        return
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # xdist's workers see the controller's
        directory = tempfile.mkdtemp(prefix="gan-vae-jax-test-xla-cache-")
        config.stash[_CACHE_DIR_KEY] = directory
        os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    ignored = [f"ignore:{message}:UserWarning" for message in _CACHE_WARNINGS]
    python_warnings = os.environ.get("PYTHONWARNINGS", "")
    if ignored[0] not in python_warnings:  # for the subprocesses (this process: pyproject.toml)
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [python_warnings, *ignored]))
    if "jax" in sys.modules:  # imported before this ran (a plugin): it read the environment then
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )


def pytest_unconfigure(config):
    directory = config.stash.get(_CACHE_DIR_KEY, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
