"""Runs a sweep: every setting of a study times its seeds, each run in its own folder.

Usage: python -m experiments.sweep --config=FILE[:ARG] --workdir=DIR [--sweep='KEY=V1,V2;...']
           [--seeds=N] [--noevaluate | --eval_metrics=... --eval_num_samples=N]
           [--dry_run | --run_index=I | --launcher=slurm [--wait] [--slurm_...]]
           [--config.KEY=VALUE ...]

The settings come from ``--sweep`` or else the config file's ``sweep()`` (grammar and helpers:
``experiments.sweeps``); ``--seeds N`` runs each with seeds 0 ... N-1; ``--config.KEY=VALUE`` sets
KEY in every run. Run I trains in ``DIR/<name>`` (``loss=hinge,seed=1``) with
``python -m experiments.main`` and then evaluates its last checkpoint with
``python -m experiments.evaluate`` (``--noevaluate``: not), its output appended to
``DIR/<name>/log.txt``. ``DIR/sweep.json`` lists the runs.

Running the command again skips finished runs (no process is started for them) and resumes
unfinished ones. A failed run is reported with its log and the others go on; the status is 1 when
one failed. Runs write only into their own folders, so any number of workers may share DIR.

On a cluster:
  --dry_run        prints one shell command per run (run I on line I) and exits.
  --run_index=I    runs run I alone; without it, $SLURM_ARRAY_TASK_ID when set, so
                   ``sbatch --array=0-<runs-1>`` of this command runs the sweep.
  --launcher=slurm submits the unfinished runs as a SLURM job array through submitit (logs in
                   DIR/submitit/); --wait waits for them and reports like a sweep run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments import cli, sweeps

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's folder (one subfolder per run).")
_SWEEP = flags.DEFINE_string(
    "sweep", "", "KEY=V1,V2,... axes; ';' combines by product, '|' zips ('' = the file's sweep())."
)
_SEEDS = flags.DEFINE_integer("seeds", 1, "Runs per setting, seeds 0 ... N-1.", lower_bound=1)
_EVALUATE = flags.DEFINE_bool("evaluate", True, "Evaluate each run's last checkpoint.")
_EVAL_METRICS = flags.DEFINE_string(
    "eval_metrics", "", "experiments.evaluate --metrics ('' = all the model has)."
)
_EVAL_NUM_SAMPLES = flags.DEFINE_integer(
    "eval_num_samples",
    None,
    "experiments.evaluate --num_samples (default: its own).",
    lower_bound=1,
)
_EVAL_FAMILY_OPTIONS = flags.DEFINE_string(
    "eval_family_options", "", "experiments.evaluate --family_options (e.g. max_examples=1000)."
)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print one command per run and exit.")
_RUN_INDEX = flags.DEFINE_integer(
    "run_index", None, "Run only this run (default: $SLURM_ARRAY_TASK_ID if set).", lower_bound=0
)
_LAUNCHER = flags.DEFINE_enum(
    "launcher", "here", ["here", "slurm"], "here: one run after another; slurm: a job array."
)
_WAIT = flags.DEFINE_bool("wait", False, "With --launcher=slurm: wait for the jobs and report.")
_SLURM_CLUSTER = flags.DEFINE_enum(
    "slurm_cluster", "slurm", ["slurm", "local", "debug"], "submitit's executor (local: tests)."
)
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", "", "SLURM partition ('' = default).")
_SLURM_TIME_MIN = flags.DEFINE_integer(
    "slurm_time_min", 0, "Time limit of each run in minutes (0 = the cluster's).", lower_bound=0
)
_SLURM_GPUS = flags.DEFINE_integer("slurm_gpus_per_task", 0, "GPUs per run.", lower_bound=0)
_SLURM_CPUS = flags.DEFINE_integer(
    "slurm_cpus_per_task", 0, "CPUs per run (0 = the cluster's default).", lower_bound=0
)
_SLURM_PARALLELISM = flags.DEFINE_integer(
    "slurm_array_parallelism", 0, "Runs at once (0 = no limit).", lower_bound=0
)
ARRAY_TASK = "SLURM_ARRAY_TASK_ID"


def evaluation_flags() -> list[str] | None:
    if not _EVALUATE.value:
        return None
    extra = [f"--metrics={_EVAL_METRICS.value}"] if _EVAL_METRICS.value else []
    if _EVAL_NUM_SAMPLES.value is not None:
        extra.append(f"--num_samples={_EVAL_NUM_SAMPLES.value}")
    if _EVAL_FAMILY_OPTIONS.value:
        extra.append(f"--family_options={_EVAL_FAMILY_OPTIONS.value}")
    return extra


def check_flags() -> None:
    """A cli.UsageError for flags that exclude each other."""
    evaluation = [_EVAL_METRICS, _EVAL_NUM_SAMPLES, _EVAL_FAMILY_OPTIONS]
    if not _EVALUATE.value and any(flag.present for flag in evaluation):
        raise cli.UsageError("--noevaluate excludes the --eval_* flags")
    slurm = _LAUNCHER.value == "slurm"
    if _DRY_RUN.value and (slurm or _RUN_INDEX.value is not None):
        raise cli.UsageError("--dry_run excludes --launcher=slurm and --run_index")
    if slurm and _RUN_INDEX.value is not None:
        raise cli.UsageError("--run_index excludes --launcher=slurm (each task runs one run)")
    if _WAIT.value and not slurm:
        raise cli.UsageError("--wait goes with --launcher=slurm")
    cli.check_dir(_WORKDIR.value, "--workdir")


def make_plan() -> sweeps.Sweep:
    spec = config_flags.get_config_filename(flags.FLAGS[cli.CONFIG_FLAG])
    common = config_flags.get_override_values(flags.FLAGS[cli.CONFIG_FLAG])
    common = dict(sorted(common.items()))
    seeds = _SEEDS.value if _SEEDS.present else None
    if _SWEEP.value:
        settings = sweeps.parse_sweep(_SWEEP.value)
        return sweeps.plan(spec, common, settings, seeds, texts=True)
    settings = sweeps.file_sweep(spec)
    origin = f"{spec.partition(':')[0]}'s sweep()"
    settings = [{}] if settings is None else settings
    return sweeps.plan(spec, common, settings, seeds, texts=False, origin=origin)


def selected_run(count: int) -> int | None:
    """The index of the one run to run (--run_index or $SLURM_ARRAY_TASK_ID), or None: all."""
    if _RUN_INDEX.value is not None:
        index, source = _RUN_INDEX.value, f"--run_index={_RUN_INDEX.value}"
    elif os.environ.get(ARRAY_TASK, "") != "":
        source = f"{ARRAY_TASK}={os.environ[ARRAY_TASK]}"
        try:
            index = int(os.environ[ARRAY_TASK])
        except ValueError:
            raise cli.UsageError(f"{source} is not a run index") from None
    else:
        return None
    if not 0 <= index < count:
        raise cli.UsageError(f"{source}: the sweep has {count} runs (0 ... {count - 1})")
    return index


def runs(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


def say(message: str) -> None:
    print(message, flush=True)


def report(outcomes: list[sweeps.Outcome]) -> int:
    counts = {status: 0 for status in ("done", "skipped", "failed", "busy")}
    for outcome in outcomes:
        counts[outcome.status] += 1
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    say(f"sweep: {runs(len(outcomes))}: {summary}")
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    for outcome in failed:
        print(f"error: run {outcome.name}: {outcome.detail} (log {outcome.log})", file=sys.stderr)
    return 1 if failed else 0


def run_here(sweep: sweeps.Sweep, root: Path, indices: list[int], evaluation) -> int:
    """Runs ``indices`` one after another; runs another worker holds come last, waited for."""
    outcomes, busy = {}, []
    for number, index in enumerate(indices, 1):
        prefix = f"[{number}/{len(indices)}] "
        outcome = sweeps.execute(
            sweep, index, root, evaluation, wait=False, say=lambda m, p=prefix: say(p + m)
        )
        if outcome.status == "busy":
            busy.append((prefix, index))
            say(f"{prefix}{outcome.line()}; back to it after the others")
            continue
        outcomes[index] = outcome
        say(prefix + outcome.line())
    for prefix, index in busy:
        outcomes[index] = sweeps.execute(
            sweep, index, root, evaluation, wait=True, say=lambda m, p=prefix: say(p + m)
        )
        say(prefix + outcomes[index].line())
    return report([outcomes[index] for index in indices])


def submit(sweep: sweeps.Sweep, root: Path, todo: list[int], evaluation) -> int:
    """Submits the unfinished runs ``todo`` as one job array through submitit."""
    import functools

    try:
        import submitit
    except ImportError:
        cli.fail("--launcher=slurm needs submitit (pip install submitit)", status=1)
    if not todo:
        say(f"sweep: all {runs(len(sweep.runs))} finished; nothing to submit")
        return 0
    job = functools.partial(sweeps.run_job, sweep, str(root), evaluation)
    try:  # no sbatch here, a partition SLURM refuses, ...: one line
        executor = submitit.AutoExecutor(folder=root / "submitit", cluster=_SLURM_CLUSTER.value)
        executor.update_parameters(
            name=f"sweep-{root.name}",
            timeout_min=_SLURM_TIME_MIN.value or None,
            gpus_per_node=_SLURM_GPUS.value or None,
            cpus_per_task=_SLURM_CPUS.value or None,
            tasks_per_node=1,
            slurm_partition=_SLURM_PARTITION.value or None,
            slurm_array_parallelism=_SLURM_PARALLELISM.value or None,
        )
        jobs = executor.map_array(job, todo)
    except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as error:
        cli.fail(f"submitting the runs failed: {type(error).__name__}: {cli.one_line(error)}", 1)
    ids = f"{jobs[0].job_id}" + (f" ... {jobs[-1].job_id}" if len(jobs) > 1 else "")
    say(
        f"sweep: submitted {runs(len(todo))} of {len(sweep.runs)} (jobs {ids}; "
        f"logs in {root / 'submitit'})"
    )
    if not _WAIT.value:
        return 0
    outcomes = []
    for index, submitted in zip(todo, jobs, strict=True):
        name = sweep.runs[index].name
        error = submitted.exception()  # waits for the job
        if error is None:
            outcomes.append(submitted.result())
        else:
            lines = [line for line in str(error).splitlines() if line.strip()]
            detail = lines[-1].strip() if lines else type(error).__name__
            log = str(root / name / sweeps.LOG)
            outcomes.append(
                sweeps.Outcome(name, "failed", f"job {submitted.job_id}: {detail}", log)
            )
        say(outcomes[-1].line())
    return report(outcomes)


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value:
        cli.fail("missing --workdir=DIR")
    cli.quiet_library_logs()
    from experiments.errors import ConfigError

    root = Path(_WORKDIR.value)
    evaluation = evaluation_flags()
    try:
        check_flags()
        sweep = make_plan()
        everything = range(len(sweep.runs))
        if _DRY_RUN.value:
            sweeps.check_runs(sweep, everything)
            for run in sweep.runs:
                print(sweeps.shell_line(sweep, run, root, evaluation))
            return
        index = None if _LAUNCHER.value == "slurm" else selected_run(len(sweep.runs))
        chosen = everything if index is None else [index]
        todo = [i for i in chosen if sweeps.pending(sweep, sweep.runs[i], root, evaluation)]
        sweeps.check_runs(sweep, todo)  # before any run starts
        sweeps.write_description(root, sweep)
    except cli.UsageError as error:
        cli.fail(str(error))
    except ConfigError as error:
        cli.fail(str(error), status=1)
    try:
        if _LAUNCHER.value == "slurm":
            sys.exit(submit(sweep, root, todo, evaluation))
        if index is not None:
            outcome = sweeps.execute(sweep, index, root, evaluation, wait=True, say=say)
            say(outcome.line())
            sys.exit(report([outcome]))
        say(f"sweep: {runs(len(sweep.runs))} in {root} ({root / sweeps.DESCRIPTION})")
        sys.exit(run_here(sweep, root, list(range(len(sweep.runs))), evaluation))
    except KeyboardInterrupt:
        print("sweep: interrupted; run the same command again to go on", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
