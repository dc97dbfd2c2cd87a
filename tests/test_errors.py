"""Bad input to every entry point: one line ``error: ...`` on stderr naming the key, flag or path, a
non-zero status, no traceback, and the workdir exactly as it was; ``--help`` prints the usage and
exits 0.

Config values are checked in-process (``config_checks.check_config``, and ``train.main`` for the
printed line); the command-line wiring by a few subprocesses per entry point, those on a workdir
sharing one tiny one (its initial state saved as a checkpoint: no train step is compiled).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from configs import quickstart
from conftest import REPO_ROOT
from experiments import checkpoint, cli, config_checks, optim, train, workdir
from experiments.errors import ConfigError
from test_train import tiny_config


def snapshot(path):
    """Every entry under ``path`` with its kind, size and modification time."""
    return {
        str(p.relative_to(path)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
    }


def with_value(config, key: str, value):
    """A copy of ``config`` with ``key`` set to ``value`` of any type (a config file may write
    anything; the command line's overrides are type-checked by ``config_flags``)."""
    values = config.to_dict()
    *path, leaf = key.split(".")
    parent = values
    for part in path:
        parent = parent[part]
    parent[leaf] = value
    return ml_collections.ConfigDict(values)


def assert_one_error_line(stderr: str, *names: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


# --------------------------------------------------------------------------- config values

GAN_CASES = [
    ("seed", -1, "config.seed=-1"),
    ("seed", 2**63, "config.seed="),
    ("seed", 1.5, "config.seed=1.5"),
    ("seed", True, "config.seed=True"),
    ("data_seed", -1, "config.data_seed=-1"),
    ("num_train_steps", -1, "config.num_train_steps=-1"),
    ("batch_size", 0, "config.batch_size=0"),
    ("batch_size", 64.0, "config.batch_size=64.0"),
    ("eval_batch_size", 0, "config.eval_batch_size=0"),
    ("log_every_steps", -1, "config.log_every_steps=-1"),
    ("eval_every_steps", -1, "config.eval_every_steps=-1"),
    ("checkpoint_every_steps", -1, "config.checkpoint_every_steps=-1"),
    ("checkpoints_to_keep", 0, "config.checkpoints_to_keep=0"),
    ("num_grid_examples", 0, "config.num_grid_examples=0"),
    ("cpu_convolutions", "fast", "config.cpu_convolutions='fast'"),
    ("host_memory", "huge", "config.host_memory='huge'"),
    ("compute_dtype", "float16", "config.compute_dtype='float16'"),
    ("data.name", "mnits", "config.data.name='mnits'"),
    ("data.name", "tfds:", "config.data.name='tfds:'"),
    ("data.binarize", "static", "config.data.binarize='static'"),
    ("data.train_split", "training", "config.data.train_split='training'"),
    ("data.eval_split", "valid", "config.data.eval_split='valid'"),  # shapes: train, test
    ("data.image_size", 0, "config.data.image_size=0"),
    ("optimizer.generator.learning_rate", 0.0, "config.optimizer.generator.learning_rate=0.0"),
    ("optimizer.generator.learning_rate", -1e-3, "learning_rate=-0.001"),
    ("optimizer.discriminator.learning_rate", math.nan, "discriminator.learning_rate=nan"),
    ("optimizer.generator.learning_rate", "1e-3", "learning_rate='1e-3'"),
    ("optimizer.discriminator.name", "adamax", "config.optimizer.discriminator.name='adamax'"),
    ("optimizer.generator.schedule", "cos", "config.optimizer.generator.schedule='cos'"),
    ("optimizer.generator.b1", 1.0, "config.optimizer.generator.b1=1.0"),
    ("optimizer.generator.b1", -0.1, "config.optimizer.generator.b1=-0.1"),
    ("optimizer.discriminator.b2", 1.5, "config.optimizer.discriminator.b2=1.5"),
    ("optimizer.generator.momentum", 1.0, "config.optimizer.generator.momentum=1.0"),
    ("optimizer.generator.eps", -1e-8, "config.optimizer.generator.eps=-1e-08"),
    ("optimizer.generator.weight_decay", -0.1, "generator.weight_decay=-0.1"),
    ("optimizer.generator.grad_clip_norm", -1.0, "generator.grad_clip_norm=-1.0"),
    ("optimizer.generator.warmup_steps", -1, "generator.warmup_steps=-1"),
    ("optimizer.generator.decay_steps", -1, "generator.decay_steps=-1"),
    ("evaluation.num_samples", 0, "config.evaluation.num_samples=0"),
    ("evaluation.sample_batch_size", 0, "config.evaluation.sample_batch_size=0"),
    ("evaluation.feature_batch_size", -1, "config.evaluation.feature_batch_size=-1"),
    ("evaluation.feature_net", "vgg", "config.evaluation.feature_net='vgg'"),
    ("evaluation.best_mode", "lowest", "config.evaluation.best_mode='lowest'"),
    ("evaluation.reference_split", "val", "config.evaluation.reference_split='val'"),
]


@pytest.mark.parametrize(("key", "value", "expected"), GAN_CASES)
def test_config_value_is_refused_naming_the_key(key, value, expected):
    config = with_value(tiny_config(), key, value)
    with pytest.raises(ConfigError) as error:
        config_checks.check_config(config)
    message = str(error.value)
    assert expected in message and "\n" not in message


def test_decaying_schedule_needs_decay_steps_past_the_warmup():
    config = quickstart.get_config()  # one optimiser config: config.optimizer itself
    config.optimizer.update(schedule="cosine", warmup_steps=100, decay_steps=100)
    with pytest.raises(ConfigError, match=r"config\.optimizer\.decay_steps=100: the cosine"):
        config_checks.check_config(config)
    config.optimizer.decay_steps = 101
    config_checks.check_config(config)


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "mnist.gz").write_bytes(b"")
    config = with_value(tiny_config(), "data.name", "mnist")
    config.data.dir = str(tmp_path / "mnist.gz")
    with pytest.raises(ConfigError, match=r"config\.data\.dir=.*mnist\.gz': is a file"):
        config_checks.check_config(config)


def test_edge_values_and_old_workdirs_pass():
    config = tiny_config().to_dict()
    config.update(seed=0, data_seed=None, num_train_steps=0, log_every_steps=0)
    config.update(eval_every_steps=0, checkpoint_every_steps=0, checkpoints_to_keep=1)
    config["optimizer"]["generator"].update(b1=0.0, eps=0.0, momentum=0.0, learning_rate=1e30)
    config_checks.check_config(ml_collections.ConfigDict(config))
    # Workdirs written before these keys existed lack them.
    for key in ("data_seed", "cpu_convolutions", "host_memory", "compute_dtype", "evaluation"):
        del config[key]
    config_checks.check_config(ml_collections.ConfigDict(config))


def test_every_shipped_experiment_config_passes():
    checked = 0
    paths = [*(REPO_ROOT / "configs").rglob("*.py"), REPO_ROOT / "examples" / "gaussian_ring2d.py"]
    for path in sorted(paths):
        if path.name in ("__init__.py", "base.py", "classifier_mnist.py"):
            continue  # classifier_mnist configs the domain classifier, not an experiment
        config_checks.check_config(cli.load_config_file(str(path)))
        checked += 1
    assert checked >= 15


def test_every_optimizer_and_schedule_name_builds():
    for name in optim.OPTIMIZER_NAMES:
        for schedule in optim.SCHEDULE_NAMES:
            config = optim.default_optimizer_config(name=name, schedule=schedule, decay_steps=10)
            config_checks.check_optimizer(config, "optimizer")
            optim.make_optimizer(config)


def test_training_paths(tmp_path):
    config = tiny_config(**{"evaluation.metrics": "fid"})  # 16 px shapes: the InceptionV3 net
    with pytest.raises(ConfigError, match=r"config\.evaluation\.inception_weights='': the metric"):
        config_checks.check_training_paths(config)
    missing = tiny_config(
        **{"evaluation.metrics": "fid", "evaluation.inception_weights": str(tmp_path / "w.npz")}
    )
    with pytest.raises(ConfigError, match=r"inception_weights=.*w\.npz': no such file"):
        config_checks.check_training_paths(missing)
    (tmp_path / "cache").write_text("")
    cache_file = tiny_config(
        **{"evaluation.metrics": "fid", "evaluation.cache_dir": str(tmp_path / "cache")}
    )
    with pytest.raises(ConfigError, match=r"config\.evaluation\.cache_dir=.*: is a file"):
        config_checks.check_training_paths(cache_file)
    # No sample metric in training: no feature net, nothing needed.
    config_checks.check_training_paths(tiny_config())
    config_checks.check_training_paths(tiny_config(**{"evaluation.metrics": "nll"}))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("batch_size", 0, "config.batch_size=0"),  # engine
        ("model.loss", "wgan", "config.model.loss='wgan'"),  # the GAN family's own checks
        ("model.ema_decay", 1.5, "config.model.ema_decay=1.5"),
        ("evaluation.metrics", "fid,lpips", "lpips"),  # checked with the family's own names
        ("evaluation.metrics", "fid", "config.evaluation.inception_weights"),  # no weights
    ],
)
def test_train_main_prints_one_line_and_leaves_the_workdir(tmp_path, capsys, key, value, expected):
    (tmp_path / "notes.txt").write_text("keep")
    before = snapshot(tmp_path)
    assert train.main(tiny_config(**{key: value}), str(tmp_path)) == 1
    assert_one_error_line(capsys.readouterr().err, expected)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- config files, paths

CONFIG_FILES = [
    ("syntax.py", "def get_config(:\n", "cannot be loaded (line 1): SyntaxError"),
    ("imports.py", "import no_such_module\n", "ModuleNotFoundError"),
    ("nofunction.py", "x = 1\n", "has no get_config() function"),
    ("raises.py", "def get_config():\n    raise ValueError('boom')\n", "(line 2) ValueError: boom"),
    ("dict.py", "def get_config():\n    return {'seed': 0}\n", "returned a dict, not an"),
]


@pytest.mark.parametrize(("name", "text", "expected"), CONFIG_FILES)
def test_broken_config_file(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(cli.UsageError) as error:
        cli.load_config_file(str(path))
    assert str(path) in str(error.value) and expected in str(error.value)


def test_config_spec_that_is_empty_or_a_folder(tmp_path):
    with pytest.raises(cli.UsageError, match="empty --config"):
        cli.load_config_file("")
    with pytest.raises(cli.UsageError, match="is a directory"):
        cli.load_config_file(str(tmp_path))


def test_tuple_override_of_the_wrong_item_type():
    original = ml_collections.ConfigDict({"features": (16, 8), "scales": (1.0,), "names": ()})
    good = ml_collections.ConfigDict({"features": (4, 4, 4), "scales": (2,), "names": ("a", 1)})
    cli.check_override_types(original, good, ["features", "scales", "names"])
    bad = ml_collections.ConfigDict({"features": (16, "abc"), "scales": (1.0,), "names": ()})
    with pytest.raises(cli.UsageError, match=r"--config\.features=\(16, 'abc'\): expected a tuple"):
        cli.check_override_types(original, bad, ["features"])


def test_path_checks(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    cli.check_dir(tmp_path / "folder", "--workdir")
    cli.check_dir(tmp_path / "new" / "run", "--workdir")
    cli.check_output_file(tmp_path / "new" / "s.npz", "--out")
    with pytest.raises(cli.UsageError, match=r"--workdir=.*file is a file; expected a directory"):
        cli.check_dir(tmp_path / "file", "--workdir")
    with pytest.raises(cli.UsageError, match=r"--workdir=.*file/run: .*file is a file, not a"):
        cli.check_dir(tmp_path / "file" / "run", "--workdir")
    with pytest.raises(cli.UsageError, match=r"--out=.*folder is a directory"):
        cli.check_output_file(tmp_path / "folder", "--out")
    with pytest.raises(cli.UsageError, match=r"--out=.*file/s\.npz: .*file is a file, not a"):
        cli.check_output_file(tmp_path / "file" / "s.npz", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_workdir_parent(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(cli.UsageError, match=r"locked is not writable"):
            cli.check_dir(parent / "run", "--workdir")
        with pytest.raises(cli.UsageError, match=r"locked is not writable"):
            cli.check_output_file(parent / "s.npz", "--out")
    finally:
        parent.chmod(0o700)


# --------------------------------------------------------------------------- workdirs


SMALL_DATA = {"data.train_size": 64, "data.test_size": 16}


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    """A workdir as training leaves it: config.json and a checkpoint at step 2 (of a state of zeros
    with the train state's structure: these tests never read the values, and nothing compiles)."""
    path = tmp_path_factory.mktemp("tiny")
    experiment = train.Experiment(tiny_config(**SMALL_DATA), path)
    experiment.write_config(0)
    zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), experiment.abstract_state())
    checkpointer = checkpoint.Checkpointer(path / "checkpoints", keep=3)
    checkpointer.save(2, zeros)
    checkpointer.close()
    return path


def test_loading_what_is_not_a_workdir(tmp_path, tiny_workdir):
    with pytest.raises(ConfigError, match=r"workdir .*nowhere does not exist"):
        workdir.load_config(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"workdir .*file is a file"):
        workdir.load_config(tmp_path / "file")
    with pytest.raises(ConfigError, match=r"it has no config\.json"):
        workdir.load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"cannot read .*config\.json"):
        workdir.load_config(tmp_path)
    # config.json but no checkpoint yet: refused, and no checkpoints/ made.
    (tmp_path / "config.json").write_text((tiny_workdir / "config.json").read_text())
    before = snapshot(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="has no checkpoints/"):
        workdir.load_experiment(tmp_path)
    assert snapshot(tmp_path) == before


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


# --------------------------------------------------------------------------- commands

# Each entry point and flags its help must list.
ENTRY_POINTS = {
    "experiments.main": ("--config", "--workdir"),
    "experiments.sample": ("--workdir", "--num", "--out", "--labels"),
    "experiments.evaluate": ("--workdir", "--metrics", "--[no]best", "--dataset"),
    "experiments.benchmark": ("--config", "--steps"),
    "experiments.sweep": ("--config", "--workdir", "--sweep", "--seeds", "--run_index"),
    "experiments.evaluation.classifier": ("--config", "--cache_dir"),
}


@pytest.mark.parametrize(
    ("module", "flag"),
    [(module, "--help") for module in ENTRY_POINTS]
    + [("experiments.main", "-h"), ("experiments.main", "--helpfull")],
)
def test_help(module, flag):
    result = run_module(module, flag)
    assert result.returncode == 0 and result.stderr == ""
    assert f"Usage: python -m {module} " in result.stdout
    listed = result.stdout.split("\nflags:\n")[1]
    for name in ENTRY_POINTS[module]:
        assert f"  {name}" in listed, name
    if flag == "--helpfull":
        assert "--verbosity" in result.stdout  # absl's own flags too


# A config file that imports no jax: the command fails in a fraction of a second.
PLAIN_CONFIG = """
import ml_collections


def get_config():
    return ml_collections.ConfigDict({"seed": 0})
"""


def command_cases(tmp_path, workdir_path):
    """(module, args, names the line must contain) of each command case below."""
    file = tmp_path / "file"
    return {
        "main: workdir is a file": (
            "experiments.main",
            [f"--config={tmp_path / 'plain.py'}", f"--workdir={file}"],
            ["--workdir=", "is a file"],
        ),
        "main: config file with a syntax error": (
            "experiments.main",
            [f"--config={tmp_path / 'broken.py'}", f"--workdir={tmp_path / 'run'}"],
            ["broken.py", "SyntaxError"],
        ),
        "main: tuple override of the wrong type": (
            "experiments.main",
            [
                "--config=configs/dcgan_mnist.py",
                f"--workdir={tmp_path / 'run'}",
                "--config.model.generator.features=abc",
            ],
            ["--config.model.generator.features=", "expected a tuple of ints"],
        ),
        "main: value out of range on an existing workdir": (
            "experiments.main",
            ["--config=configs/dcgan_mnist.py", f"--workdir={workdir_path}", "--config.seed=-1"],
            ["config.seed=-1"],
        ),
        "sample: --out is a directory": (
            "experiments.sample",
            [f"--workdir={workdir_path}", "--num=2", f"--out={tmp_path}"],
            ["--out=", "is a directory"],
        ),
        "sample: --out under a file": (
            "experiments.sample",
            [f"--workdir={workdir_path}", "--num=2", f"--out={file}/s.npz"],
            ["--out=", "is a file"],
        ),
        "sample: --num=0": (
            "experiments.sample",
            [f"--workdir={workdir_path}", "--num=0", f"--out={tmp_path}/s.npz"],
            ["--num=0"],
        ),
        "sample: --seed=-1": (
            "experiments.sample",
            [f"--workdir={workdir_path}", "--num=2", f"--out={tmp_path}/s.npz", "--seed=-1"],
            ["--seed=-1"],
        ),
        "sample: --labels not integers": (
            "experiments.sample",
            [f"--workdir={workdir_path}", "--num=2", f"--out={tmp_path}/s.npz", "--labels=a"],
            ["--labels"],
        ),
        "sample: no such --step": (
            "experiments.sample",
            [f"--workdir={workdir_path}", "--num=2", f"--out={tmp_path}/s.npz", "--step=7"],
            ["step 7", str(workdir_path)],
        ),
        "evaluate: --output is a directory": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", f"--output={tmp_path}"],
            ["--output=", "is a directory"],
        ),
        "evaluate: --cache_dir is a file": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", f"--cache_dir={file}"],
            ["--cache_dir=", "is a file"],
        ),
        "evaluate: --step with --best": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", "--step=2", "--best"],
            ["--step", "--best"],
        ),
        "evaluate: --num_samples=0": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", "--num_samples=0"],
            ["--num_samples=0"],
        ),
        "evaluate: unknown metric": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", "--metrics=fid,lpips"],
            ["unknown metric", "lpips"],
        ),
        "evaluate: --inception_weights missing": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", f"--inception_weights={tmp_path}/w.npz"],
            ["--inception_weights=", "no such file"],
        ),
        "evaluate: unknown --dataset": (
            "experiments.evaluate",
            ["--dataset=mnits"],
            ["--dataset=mnits"],
        ),
        "evaluate: --best without checkpoints_best": (
            "experiments.evaluate",
            [f"--workdir={workdir_path}", "--best"],
            ["checkpoints_best"],
        ),
        "benchmark: value out of range": (
            "experiments.benchmark",
            ["--config=configs/dcgan_mnist.py", "--config.batch_size=0"],
            ["config.batch_size=0"],
        ),
        "classifier: --cache_dir is a file": (
            "experiments.evaluation.classifier",
            ["--config=configs/classifier_mnist.py", f"--cache_dir={file}"],
            ["--cache_dir=", "is a file"],
        ),
    }


COMMAND_CASES = list(command_cases(REPO_ROOT, REPO_ROOT))  # the names only


@pytest.mark.parametrize("case", COMMAND_CASES)
def test_command_refuses_bad_input(case, tmp_path, tiny_workdir):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "broken.py").write_text("def get_config(:\n")
    (tmp_path / "plain.py").write_text(PLAIN_CONFIG)
    module, args, names = command_cases(tmp_path, tiny_workdir)[case]
    before, around = snapshot(tiny_workdir), snapshot(tmp_path)
    result = run_module(module, *args)
    assert result.returncode != 0
    assert_one_error_line(result.stderr, *names)
    assert snapshot(tiny_workdir) == before
    assert snapshot(tmp_path) == around  # nothing made beside it either (no run/, no s.npz)
