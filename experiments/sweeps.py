"""Sweeps as data: the list of runs of a study, their folders, and running one of them.

A sweep is a list of settings (dicts of config overrides, ``{"model.loss": "hinge"}``) times a list
of seeds. A config file may define ``sweep()`` returning the settings, built with ``product`` and
``zip``::

    from experiments.sweeps import product, zip

    def sweep():
        return product(
            {"model.loss": ["non_saturating", "hinge"]},
            zip({"optimizer.generator.learning_rate": [1e-4, 2e-4],
                 "optimizer.discriminator.learning_rate": [4e-4, 8e-4]}),
        )

An axis is a dict ``KEY -> list of values`` (each key one axis) or a list of override dicts (one
axis whose values set several keys together). ``product`` combines its axes in every way, the first
varying slowest; ``zip`` pairs them position by position (equal lengths).

The command line gives the same with ``--sweep`` (it replaces the file's ``sweep()``)::

    SWEEP := GROUP (';' GROUP)*     groups combined by product
    GROUP := AXIS ('|' AXIS)*       axes zipped together (equal lengths)
    AXIS  := KEY '=' VALUE (',' VALUE)*

so ``'model.loss=hinge,least_squares;optimizer.generator.b1=0.0,0.5'`` is four settings and
``'model.loss=hinge,least_squares|model.regularizers.r1=0.0,0.1'`` two. A comma inside brackets or
quotes does not split (``model.generator.features=(64,64),(128,128)``); a value quoted whole loses
its quotes, as in a shell (``evaluation.metrics='fid,kid',''`` is the strings ``fid,kid`` and
the empty one). Each value is then read as ``--config.KEY=VALUE`` reads it: typed as the config
file's value of ``KEY``.

``--seeds N`` repeats each setting with ``config.seed`` 0 ... N-1 (a sweep may instead sweep
``seed`` itself). Runs are numbered settings-major (run ``i * N + s`` is setting ``i``, seed ``s``).

Each run's folder under the sweep's workdir is named from its overrides and seed,
``loss=hinge,seed=1``: each key by its last part (the whole dotted key where two swept keys share
it), values as they are typed (tuples joined by ``-``), characters other than letters, digits and
``._+-=`` replaced by ``_``. ``sweep.json`` at the top of the sweep describes every run; it is the
same on every rerun, and a workdir holding another sweep's ``sweep.json`` is refused.

A run is ``python -m experiments.main`` then, optionally, ``python -m experiments.evaluate --step=N``
(N = ``num_train_steps``), both writing to ``RUN/log.txt`` (appended). It is finished when its
checkpoint at step N has committed and ``RUN/eval/N.json`` holds JSON (without evaluation: the
checkpoint alone); a finished run starts no process. A run holds an exclusive lock on its
``log.txt`` while it runs, so workers sharing one sweep folder never run the same run twice at once.
On Linux a run's process receives SIGTERM when the process that started it dies (a killed sweep), so
it saves a checkpoint and stops instead of running on unattended.
"""

from __future__ import annotations

import builtins
import ctypes
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from experiments import cli

DESCRIPTION = "sweep.json"
LOG = "log.txt"
# experiments.checkpoint.COMMIT_MARKER (not imported: it imports jax, which a job that only starts
# runs does not need)
COMMIT_MARKER = "commit_success.txt"
SEED = "seed"
MAX_NAME = 200  # bytes of a folder name before it is shortened with a hash
UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


# ---------------------------------------------------------------------------------------------
# Building the settings


def _as_axes(axes) -> list[list[dict]]:
    result = []
    for axis in axes:
        if isinstance(axis, dict):
            for key, values in axis.items():
                if not isinstance(values, list):
                    raise ValueError(
                        f"sweep axis {key!r}: expected a list of values, not {values!r}"
                    )
                result.append([{key: value} for value in values])
        elif isinstance(axis, list) and all(isinstance(setting, dict) for setting in axis):
            result.append([dict(setting) for setting in axis])
        else:
            raise ValueError(
                "a sweep axis is a dict KEY -> list of values or a list of override dicts, "
                f"not {axis!r}"
            )
    return result


def _merge(settings: Sequence[dict]) -> dict:
    merged = {}
    for setting in settings:
        for key, value in setting.items():
            if key in merged:
                raise ValueError(f"sweep key {key!r} is set by two axes")
            merged[key] = value
    return merged


def product(*axes) -> list[dict]:
    """Every combination of one value per axis, the first axis varying slowest."""
    return [_merge(combination) for combination in itertools.product(*_as_axes(axes))]


def zip(*axes) -> list[dict]:
    """The axes' values paired position by position; the axes must have equal lengths."""
    lists = _as_axes(axes)
    lengths = [len(values) for values in lists]
    if len(set(lengths)) > 1:
        raise ValueError(f"zip of sweep axes of different lengths {lengths}")
    return [_merge(combination) for combination in builtins.zip(*lists, strict=True)]


def split_top(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def unquote(text: str) -> str:
    """``text`` without the quotes around it, if it is quoted whole (as a shell would read it)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_sweep(text: str) -> list[dict[str, str]]:
    """The settings of a ``--sweep`` value (values as text); a UsageError names what is wrong."""
    groups = []
    for group in split_top(text, ";"):
        axes = []
        for axis in split_top(group, "|"):
            key, equals, values = axis.partition("=")
            key = key.strip()
            if not equals or not key or not values.strip():
                raise cli.UsageError(f"--sweep: {axis.strip()!r} is not KEY=VALUE,VALUE,...")
            items = [item.strip() for item in split_top(values, ",")]
            if not all(items):
                raise cli.UsageError(f"--sweep: {key}={values.strip()} has an empty value")
            axes.append({key: [unquote(item) for item in items]})
        groups.append(axes)
    try:
        return product(*[zip(*axes) for axes in groups])
    except ValueError as error:
        raise cli.UsageError(f"--sweep: {error}") from error


def file_sweep(spec: str) -> list[dict] | None:
    """The settings of the config file's ``sweep()``, or None when it has none."""
    path = spec.partition(":")[0]
    module_spec = importlib.util.spec_from_file_location("_sweep_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        raise cli.UsageError(
            f"config file {path} cannot be loaded: {cli.one_line(error)}"
        ) from error
    if not hasattr(module, "sweep"):
        return None
    try:
        settings = module.sweep()
    except Exception as error:
        raise cli.UsageError(
            f"config file {path}: sweep() raised{cli.where_in_file(error, path)} "
            f"{type(error).__name__}: {cli.one_line(error)}"
        ) from error
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        raise cli.UsageError(f"config file {path}: sweep() must return a list of override dicts")
    return settings


# ---------------------------------------------------------------------------------------------
# The plan: runs, their overrides as the config reads them, their folders


@dataclasses.dataclass(frozen=True)
class Run:
    index: int
    name: str  # the run's folder under the sweep's workdir
    overrides: dict  # dotted key -> value as the run's config holds it (the seed included)
    args: tuple[str, ...]  # the --config.KEY=VALUE arguments that set them
    num_train_steps: int


@dataclasses.dataclass(frozen=True)
class Sweep:
    config: str  # FILE[:ARG]
    common: dict  # overrides every run gets (--config.KEY=VALUE of the sweep's command line)
    common_args: tuple[str, ...]
    runs: tuple[Run, ...]

    def describe(self) -> dict:
        """The contents of ``sweep.json``."""
        return {
            "config": self.config,
            "overrides": _jsonable(self.common),
            "runs": [
                {
                    "index": run.index,
                    "name": run.name,
                    "overrides": _jsonable(run.overrides),
                    "num_train_steps": run.num_train_steps,
                }
                for run in self.runs
            ],
        }


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    return value


def _tuples(value):
    if isinstance(value, (tuple, list)):
        return tuple(_tuples(item) for item in value)
    return value


def render(value) -> str:
    """The text of ``--config.KEY=TEXT`` for a Python value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return repr(_tuples(value))
    return str(value)


def resolve(spec: str, args: Sequence[str]):
    """The config ``python -m experiments.main --config=SPEC ARGS`` trains (parsed as it parses)."""
    from absl import flags
    from ml_collections import config_flags

    values = flags.FlagValues()
    argv = ["sweep", f"--config={spec}", *args]
    holder = config_flags.DEFINE_config_file(
        "config", flag_values=values, sys_argv=argv, lock_config=True
    )
    try:
        with warnings.catch_warnings():  # ml_collections loads the file with load_module()
            warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
            values(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        raise cli.UsageError(f"bad value in the sweep: {cli.one_line(error)}") from error
    return holder.value


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each key's last part, or the whole key where two keys share their last part."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: part if last.count(part) == 1 else key
        for key, part in builtins.zip(keys, last, strict=True)
    }


def value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "-".join(value_text(item) for item in value)
    return str(value)


def run_name(overrides: dict, short: dict[str, str]) -> str:
    """The folder name of a run: ``short=value`` for each override, comma-separated."""
    parts = [f"{short[key]}={value_text(value)}" for key, value in overrides.items()]
    name = ",".join(UNSAFE.sub("_", part) for part in parts)
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}-{digest}"
    return name


def plan(
    spec: str,
    common: dict,
    settings: Sequence[dict],
    seeds: int | None,
    *,
    texts: bool,
    origin: str = "--sweep",
) -> Sweep:
    """The runs of a sweep, each config parsed as ``experiments.main`` will parse it (its values
    are checked by ``check_runs``).

    ``common``: overrides every run gets (Python values). ``settings``: the swept overrides, their
    values as text (``texts``, from ``--sweep``) or Python values (from ``sweep()``). ``seeds``:
    runs per setting with seeds 0 ... seeds-1 (None: 1, or the settings' own ``seed``).

    Raises:
        cli.UsageError: an unknown key, a value the config cannot hold, clashing seeds, two runs
            with one folder, no runs.
    """
    original = cli.load_config_file(spec)
    valid = cli.flat_keys(original)
    swept = list(dict.fromkeys(key for setting in settings for key in setting))
    for key in swept:
        if key not in valid:
            suggestion = cli.closest_key(key, valid)
            hint = f"; did you mean '{suggestion}'?" if suggestion else ""
            raise cli.UsageError(f"unknown config key '{key}' in {origin}{hint}")
        if key in common:
            raise cli.UsageError(f"config.{key} is both swept ({origin}) and set by --config.{key}")
    if SEED in common:
        raise cli.UsageError(
            "--config.seed: a sweep sets each run's seed (--seeds N runs seeds 0..N-1, or sweep seed)"
        )
    if SEED in swept and seeds is not None:
        raise cli.UsageError(f"--seeds and a swept seed ({origin}) exclude each other")
    if not settings:
        raise cli.UsageError(f"{origin} gives no runs")
    seed_values = [None] if SEED in swept else range(1 if seeds is None else seeds)
    short = short_names([key for key in swept if key != SEED] + [SEED])
    common_args = tuple(f"--config.{key}={render(value)}" for key, value in common.items())
    runs, folders = [], {}
    for setting, seed in itertools.product(settings, seed_values):
        overrides = dict(setting) if seed is None else {**setting, SEED: seed}
        from_text = {key: texts and key in setting for key in overrides}
        texts_of = {k: v if from_text[k] else render(v) for k, v in overrides.items()}
        args = tuple(f"--config.{key}={text}" for key, text in texts_of.items())
        config = resolve(spec, common_args + args)
        cli.check_override_types(original, config, [*common, *overrides])
        typed = {key: cli.config_value(config, key) for key in overrides}
        for key, value in [*common.items(), *overrides.items()]:
            if not from_text.get(key) and _tuples(cli.config_value(config, key)) != _tuples(value):
                raise cli.UsageError(
                    f"config.{key}={value!r} cannot be given on the command line "
                    f"(it reads back as {cli.config_value(config, key)!r})"
                )
        name = run_name(typed, short)
        if name in folders:
            raise cli.UsageError(
                f"runs {folders[name]} and {len(runs)} would share the folder {name!r}: "
                f"{origin} lists a setting twice, or values that name alike"
            )
        folders[name] = len(runs)
        steps = config.get("num_train_steps")
        if not isinstance(steps, int) or isinstance(steps, bool):
            raise cli.UsageError(f"run {name}: config.num_train_steps={steps!r} is not an integer")
        runs.append(Run(len(runs), name, typed, args, steps))
    return Sweep(spec, dict(common), common_args, tuple(runs))


def check_runs(sweep: Sweep, indices: Sequence[int]) -> None:
    """A ConfigError naming the first of these runs whose config cannot work (the checks training
    makes before it builds anything; they import jax, so only the runs about to start are checked).
    """
    from experiments.config_checks import check_config
    from experiments.errors import ConfigError
    from experiments.family import make_family

    for index in indices:
        run = sweep.runs[index]
        config = resolve(sweep.config, sweep.common_args + run.args)
        try:
            check_config(config)
            make_family(config)
        except ConfigError as error:
            raise ConfigError(f"run {run.name}: {error}") from error


def write_description(root: Path, sweep: Sweep) -> None:
    """Writes ``sweep.json`` (atomically), or checks that the one there describes this sweep."""
    text = json.dumps(sweep.describe(), indent=2) + "\n"
    path = root / DESCRIPTION
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise cli.UsageError(f"cannot read {path}: {cli.one_line(error)}") from error
        new = json.loads(text)
        differing = [key for key in new if not isinstance(old, dict) or old.get(key) != new[key]]
        if differing:
            raise cli.UsageError(
                f"{root} holds another sweep: its {DESCRIPTION} differs in "
                f"{', '.join(differing)} (give the same arguments, or another --workdir)"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=root, prefix=f".{DESCRIPTION}.", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


# ---------------------------------------------------------------------------------------------
# Running one run


def commands(
    sweep: Sweep, run: Run, root: str | os.PathLike, evaluation: Sequence[str] | None
) -> list[tuple[str, list[str]]]:
    """``(stage, argv)`` of the run's training and (``evaluation`` not None: its extra
    ``experiments.evaluate`` flags) evaluation."""
    rundir = os.path.join(root, run.name)
    train = [sys.executable, "-m", "experiments.main", f"--config={sweep.config}"]
    train += [f"--workdir={rundir}", *sweep.common_args, *run.args]
    stages = [("training", train)]
    if evaluation is not None:
        evaluate = [sys.executable, "-m", "experiments.evaluate", f"--workdir={rundir}"]
        stages.append(("evaluation", [*evaluate, f"--step={run.num_train_steps}", *evaluation]))
    return stages


def shell_line(sweep: Sweep, run: Run, root, evaluation) -> str:
    """The run as one shell command (``--dry_run``)."""
    return " && ".join(shlex.join(argv) for _, argv in commands(sweep, run, root, evaluation))


def trained(rundir: Path, steps: int) -> bool:
    return (rundir / "checkpoints" / str(steps) / COMMIT_MARKER).is_file()


def evaluated(rundir: Path, steps: int) -> bool:
    try:
        json.loads((rundir / "eval" / f"{steps}.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def pending(sweep, run, root, evaluation) -> list[tuple[str, list[str]]]:
    """The stages of the run still to do (none: the run is finished)."""
    rundir = Path(root) / run.name
    done = {
        "training": trained(rundir, run.num_train_steps),
        "evaluation": evaluated(rundir, run.num_train_steps),
    }
    stages = commands(sweep, run, root, evaluation)
    return stages if not done["training"] else [s for s in stages if not done[s[0]]]


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # done | skipped (finished before) | failed | busy (another process runs it)
    detail: str = ""
    log: str = ""

    def line(self) -> str:
        if self.status == "failed":
            return f"{self.name}: failed: {self.detail} (log {self.log})"
        return f"{self.name}: {self.status}{f' ({self.detail})' if self.detail else ''}"


if sys.platform.startswith("linux"):
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    _PR_SET_PDEATHSIG = 1

    def _stop_with(parent: int) -> None:
        """In the child: SIGTERM when ``parent`` dies (main then saves a checkpoint and stops)."""
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # died before the call above
            os.kill(os.getpid(), signal.SIGTERM)
else:
    _stop_with = None


def _call(argv: list[str], log) -> int:
    log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] $ {shlex.join(argv)}\n")
    log.flush()
    preexec = functools.partial(_stop_with, os.getpid()) if _stop_with else None
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec
    )
    try:
        status = process.wait()
    except KeyboardInterrupt:  # let it save a checkpoint (a terminal's Ctrl-C reached it too)
        process.send_signal(signal.SIGINT)
        process.wait()
        raise
    log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] exit status {status}\n")
    log.flush()
    return status


def last_error(log: Path) -> str:
    """The last ``error: ...`` line of a log ('' if none)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else ""


def execute(
    sweep: Sweep,
    index: int,
    root: str | os.PathLike,
    evaluation: Sequence[str] | None,
    *,
    wait: bool = True,
    say: Callable[[str], None] = lambda message: None,
) -> Outcome:
    """Runs what run ``index`` still needs; a finished run starts nothing and writes nothing.

    Without ``wait``, a run another process holds is left to it (``busy``); with ``wait``, this
    waits for it and then does what is left (nothing, if it finished).
    """
    run = sweep.runs[index]
    if not pending(sweep, run, root, evaluation):
        return Outcome(run.name, "skipped", "finished")
    rundir = Path(root) / run.name
    rundir.mkdir(parents=True, exist_ok=True)
    log_path = rundir / LOG
    with open(log_path, "a") as log:
        try:
            fcntl.flock(log, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                return Outcome(run.name, "busy", "another process runs it")
            say(f"{run.name}: waiting for the process that runs it")
            fcntl.flock(log, fcntl.LOCK_EX)
        stages = pending(sweep, run, root, evaluation)
        if not stages:
            return Outcome(run.name, "skipped", "finished")
        say(f"{run.name}: {' and '.join(stage for stage, _ in stages)} (log {log_path})")
        start = time.perf_counter()
        for stage, argv in stages:
            status = _call(argv, log)
            if status:
                error = last_error(log_path)
                detail = f"{stage} exited with status {status}" + (f": {error}" if error else "")
                return Outcome(run.name, "failed", detail, str(log_path))
    return Outcome(run.name, "done", f"{time.perf_counter() - start:.1f} s", str(log_path))


class RunFailed(Exception):
    """A run of a submitted job failed (so the scheduler records the job as failed)."""


def run_job(sweep: Sweep, root: str, evaluation: Sequence[str] | None, index: int) -> Outcome:
    """One task of a job array: run ``index``, waiting for another process that holds it."""
    outcome = execute(sweep, index, root, evaluation, wait=True, say=print)
    if outcome.status == "failed":
        raise RunFailed(outcome.line())
    return outcome
