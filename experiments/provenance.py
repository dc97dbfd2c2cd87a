"""Where a run's numbers came from: ``WORKDIR/provenance.json``, one entry per training attempt.

The train loop calls ``start`` once it knows the step it starts from and ``Attempt.end`` with its
exit status. Each attempt records the resolved config, the seeds (``data_seed`` resolved), the
project's git commit and whether tracked files differ from it (null when the source is not a git
checkout), the versions of Python and the numerical packages, ``XLA_FLAGS`` and the JAX settings
that change numbers, the step's compiler options, the devices and processes, whether XLA was asked
for deterministic GPU ops, the command line, and the start and end times. An attempt whose ``end``
is null did not return (killed, or it raised).

The file is rewritten whole through a temporary file and a rename, so a kill never leaves half of
it; a resume appends an attempt and keeps the earlier ones. Only process 0 writes.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import jax

PROVENANCE_FILE = "provenance.json"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
# JAX settings that change what a program computes (or which numbers it draws).
JAX_SETTINGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_numpy_rank_promotion",
    "jax_platforms",
)
# XLA flags that ask for run-to-run determinism on GPUs.
DETERMINISM_FLAGS = ("xla_gpu_deterministic_ops", "xla_gpu_exclude_nondeterministic_ops")
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict:
    """``{'commit': HEAD's hash, 'dirty': tracked files differ from it}`` of the project's source
    tree; both None when it is not a git checkout (e.g. an installed copy) or git is missing."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != SOURCE_ROOT:
        return {"commit": None, "dirty": None}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names=PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def xla_flags(text: str | None = None) -> dict[str, str]:
    """``XLA_FLAGS`` as ``{name: value}`` (a flag without a value: ``'true'``)."""
    text = os.environ.get("XLA_FLAGS", "") if text is None else text
    flags = {}
    for token in text.split():
        name, equals, value = token.lstrip("-").partition("=")
        flags[name] = value if equals else "true"
    return flags


def jax_settings() -> dict:
    settings = {}
    for name in JAX_SETTINGS:
        try:
            value = getattr(jax.config, name)
        except AttributeError:
            continue
        settings[name] = (
            value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
        )
    return settings


def determinism(compiler_options) -> dict:
    """Whether each of ``DETERMINISM_FLAGS`` is on in ``XLA_FLAGS``, and the steps' compiler
    options."""
    flags = xla_flags()
    state = {name: flags.get(name, "false").lower() in ("true", "1") for name in DETERMINISM_FLAGS}
    state["step_compiler_options"] = dict(compiler_options or {})
    return state


def devices() -> dict:
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "kind": device.device_kind,
        "count": jax.device_count(),
        "local_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
    }


def attempt_record(experiment, start_step: int, argv=None) -> dict:
    """Everything an attempt records when it starts."""
    from experiments.train import data_seed  # train imports this module

    config = experiment.config
    return {
        "start_time": now(),
        "start_step": start_step,
        "argv": list(sys.argv if argv is None else argv),
        "seed": config.seed,
        "data_seed": data_seed(config),
        "config": json.loads(config.to_json_best_effort(sort_keys=True)),
        "git": git_state(),
        "packages": package_versions(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "jax_settings": jax_settings(),
        "determinism": determinism(experiment.compiler_options),
        "devices": devices(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "end": None,
    }


def read(workdir: str | os.PathLike) -> list[dict]:
    """The attempts recorded in ``workdir`` (none when there is no file)."""
    path = Path(workdir) / PROVENANCE_FILE
    if not path.exists():
        return []
    attempts = json.loads(path.read_text())["attempts"]
    if not isinstance(attempts, list):
        raise ValueError("'attempts' is not a list")
    return attempts


def write(workdir: Path, attempts: list[dict]) -> None:
    path = workdir / PROVENANCE_FILE
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(json.dumps({"attempts": attempts}, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


class Attempt:
    """One attempt's entry in ``provenance.json``; ``end`` completes it."""

    def __init__(self, workdir: Path, attempts: list[dict] | None):
        self.workdir, self.attempts = workdir, attempts  # attempts None: not written here

    def end(self, status: int, checkpointer=None) -> int:
        """Records the end time, ``status`` and the newest committed checkpoint (after waiting for
        ``checkpointer``'s saves); returns ``status``."""
        final_step = None
        if checkpointer is not None:
            checkpointer.wait()
            final_step = checkpointer.latest_step()
        if self.attempts is not None:
            self.attempts[-1]["end"] = {
                "time": now(),
                "exit_status": status,
                "final_step": final_step,
            }
            write(self.workdir, self.attempts)
        return status


def start(experiment, start_step: int, argv=None) -> Attempt:
    """Appends this attempt to ``experiment.workdir``'s ``provenance.json`` (process 0 only).

    A file that cannot be read is kept as ``provenance.unreadable-<n>.json``, with a warning.
    """
    workdir = Path(experiment.workdir)
    if jax.process_index() != 0:
        return Attempt(workdir, None)
    try:
        attempts = read(workdir)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        path = workdir / PROVENANCE_FILE
        n = 0
        while (kept := workdir / f"provenance.unreadable-{n}.json").exists():
            n += 1
        os.replace(path, kept)
        print(f"warning: {path} cannot be read ({error}); kept as {kept.name}", file=sys.stderr)
        attempts = []
    attempts.append(attempt_record(experiment, start_step, argv))
    write(workdir, attempts)
    return Attempt(workdir, attempts)
