"""Sweeps: the settings grammar, run folders, and `python -m experiments.sweep` end to end (a
killed sweep, a rerun that starts nothing, one run per array task, submitit's local executor, a
failed run among good ones)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from experiments import cli, sweeps
from experiments.errors import ConfigError

RING = "configs/gan_ring2d.py"
# gan_ring2d made tiny: 3 steps of a 16-unit G and D, one log, eval and checkpoint at the end.
TINY = {
    "num_train_steps": 3,
    "batch_size": 16,
    "eval_batch_size": 100,
    "log_every_steps": 0,
    "eval_every_steps": 0,
    "checkpoint_every_steps": 0,
    "model.generator.features": (16,),
    "model.discriminator.features": (16,),
}
TINY_ARGS = [f"--config.{key}={sweeps.render(value)}" for key, value in TINY.items()]
LOSSES = "model.loss=non_saturating,hinge"
NAMES = ["seed=0", "seed=1"]  # the runs of the config's own setting with --seeds=2


# --- settings -----------------------------------------------------------------------------------


def test_product_and_zip_against_written_out_lists():
    assert sweeps.product({"a": [1, 2]}, {"b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    # a dict with several keys is one axis per key
    assert sweeps.product({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert sweeps.zip({"a": [1, 2], "b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    assert sweeps.product(sweeps.zip({"a": [1, 2]}, {"b": [3, 4]}), {"c": [(5, 6)]}) == [
        {"a": 1, "b": 3, "c": (5, 6)},
        {"a": 2, "b": 4, "c": (5, 6)},
    ]
    # a list of override dicts is one axis that sets several keys together
    assert sweeps.product([{"a": 1, "b": 2}, {"a": 3}], {"c": [0]}) == [
        {"a": 1, "b": 2, "c": 0},
        {"a": 3, "c": 0},
    ]
    assert sweeps.product() == [{}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sweeps.zip({"a": [1, 2]}, {"b": [1]}), "different lengths [2, 1]"),
        (lambda: sweeps.product({"a": [1]}, [{"a": 2}]), "'a' is set by two axes"),
        (lambda: sweeps.product({"a": (1, 2)}), "expected a list of values"),
        (lambda: sweeps.product("a=1"), "a sweep axis is a dict"),
    ],
)
def test_product_and_zip_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_parse_sweep_grammar():
    assert sweeps.parse_sweep("model.loss=hinge,least_squares;seed=0,1") == [
        {"model.loss": "hinge", "seed": "0"},
        {"model.loss": "hinge", "seed": "1"},
        {"model.loss": "least_squares", "seed": "0"},
        {"model.loss": "least_squares", "seed": "1"},
    ]
    assert sweeps.parse_sweep(" a = 1 , 2 | b=3,4 ; c=5") == [
        {"a": "1", "b": "3", "c": "5"},
        {"a": "2", "b": "4", "c": "5"},
    ]
    # commas inside brackets and quotes do not split; quotes around a whole value go
    assert sweeps.parse_sweep("""f=(64,64),("a","b,c");s='a,b',"",c""") == [
        {"f": "(64,64)", "s": "a,b"},
        {"f": "(64,64)", "s": ""},
        {"f": "(64,64)", "s": "c"},
        {"f": '("a","b,c")', "s": "a,b"},
        {"f": '("a","b,c")', "s": ""},
        {"f": '("a","b,c")', "s": "c"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model.loss", "--sweep: 'model.loss' is not KEY=VALUE,VALUE,..."),
        ("a=1;", "--sweep: '' is not KEY=VALUE,VALUE,..."),
        ("a=", "--sweep: 'a=' is not KEY=VALUE,VALUE,..."),
        ("a=1,,2", "--sweep: a=1,,2 has an empty value"),
        ("a=1|b=1,2", "--sweep: zip of sweep axes of different lengths [1, 2]"),
        ("a=1;a=2", "--sweep: sweep key 'a' is set by two axes"),
    ],
)
def test_parse_sweep_errors(text, message):
    with pytest.raises(cli.UsageError) as error:
        sweeps.parse_sweep(text)
    assert str(error.value) == message


def test_run_names():
    short = sweeps.short_names(
        ["model.loss", "optimizer.generator.b1", "optimizer.discriminator.b1", "seed"]
    )
    assert short == {
        "model.loss": "loss",
        "optimizer.generator.b1": "optimizer.generator.b1",
        "optimizer.discriminator.b1": "optimizer.discriminator.b1",
        "seed": "seed",
    }
    assert sweeps.run_name({"model.loss": "hinge", "seed": 1}, short) == "loss=hinge,seed=1"
    assert (
        sweeps.run_name({"optimizer.generator.b1": 0.5, "optimizer.discriminator.b1": 0.0}, short)
        == "optimizer.generator.b1=0.5,optimizer.discriminator.b1=0.0"
    )
    short = sweeps.short_names(["f", "flag", "path"])
    assert sweeps.run_name({"f": (64, 128), "flag": True, "path": "a/b c"}, short) == (
        "f=64-128,flag=true,path=a_b_c"
    )
    long = sweeps.run_name({"path": "x" * 300}, short)
    assert len(long) == sweeps.MAX_NAME and long.startswith("path=xxx")
    assert long != sweeps.run_name({"path": "x" * 301}, short)


# --- planning: values typed and checked as experiments.main reads them ---------------------------


def test_plan_types_values_as_the_config_does():
    settings = sweeps.parse_sweep("optimizer.generator.b1=0,0.5")
    sweep = sweeps.plan(RING, {"num_train_steps": 7}, settings, 2, texts=True)
    assert [run.name for run in sweep.runs] == [
        "b1=0.0,seed=0",
        "b1=0.0,seed=1",
        "b1=0.5,seed=0",
        "b1=0.5,seed=1",
    ]
    assert sweep.runs[1].overrides == {"optimizer.generator.b1": 0.0, "seed": 1}
    assert isinstance(sweep.runs[1].overrides["optimizer.generator.b1"], float)
    assert sweep.runs[1].args == ("--config.optimizer.generator.b1=0", "--config.seed=1")
    assert sweep.common_args == ("--config.num_train_steps=7",)
    assert [run.num_train_steps for run in sweep.runs] == [7] * 4
    assert sweep.describe()["runs"][3] == {
        "index": 3,
        "name": "b1=0.5,seed=1",
        "overrides": {"optimizer.generator.b1": 0.5, "seed": 1},
        "num_train_steps": 7,
    }


def test_plan_of_python_values_and_a_swept_seed():
    settings = sweeps.product({"model.generator.features": [(16,), [32, 32]]}, {"seed": [3]})
    sweep = sweeps.plan(RING, {}, settings, None, texts=False)
    assert [run.name for run in sweep.runs] == ["features=16,seed=3", "features=32-32,seed=3"]
    assert sweep.runs[1].args == ("--config.model.generator.features=(32, 32)", "--config.seed=3")
    assert sweep.runs[1].overrides["model.generator.features"] == (32, 32)


@pytest.mark.parametrize(
    ("common", "settings", "seeds", "texts", "message"),
    [
        ({}, [{"model.los": "hinge"}], None, True, "did you mean 'model.loss'?"),
        ({}, [{"seed": "a"}], None, True, "bad value in the sweep: flag --config.seed=a:"),
        ({}, [{"batch_size": "1.5"}], None, True, "flag --config.batch_size=1.5"),
        ({"seed": 1}, [{}], 2, True, "--config.seed: a sweep sets each run's seed"),
        ({}, [{"seed": "1"}], 2, True, "--seeds and a swept seed (--sweep) exclude each other"),
        ({"model.loss": "hinge"}, [{"model.loss": "hinge"}], None, True, "both swept"),
        ({}, [], None, True, "--sweep gives no runs"),
        ({}, [{"model.loss": "hinge"}] * 2, None, True, "share the folder 'loss=hinge,seed=0'"),
        ({}, [{"optimizer.generator.b1": "0.5"}], None, False, "cannot be given"),
    ],
)
def test_plan_errors(common, settings, seeds, texts, message):
    with pytest.raises(cli.UsageError) as error:
        sweeps.plan(RING, common, settings, seeds, texts=texts)
    assert message in str(error.value)


def test_check_runs_checks_each_config_as_training_does():
    sweep = sweeps.plan(RING, {}, [{"model.loss": "hinge"}, {"model.loss": "hings"}], 1, texts=True)
    sweeps.check_runs(sweep, [0])
    with pytest.raises(ConfigError) as error:
        sweeps.check_runs(sweep, [0, 1])
    assert str(error.value).startswith("run loss=hings,seed=0: config.model.loss='hings'; expected")


def test_commit_marker_is_the_checkpoints():
    from experiments import checkpoint

    assert sweeps.COMMIT_MARKER == checkpoint.COMMIT_MARKER


# --- the command ---------------------------------------------------------------------------------


def run_sweep(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_dry_run_prints_each_run_of_a_config_files_sweep(tmp_path):
    config = tmp_path / "study.py"
    config.write_text(
        "from configs import gan_ring2d\n"
        "from experiments.sweeps import product, zip\n\n"
        "def get_config():\n"
        "    return gan_ring2d.get_config()\n\n"
        "def sweep():\n"
        "    return product(\n"
        "        {'model.loss': ['hinge', 'least_squares']},\n"
        "        zip({'model.generator.features': [(16,), (32, 32)],\n"
        "             'optimizer.generator.b1': [0.0, 0.5]}),\n"
        "    )\n"
    )
    root = tmp_path / "study"
    result = run_sweep(
        f"--config={config}", f"--workdir={root}", "--dry_run", "--config.num_train_steps=3"
    )
    assert result.returncode == 0, result.stderr
    python = sys.executable
    expected = []
    for loss in ["hinge", "least_squares"]:
        for features, name, b1 in [("(16,)", "16", "0.0"), ("(32, 32)", "32-32", "0.5")]:
            rundir = f"{root}/loss={loss},features={name},b1={b1},seed=0"
            expected.append(
                f"{python} -m experiments.main --config={config} --workdir={rundir} "
                f"--config.num_train_steps=3 --config.model.loss={loss} "
                f"'--config.model.generator.features={features}' "
                f"--config.optimizer.generator.b1={b1} --config.seed=0 && "
                f"{python} -m experiments.evaluate --workdir={rundir} --step=3"
            )
    assert result.stdout.splitlines() == expected
    assert not root.exists()  # a dry run writes nothing


def test_bad_command_lines_are_one_line_and_touch_nothing(tmp_path):
    config = tmp_path / "plain.py"  # imports no jax: each case takes a fraction of a second
    config.write_text(
        "import ml_collections\n\n"
        "def get_config():\n"
        "    return ml_collections.ConfigDict(\n"
        "        {'seed': 0, 'num_train_steps': 1, 'model': {'loss': 'hinge'}})\n"
    )
    root = tmp_path / "study"
    root.mkdir()
    (root / "sweep.json").write_text('{"config": "other.py"}\n')
    cases = [
        ([f"--sweep={LOSSES.replace('loss', 'los', 1)}"], "did you mean 'model.loss'?"),
        (["--noevaluate", "--eval_metrics=fid"], "--noevaluate excludes the --eval_* flags"),
        ([f"--sweep={LOSSES}", "--run_index=2"], "--run_index=2: the sweep has 2 runs (0 ... 1)"),
        (["--seeds=0"], "--seeds"),
        (["--config.seed=3"], "--config.seed: a sweep sets each run's seed"),
    ]
    for args, message in cases:
        result = run_sweep(f"--config={config}", f"--workdir={root}", *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert [path.name for path in root.iterdir()] == ["sweep.json"]
    assert (root / "sweep.json").read_text() == '{"config": "other.py"}\n'


def test_sweep_json_is_written_once_and_guards_the_folder(tmp_path):
    sweep = sweeps.plan(RING, {}, sweeps.parse_sweep(LOSSES), 2, texts=True)
    root = tmp_path / "study"
    sweeps.write_description(root, sweep)
    text = (root / "sweep.json").read_text()
    assert json.loads(text) == sweep.describe()
    sweeps.write_description(root, sweep)  # the same sweep: the same file
    assert (root / "sweep.json").read_text() == text
    assert [path.name for path in root.iterdir()] == ["sweep.json"]  # no temporary left
    other = sweeps.plan(RING, {"num_train_steps": 5}, sweeps.parse_sweep(LOSSES), 2, texts=True)
    with pytest.raises(cli.UsageError) as error:
        sweeps.write_description(root, other)
    assert str(error.value) == (
        f"{root} holds another sweep: its sweep.json differs in overrides, runs "
        "(give the same arguments, or another --workdir)"
    )
    assert (root / "sweep.json").read_text() == text


def test_a_run_another_process_holds_is_left_to_it(tmp_path):
    sweep = sweeps.plan(RING, dict(TINY), [{}], None, texts=True)
    rundir = tmp_path / "seed=0"
    rundir.mkdir()
    with open(rundir / "log.txt", "a") as held:  # as a worker running it holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        outcome = sweeps.execute(sweep, 0, tmp_path, None, wait=False)
    assert outcome == sweeps.Outcome("seed=0", "busy", "another process runs it")
    assert [path.name for path in rundir.iterdir()] == ["log.txt"]
    assert (rundir / "log.txt").read_text() == ""  # nothing was started


def test_a_runs_process_stops_when_the_sweep_dies():
    """The run's process gets SIGTERM when the process that started it is killed."""
    child = "import os, signal; print(os.getpid(), flush=True); signal.pause()"
    code = f"import sys; from experiments import sweeps; sweeps._call([sys.executable, '-c', {child!r}], sys.stdout)"
    parent = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout.readline().split("$ ")[1].startswith(sys.executable)
    pid = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait()
        # The pipe closes when its last writer, the run's process, is gone.
        readable, _, _ = select.select([parent.stdout], [], [], 60)
        assert readable and parent.stdout.read() == ""
    finally:
        parent.stdout.close()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def complete(rundir: Path, steps: int = 3) -> bool:
    return (rundir / "checkpoints" / str(steps) / sweeps.COMMIT_MARKER).is_file() and (
        json.loads((rundir / "eval" / f"{steps}.json").read_text())["protocol"]["step"] == steps
    )


def logged_metrics(rundir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A sweep of 2 seeds killed with SIGKILL once its first run finished, then run again."""
    root = tmp_path_factory.mktemp("sweep") / "study"
    args = [f"--config={RING}", f"--workdir={root}", "--seeds=2", *TINY_ARGS]
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("[2/2]"):  # the second run has started
            break
    process.kill()
    process.wait()
    process.stdout.close()
    rerun = run_sweep(*args)
    return root, args, lines, rerun


@pytest.mark.slow
def test_a_killed_sweep_completes_when_run_again(killed_sweep):
    root, _, lines, rerun = killed_sweep
    assert lines[1] == f"[1/2] {NAMES[0]}: training and evaluation (log {root / NAMES[0]}/log.txt)"
    assert lines[2].startswith(f"[1/2] {NAMES[0]}: done (")
    assert rerun.returncode == 0, rerun.stderr
    assert f"[1/2] {NAMES[0]}: skipped (finished)" in rerun.stdout
    assert f"[2/2] {NAMES[1]}: done (" in rerun.stdout
    assert rerun.stdout.splitlines()[-1] == "sweep: 2 runs: 1 done, 1 skipped"
    assert sorted(path.name for path in root.iterdir()) == sorted([*NAMES, "sweep.json"])
    assert all(complete(root / name) for name in NAMES)
    description = json.loads((root / "sweep.json").read_text())
    assert [run["overrides"] for run in description["runs"]] == [{"seed": 0}, {"seed": 1}]
    assert description["overrides"]["num_train_steps"] == 3


@pytest.mark.slow
def test_rerunning_a_finished_sweep_starts_nothing(killed_sweep):
    root, args, _, _ = killed_sweep
    before = {
        path: (path.stat().st_mtime_ns, path.read_bytes())
        for path in root.rglob("*")
        if path.is_file()
    }
    result = run_sweep(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        f"[1/2] {NAMES[0]}: skipped (finished)",
        f"[2/2] {NAMES[1]}: skipped (finished)",
        "sweep: 2 runs: 2 skipped",
    ]
    after = {
        path: (path.stat().st_mtime_ns, path.read_bytes())
        for path in root.rglob("*")
        if path.is_file()
    }
    assert after == before  # no log line, no metric, not even sweep.json rewritten


@pytest.mark.slow
def test_array_tasks_and_submitit_give_the_plain_sweeps_folder(killed_sweep, tmp_path):
    plain, args, _, _ = killed_sweep
    root = tmp_path / "study"
    args = [arg.replace(f"--workdir={plain}", f"--workdir={root}") for arg in args]
    # Task 0 of a SLURM array, without its evaluation: the run is trained, not finished.
    task = run_sweep(*args, "--noevaluate", env={"SLURM_ARRAY_TASK_ID": "0"})
    assert task.returncode == 0, task.stderr
    assert task.stdout.splitlines()[-1] == "sweep: 1 run: 1 done"
    assert [path.name for path in root.iterdir() if path.is_dir()] == [NAMES[0]]
    assert not (root / NAMES[0] / "eval").exists()
    # submitit's local executor gets both unfinished runs: run 0 to evaluate, run 1 to do.
    result = run_sweep(
        *args, "--launcher=slurm", "--slurm_cluster=local", "--slurm_time_min=10", "--wait"
    )
    assert result.returncode == 0, result.stderr
    assert "sweep: submitted 2 runs of 2" in result.stdout
    assert result.stdout.splitlines()[-1] == "sweep: 2 runs: 2 done"
    log = (root / NAMES[0] / "log.txt").read_text()
    assert log.count("-m experiments.main") == 1 and log.count("-m experiments.evaluate") == 1
    assert (root / "sweep.json").read_bytes() == (plain / "sweep.json").read_bytes()
    assert sorted(p.name for p in root.iterdir()) == sorted([*NAMES, "submitit", "sweep.json"])
    for name in NAMES:
        assert complete(root / name)
        assert logged_metrics(root / name) == logged_metrics(plain / name)


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path):
    root = tmp_path / "study"
    lr = "optimizer.generator.learning_rate=1e30,0.001|optimizer.discriminator.learning_rate=1e30,0.001"
    result = run_sweep(
        f"--config={RING}", f"--workdir={root}", f"--sweep={lr}", "--noevaluate", *TINY_ARGS
    )
    bad = (
        "optimizer.generator.learning_rate=1e+30,optimizer.discriminator.learning_rate=1e+30,seed=0"
    )
    good = (
        "optimizer.generator.learning_rate=0.001,optimizer.discriminator.learning_rate=0.001,seed=0"
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[2].startswith(
        f"[1/2] {bad}: failed: training exited with status 1: error: non-finite metric at step "
    )
    assert lines[2].endswith(f"(log {root / bad}/log.txt)")
    assert lines[-1] == "sweep: 2 runs: 1 done, 1 failed"
    assert result.stderr.splitlines() == [f"error: run {bad}: {lines[2].split(': failed: ')[1]}"]
    assert "exit status 1" in (root / bad / "log.txt").read_text()
    assert (root / good / "checkpoints" / "3" / sweeps.COMMIT_MARKER).is_file()
