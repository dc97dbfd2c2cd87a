"""The domain classifier of MNIST-format datasets (MNIST, Fashion-MNIST, KMNIST): network, training,
cache and command.

Usage: python -m experiments.evaluation.classifier --config=configs/classifier_mnist.py[:DATASET]
       [--cache_dir=DIR] [--config.KEY=VALUE ...]

Its 128-d penultimate activations, divided by one fixed ``feature_scale``, are the features of FID,
KID and precision/recall; its logits give the classifier score and the label accuracy of
conditional samples (see ``features``).

Why a scale: a ReLU network computes the same classifier when its penultimate layer is multiplied by
``c`` and its head by ``1/c``, so the raw scale of these features is an accident of training, and
FID (quadratic in the scale) and KID (whose kernel ``(x·y/d + 1)³`` assumes features of order 1)
would inherit it. After training, ``feature_scale = sqrt(tr(Σ_train) / d)`` (the root mean
per-feature variance over the whole train split, no augmentation) is fixed once and stored with the
weights: on the classifier's own train split the features then have ``tr(Σ) = d``. It is a single
number, so the geometry of the features (precision/recall, density/coverage) is unchanged.

One yardstick: the MNIST classifier's weights ship with the package
(``weights/classifier_mnist.msgpack``, trained once by the command below; ``SHIPPED_SHA256``), so
every machine measures MNIST and binarised-MNIST samples with the same network. ``load_or_train``
loads them (the file's sha256 is checked: a mismatch is a ``ClassifierError``), and they are the
feature net ``classifier_mnist``. A classifier trained on this machine is still possible
(``feature_net='classifier_local'``, and for Fashion-MNIST and KMNIST, which ship none): it is
trained from ``configs/classifier_mnist.py`` on first use, cached in
``<cache_dir>/classifiers/<dataset>-<config fingerprint>/`` and recorded as another feature net,
``classifier_<dataset>_local``. The explicit command is::

    python -m experiments.evaluation.classifier --config=configs/classifier_mnist.py[:DATASET] \
        [--cache_dir=DIR] [--config.KEY=VALUE ...]

Training is deterministic given ``config.seed``: the examples of step ``s`` are the project's
``Batcher.batch(s)``, the initialisation and the random shifts derive from ``fold_in`` keys, so two
runs on the same machine give bit-identical weights. (XLA may round differently on another CPU
type or accelerator; ``weights_hash``, part of every metric's protocol, shows when that happened.)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import data, optim, rng
from experiments.evaluation import metrics

PARAMS_FILE = "params.msgpack"
INFO_FILE = "info.json"
# Datasets whose classifier is another dataset's: binarised MNIST digits are MNIST digits.
CLASSIFIER_DATASET = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "kmnist": "kmnist",
    "binarized_mnist": "mnist",
}
IMAGE_SHAPE = (28, 28, 1)
# Classifiers shipped with the package: dataset -> sha256 of weights/classifier_<dataset>.msgpack
# (which is also its weights_hash, the feature_net_hash of every protocol that uses it).
SHIPPED_SHA256 = {"mnist": "3072321ac8a8126b71212fb5782410f410d1e3329265604ae6db845b1a86918e"}
SHIPPED = "shipped"  # TrainedClassifier.origin of the package's weights
LOCAL = "local"  # ... of a classifier trained on this machine (cached)


class ClassifierError(Exception):
    """The classifier cannot be built: no data, or it trained below its required accuracy."""


class ClassifierNet(nn.Module):
    """Two ``conv → ReLU → 2x2 max-pool`` stages, ``Dense(feature_dim) → ReLU`` (the features) and a
    linear head, with dropout between them in training. Input NHWC in [0, 1]; returns
    ``(features, logits)``."""

    conv_features: tuple[int, ...] = (32, 64)
    kernel_size: int = 3
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = x * 2.0 - 1.0
        for features in self.conv_features:
            x = nn.Conv(features, (self.kernel_size, self.kernel_size), padding="SAME")(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        features = nn.relu(nn.Dense(self.feature_dim)(x))
        dropped = nn.Dropout(self.dropout, deterministic=not train)(features)
        return features, nn.Dense(self.num_classes)(dropped)


def make_net(model_config) -> ClassifierNet:
    return ClassifierNet(
        conv_features=tuple(model_config.conv_features),
        kernel_size=model_config.kernel_size,
        feature_dim=model_config.feature_dim,
        num_classes=model_config.num_classes,
        dropout=model_config.get("dropout", 0.0),
    )


def canonical_tree(tree) -> dict:
    """Nested dicts with sorted keys and numpy leaves: the same bytes for the same weights."""
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {str(key): canonical_tree(tree[key]) for key in sorted(tree)}
    return np.asarray(tree)


def weights_hash(tree) -> str:
    """sha256 (hex) of ``flax.serialization.to_bytes`` of the weights with their keys sorted."""
    return hashlib.sha256(flax.serialization.to_bytes(canonical_tree(tree))).hexdigest()


def config_fingerprint(config) -> str:
    """12 hex digits identifying a classifier config (``data.dir`` and ``data.on_device`` excluded:
    where the data lie, not what they are)."""
    values = json.loads(config.to_json(sort_keys=True))
    values.get("data", {}).pop("dir", None)
    values.get("data", {}).pop("on_device", None)
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def random_shift(x: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
    """Translates each image by its own integer offset in ``[-max_shift, max_shift]`` (zero fill).

    Example ``i`` draws from ``fold_in(key, i)``, so its offset depends only on its batch position.
    """
    if max_shift <= 0:
        return x
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def one(image, example_key):
        offsets = jax.random.randint(example_key, (2,), 0, 2 * max_shift + 1)
        return jax.lax.dynamic_slice(
            image, (offsets[0], offsets[1], 0), (height, width, image.shape[-1])
        )

    return jax.vmap(one)(padded, rng.example_keys(key, x.shape[0]))


@dataclass
class TrainedClassifier:
    """A trained classifier: its config, parameters, feature scale and what training measured.

    ``weights_hash`` is ``weights_hash(stored_tree(params, feature_scale))``.
    """

    config: Any
    params: Any
    feature_scale: float
    test_accuracy: float
    weights_hash: str
    info: dict
    origin: str = LOCAL  # SHIPPED: the package's weights; LOCAL: trained on this machine

    @property
    def net(self) -> ClassifierNet:
        return make_net(self.config.model)


def stored_tree(params, feature_scale: float) -> dict:
    """What is saved and hashed: the parameters and the feature scale (float64)."""
    return {
        "feature_scale": np.asarray(feature_scale, np.float64),
        "params": canonical_tree(params),
    }


def compute_feature_scale(
    net: ClassifierNet, params, source: data.Source, batch_size: int
) -> float:
    """``sqrt(tr(Σ) / d)`` of the raw features of every example of ``source`` (float64)."""
    features_fn = jax.jit(lambda p, x: net.apply({"params": p}, x)[0])
    stats = metrics.RunningStats(net.feature_dim)
    for batch in data.eval_batches(source, batch_size):
        features = np.asarray(features_fn(params, batch["x"]), np.float64)
        stats.update(features[batch["mask"]])
    sigma = stats.finalize().sigma
    return float(np.sqrt(np.trace(sigma) / net.feature_dim))


def accuracy(net: ClassifierNet, params, source: data.Source, batch_size: int) -> float:
    """Top-1 accuracy of ``net`` on every example of ``source`` (which must have labels)."""
    logits_fn = jax.jit(lambda p, x: net.apply({"params": p}, x)[1])
    correct = total = 0
    for batch in data.eval_batches(source, batch_size):
        predicted = np.asarray(jnp.argmax(logits_fn(params, batch["x"]), axis=-1))
        correct += int(np.sum((predicted == batch["label"]) & batch["mask"]))
        total += int(batch["mask"].sum())
    return correct / total


def train_classifier(
    config, train_source: data.Source, test_source: data.Source, *, log=None
) -> TrainedClassifier:
    """Trains the classifier ``config`` describes on ``train_source``; measures ``test_source``.

    ``config.num_epochs`` epochs of ``len(train_source) // config.batch_size`` steps. When
    ``config.optimizer.decay_steps`` is 0 the schedule decays over the whole run. Deterministic:
    bit-identical results for the same config and sources on the same machine.
    """
    log = log or (lambda message: None)
    start = time.perf_counter()
    net = make_net(config.model)
    batcher = data.Batcher(train_source, config.batch_size, config.seed)
    num_steps = config.num_epochs * batcher.steps_per_epoch
    optimizer_config = config.optimizer.to_dict()
    if optimizer_config["decay_steps"] == 0:
        optimizer_config["decay_steps"] = num_steps
    optimizer = optim.make_optimizer(_Namespace(optimizer_config))
    root = rng.root_key(config.seed)
    example = jnp.zeros((1, *train_source.example_shape), jnp.float32)
    params = jax.jit(net.init)(rng.purpose_key(root, "init"), example)["params"]
    opt_state = optimizer.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, labels, step):
        x = random_shift(x, rng.step_key(root, "augment", step), config.augment_shift)

        def loss_fn(params):
            dropout_key = rng.step_key(root, "dropout", step)
            logits = net.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})[1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for step in range(num_steps):
        batch = batcher.batch(step)
        params, opt_state, loss = train_step(params, opt_state, batch["x"], batch["label"], step)
        if (step + 1) % batcher.steps_per_epoch == 0:
            log(
                f"classifier epoch {(step + 1) // batcher.steps_per_epoch}/{config.num_epochs}: "
                f"loss {float(loss):.4f} ({time.perf_counter() - start:.0f} s)"
            )
    params = jax.device_get(params)
    return finish(config, params, train_source, test_source, num_steps, start, log)


def finish(config, params, train_source, test_source, num_steps: int, start: float, log):
    """After the last step: feature scale, test accuracy, hash and info."""
    net = make_net(config.model)
    scale = compute_feature_scale(net, params, train_source, config.eval_batch_size)
    test_accuracy = accuracy(net, params, test_source, config.eval_batch_size)
    seconds = time.perf_counter() - start
    digest = weights_hash(stored_tree(params, scale))
    log(
        f"classifier test accuracy {test_accuracy:.4%}, feature scale {scale:.6g}, "
        f"weights sha256 {digest[:16]}…"
    )
    info = {
        "dataset": train_source.name,
        "test_accuracy": test_accuracy,
        "feature_scale": scale,
        "weights_hash": digest,
        "train_seconds": round(seconds, 1),
        "num_steps": num_steps,
        "num_train_examples": len(train_source),
        "num_test_examples": len(test_source),
        "config_fingerprint": config_fingerprint(config),
        "config": json.loads(config.to_json(sort_keys=True)),
        "jax_version": jax.__version__,
        "device_kind": jax.devices()[0].device_kind,
    }
    return TrainedClassifier(config, params, scale, test_accuracy, digest, info)


class _Namespace:
    """Attribute access over a dict (``optim.make_optimizer`` reads its config by attribute)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


def default_config(dataset: str, data_dir: str = ""):
    """``configs/classifier_mnist.py`` for ``dataset`` (its classifier dataset), with ``data.dir``."""
    from configs import classifier_mnist

    if dataset not in CLASSIFIER_DATASET:
        raise ClassifierError(
            f"no domain classifier for dataset {dataset!r}; it exists for "
            f"{', '.join(CLASSIFIER_DATASET)}. Use feature_net='inception' for other datasets."
        )
    config = classifier_mnist.get_config(CLASSIFIER_DATASET[dataset])
    config.data.dir = data_dir if CLASSIFIER_DATASET[dataset] == dataset else ""
    return config


def cache_path(config, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / "classifiers" / f"{config.data.name}-{config_fingerprint(config)}"


def save(trained: TrainedClassifier, directory: Path) -> None:
    """Writes params and info into ``directory`` atomically (a temporary folder, then a rename)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    temporary.mkdir(exist_ok=True)
    (temporary / PARAMS_FILE).write_bytes(
        flax.serialization.to_bytes(stored_tree(trained.params, trained.feature_scale))
    )
    (temporary / INFO_FILE).write_text(json.dumps(trained.info, indent=2, sort_keys=True))
    try:
        os.replace(temporary, directory)
    except OSError:  # another process cached it first
        for path in temporary.iterdir():
            path.unlink()
        temporary.rmdir()


def from_stored_bytes(config, data: bytes) -> tuple[Any, float]:
    """``(params, feature_scale)`` from the bytes ``save`` writes."""
    net = make_net(config.model)
    abstract = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE)))["params"]
    template = stored_tree(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract), 0.0)
    stored = flax.serialization.from_bytes(template, data)
    return stored["params"], float(stored["feature_scale"])


def shipped_weights_dir():
    """The package's ``weights/`` folder (a ``Traversable``)."""
    return importlib.resources.files("experiments.evaluation") / "weights"


def load_shipped(dataset: str, directory=None) -> TrainedClassifier:
    """The classifier shipped with the package for ``dataset`` (a key of ``SHIPPED_SHA256``).

    ``directory``: where ``classifier_<dataset>.msgpack`` and ``.json`` are (default: the
    package's ``weights/``). Raises ``ClassifierError`` when the file is missing or its sha256 is
    not ``SHIPPED_SHA256[dataset]``.
    """
    directory = shipped_weights_dir() if directory is None else directory
    weights = directory / f"classifier_{dataset}.msgpack"
    expected = SHIPPED_SHA256[dataset]
    try:
        data = weights.read_bytes()
        info = json.loads((directory / f"classifier_{dataset}.json").read_text())
    except (OSError, ValueError) as error:
        raise ClassifierError(
            f"the shipped {dataset} classifier cannot be read ({error}); reinstall the package, "
            "or use feature_net='classifier_local' to train one here"
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ClassifierError(
            f"{weights} has sha256 {digest}, expected {expected}: the shipped {dataset} classifier "
            "is damaged or from another version; reinstall the package"
        )
    config = ml_collections.ConfigDict(tuples(info["config"]))
    params, scale = from_stored_bytes(config, data)
    if weights_hash(stored_tree(params, scale)) != digest:  # the file is the canonical bytes
        raise ClassifierError(f"{weights} does not hold the canonical bytes of its weights")
    return TrainedClassifier(config, params, scale, info["test_accuracy"], digest, info, SHIPPED)


def tuples(value):
    """JSON lists as tuples (configs hold tuples)."""
    if isinstance(value, dict):
        return {key: tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(tuples(item) for item in value)
    return value


def load(config, directory: Path) -> TrainedClassifier:
    """The classifier cached in ``directory`` (checked against its recorded weights hash)."""
    info = json.loads((directory / INFO_FILE).read_text())
    params, scale = from_stored_bytes(config, (directory / PARAMS_FILE).read_bytes())
    digest = weights_hash(stored_tree(params, scale))
    if digest != info["weights_hash"]:
        raise ClassifierError(
            f"{directory / PARAMS_FILE} is damaged (sha256 {digest[:12]}, recorded "
            f"{info['weights_hash'][:12]}); delete {directory} to retrain"
        )
    return TrainedClassifier(config, params, scale, info["test_accuracy"], digest, info)


def load_or_train(
    dataset: str,
    cache_dir: str | os.PathLike,
    *,
    data_dir: str = "",
    config=None,
    local: bool = False,
    log=None,
) -> TrainedClassifier:
    """The domain classifier for ``dataset``: the package's weights where they ship (unless
    ``local`` or a ``config`` is given), else one from the cache or trained (and cached) now.

    Args:
        dataset: a data config name in ``CLASSIFIER_DATASET``.
        cache_dir: the evaluation cache root.
        data_dir: ``data.dir`` of the dataset ('' = the defaults of ``experiments.data``).
        config: the classifier config to train (default: ``configs/classifier_mnist.py`` for
            ``dataset``).
        local: a classifier trained on this machine even where weights ship.

    Raises:
        ClassifierError: no classifier for ``dataset``, shipped weights missing or damaged, or
            training stayed below ``config.min_test_accuracy`` (nothing is cached then).
        experiments.data.DataError: the dataset's files are missing.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    if config is None:
        shipped = CLASSIFIER_DATASET.get(dataset)
        if not local and shipped in SHIPPED_SHA256:
            return load_shipped(shipped)
        config = default_config(dataset, data_dir)
    directory = cache_path(config, cache_dir)
    if (directory / INFO_FILE).exists():
        return load(config, directory)
    log(f"Training the {config.data.name} domain classifier into {directory} (once).")
    trained = train_classifier(
        config,
        data.build_source(config.data, "train"),
        data.build_source(config.data, "test"),
        log=log,
    )
    if trained.test_accuracy < config.min_test_accuracy:
        raise ClassifierError(
            f"the {config.data.name} classifier reached {trained.test_accuracy:.4%} test accuracy, "
            f"below the required {config.min_test_accuracy:.2%}; not cached"
        )
    save(trained, directory)
    return trained


def main(argv) -> None:
    from absl import flags

    from experiments import cli
    from experiments.evaluation import cache as cache_lib

    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.quiet_library_logs()
    config = flags.FLAGS[cli.CONFIG_FLAG].value
    cache_dir = flags.FLAGS["cache_dir"].value or cache_lib.default_cache_dir()
    try:  # before training, which takes minutes
        cli.check_dir(cache_dir, "--cache_dir")
    except cli.UsageError as error:
        cli.fail(str(error))
    try:
        trained = load_or_train(config.data.name, cache_dir, config=config)
    except (ClassifierError, data.DataError) as error:
        cli.fail(str(error), status=1)
    print(
        json.dumps(
            {
                "directory": str(cache_path(config, cache_dir)),
                "test_accuracy": trained.test_accuracy,
                "weights_hash": trained.weights_hash,
                "train_seconds": trained.info.get("train_seconds"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    from absl import app, flags

    from experiments import cli

    cli.define_config_flag()
    flags.DEFINE_string("cache_dir", "", "Evaluation cache ('' = $GAN_VAE_JAX_CACHE or ~/.cache).")
    app.run(main, flags_parser=cli.parse_flags)
