"""Checks of the engine's config values, so that a value that cannot work is one clear line
(``error: config.KEY=VALUE: ...``) before anything is built or written.

``check_config`` checks the values alone (types and ranges of the keys every experiment has, the
data names, every optimiser config under ``config.optimizer``, ``config.evaluation``). It runs
first in ``experiments.train.Experiment``, so training, sampling, evaluation and the benchmark all
check the same way. Keys that workdirs written before they existed lack are checked only when
present. The families check their own ``config.model`` keys.

``check_training_paths`` checks the files the in-training evaluation will need (the InceptionV3
weights, the cache folder). They depend on the machine, not only on the config, so only training
(``experiments.train.main``) checks them: sampling from a workdir needs neither.
"""

from __future__ import annotations

import math
from pathlib import Path

import ml_collections

from experiments import compiler, data, host_memory, optim, precision
from experiments.errors import ConfigError
from experiments.evaluation import cache, evaluator, features

MAX_SEED = 2**63  # jax.random.key takes int64 seeds
BEST_MODES = ("min", "max")
REPLICA_LOOPS = ("auto", "vmap", "unroll")  # experiments.replicas


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _fail(key: str, value, problem: str):
    raise ConfigError(f"config.{key}={value!r}: {problem}")


def _int_at_least(config, key: str, lowest: int, path: str = "") -> None:
    if key not in config:
        return
    value = config[key]
    if not _is_int(value) or value < lowest:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(lowest)
        _fail(path + key, value, f"expected {what or f'an integer >= {lowest}'}")


def _number_in(config, key: str, path: str, low: float, high: float | None = None, *, above=False):
    """A finite number with ``low <= value`` (``low < value`` if ``above``) and ``value < high``."""
    if key not in config:
        return
    value = config[key]
    ok = _is_number(value) and (value > low if above else value >= low)
    if ok and high is not None:
        ok = value < high
    if not ok:
        if high is not None:
            text = f"in [{low}, {high})"
        else:
            text = f"> {low}" if above else f">= {low}"
        _fail(path + key, value, f"expected a number {text}")


def _choice(config, key: str, choices, path: str = "") -> None:
    if key in config and config[key] not in choices:
        _fail(path + key, config[key], f"expected one of {list(choices)}")


def check_seed(config, key: str) -> None:
    value = config[key]
    if not _is_int(value) or not 0 <= value < MAX_SEED:
        _fail(key, value, "expected an integer in [0, 2**63)")


def check_top_level(config) -> None:
    check_seed(config, "seed")
    if config.get("data_seed", None) is not None:
        check_seed(config, "data_seed")
    for key in ("num_train_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        _int_at_least(config, key, 0)
    for key in ("batch_size", "eval_batch_size", "checkpoints_to_keep", "num_grid_examples"):
        _int_at_least(config, key, 1)
    _int_at_least(config, "num_replicas", 1)
    _choice(config, "replica_loop", REPLICA_LOOPS)
    _choice(config, "cpu_convolutions", compiler.CPU_CONVOLUTIONS)
    _choice(config, "host_memory", host_memory.HOST_MEMORY)
    _choice(config, "compute_dtype", precision.COMPUTE_DTYPES)


def check_data(config) -> None:
    data_config = config.data
    if not isinstance(data_config.get("name"), str):
        _fail("data.name", data_config.get("name"), "expected a dataset name")
    try:
        data.check_name(data_config.name)
    except data.DataError as error:
        _fail("data.name", data_config.name, str(error))
    directory = data_config.get("dir", "") or ""
    if directory and data_config.name not in data.EMBEDDED_DATASETS:
        path = Path(directory).expanduser()
        if path.exists() and not path.is_dir():  # a missing folder: the data layer says what to do
            _fail("data.dir", directory, "is a file; expected the folder holding the dataset")
    _choice(data_config, "binarize", data.BINARIZE_MODES, "data.")
    for key in ("train_split", "eval_split"):
        if key in data_config:
            check_split(config, f"data.{key}", data_config[key])
    _int_at_least(data_config, "image_size", 1, "data.")
    _int_at_least(data_config, "data_seed", 0, "data.")


def check_split(config, key: str, split: str) -> None:
    """``split`` (the value of ``key``) is a split of ``config.data``'s dataset."""
    try:
        data.check_split(config.data, split)
    except data.DataError as error:
        _fail(key, split, str(error))


def optimizer_configs(config) -> dict[str, ml_collections.ConfigDict]:
    """Every optimiser config under ``config.optimizer`` (one, or one per network as in the GAN
    family), by dotted path: the sub-configs with a ``learning_rate``."""
    found = {}

    def visit(node, path):
        if "learning_rate" in node:
            found[path] = node
            return
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                visit(value, f"{path}.{key}")

    if isinstance(config.get("optimizer"), ml_collections.ConfigDict):
        visit(config.optimizer, "optimizer")
    return found


def check_optimizer(opt, path: str) -> None:
    """The keys of one ``experiments.optim`` config (see its module docstring)."""
    path += "."
    _choice(opt, "name", optim.OPTIMIZER_NAMES, path)
    _number_in(opt, "learning_rate", path, 0, above=True)
    for key in ("b1", "b2", "momentum"):
        _number_in(opt, key, path, 0, 1)
    for key in ("eps", "weight_decay", "grad_clip_norm"):
        _number_in(opt, key, path, 0)
    _choice(opt, "schedule", optim.SCHEDULE_NAMES, path)
    _int_at_least(opt, "warmup_steps", 0, path)
    _int_at_least(opt, "decay_steps", 0, path)
    schedule = opt.get("schedule", "constant")
    if schedule != "constant" and opt.get("decay_steps", 0) <= opt.get("warmup_steps", 0):
        _fail(
            path + "decay_steps",
            opt.get("decay_steps", 0),
            f"the {schedule} schedule needs decay_steps > warmup_steps "
            f"({opt.get('warmup_steps', 0)}): the update count at which it reaches its end",
        )


def check_evaluation(config) -> None:
    evaluation = config.get("evaluation")
    if evaluation is None:
        return
    path = "evaluation."  # its metric names are checked with the family, which adds its own
    _int_at_least(evaluation, "num_samples", 1, path)
    _int_at_least(evaluation, "sample_batch_size", 1, path)
    _int_at_least(evaluation, "feature_batch_size", 0, path)
    _choice(evaluation, "feature_net", features.FEATURE_NET_NAMES, path)
    _choice(evaluation, "best_mode", BEST_MODES, path)
    if evaluation.get("reference_split", ""):
        check_split(config, path + "reference_split", evaluation.reference_split)


def check_mesh(config) -> None:
    """``config.mesh.data`` (-1 or a positive integer) and ``config.mesh.fsdp`` (positive); whether
    they fit the devices is checked when the mesh is made (``experiments.sharding``)."""
    mesh = config.get("mesh")
    if mesh is None:
        return
    if not isinstance(mesh, ml_collections.ConfigDict):
        _fail("mesh", mesh, "expected a ConfigDict with keys data and fsdp")
    unknown = sorted(set(mesh.keys()) - {"data", "fsdp"})
    if unknown:
        _fail(f"mesh.{unknown[0]}", mesh[unknown[0]], "unknown key; config.mesh has data and fsdp")
    _int_at_least(mesh, "fsdp", 1, "mesh.")
    data_axis = mesh.get("data", -1)
    if not _is_int(data_axis) or (data_axis < 1 and data_axis != -1):
        _fail(
            "mesh.data", data_axis, "expected -1 (every device fsdp leaves) or a positive integer"
        )


def check_config(config) -> None:
    """Raises ConfigError naming the first key whose value cannot work (see the module docstring)."""
    check_top_level(config)
    check_mesh(config)
    check_data(config)
    for path, opt in optimizer_configs(config).items():
        check_optimizer(opt, path)
    check_evaluation(config)


def check_training_paths(config) -> None:
    """Raises ConfigError when the in-training evaluation's sample metrics
    (``config.evaluation.metrics``) will need a file or folder that is not there: the InceptionV3
    weights, a cache folder that is a file."""
    evaluation = config.get("evaluation")
    if evaluation is None:
        return
    names = [name.strip() for name in evaluation.get("metrics", "").split(",")]
    if not any(name in evaluator.METRIC_NAMES for name in names):  # none needs a feature net
        return
    cache_dir = cache.resolve_cache_dir(evaluation.get("cache_dir", ""))
    if cache_dir.exists() and not cache_dir.is_dir():
        _fail("evaluation.cache_dir", str(cache_dir), "is a file; expected a directory")
    feature_net = evaluation.get("feature_net", "auto")
    if features.resolve_kind(feature_net, config.data.name) != "inception":
        return
    weights = evaluation.get("inception_weights", "")
    if not weights:
        _fail(
            "evaluation.inception_weights",
            weights,
            f"the metrics {evaluation.metrics!r} of {config.data.name} images need the "
            "InceptionV3 weights (.npz, docs/evaluation.md)",
        )
    if not Path(weights).expanduser().is_file():
        _fail("evaluation.inception_weights", weights, "no such file")
