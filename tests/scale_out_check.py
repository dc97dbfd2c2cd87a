"""Runs inside a process with several (fake CPU) devices, started by tests/test_scale_out.py:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/scale_out_check.py CHECK OUT ARGS

``configs OUT [NAME ...]``: every experiment config (or those named) at its default batch sizes, eval batch sizes, sample and
feature batch sizes and networks (data: a small stand-in of the same image shape; steps: one):
init, a train step, the eval over a split whose size divides by nothing, grids, samples, features,
and a VAE's NLL estimate. Writes what it checked to OUT (JSON).

``train CONFIG STEPS OUT [KEY=VALUE ...]``: STEPS train steps of configs/CONFIG.py with the
overrides; writes the final state's leaves and every step's metrics and an eval to OUT (.npz).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import rng, sampling, sharding, train  # noqa: E402

RUN_CONFIGS = [
    "acgan_mnist",
    "beta_vae_shapes",
    "cgan_mnist",
    "cvae_mnist",
    "dcgan_mnist",
    "gan_ring2d",
    "hinge_sn_mnist",
    "iwae_binarized_mnist",
    "lsgan_mnist",
    "pixelvae_binarized_mnist",
    "quickstart",
    "sngan_cifar10",
    "vae_binarized_mnist",
    "vae_conv_binarized_mnist",
    "vae_mnist",
    "wgan_gp_mnist",
]
EVAL_SIZE = 13  # examples in the stand-in eval split: divisible by no device count above 1


def override(config, key: str, value) -> None:
    parent = config
    *path, leaf = key.split(".")
    for part in path:
        parent = parent[part]
    parent[leaf] = value


def parse(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def stand_in(config) -> None:
    """Embedded data of the config's shape, so no dataset has to be on the machine."""
    if config.data.name in ("ring2d", "grid2d"):
        overrides = {"data.train_size": 2 * config.batch_size, "data.test_size": EVAL_SIZE}
    else:
        overrides = {
            "data.name": "shapes",
            "data.image_size": 32 if config.data.name == "tfds:cifar10" else 28,
            "data.train_size": 2 * config.batch_size,
            "data.test_size": EVAL_SIZE,
            "data.binarize": "none",
        }
        if config.data.name == "tfds:cifar10":
            overrides["model.channels"] = 1  # the stand-in is grey
            overrides["model.d_loop"] = "unroll"  # XLA:CPU runs a scanned conv D ~40x slower
    config.unlock()
    for key, value in overrides.items():
        override(config, key, value)
    config.evaluation.metrics = ""
    config.evaluation.best_metric = ""


def random_classifier_net():
    """The MNIST feature net's architecture with random weights (its batch size and layout)."""
    from configs import classifier_mnist
    from experiments.evaluation import classifier, features

    config = classifier_mnist.get_config()
    net = classifier.make_net(config.model)
    params = net.init(jax.random.key(0), np.zeros((1, *classifier.IMAGE_SHAPE), np.float32))[
        "params"
    ]
    trained = classifier.TrainedClassifier(config, params, 1.0, 0.0, "random", {})
    return features.feature_net_from_classifier(trained)


def check_configs(out: str, *names: str) -> None:
    from experiments.evaluation import classifier

    checked = {}
    for name in names or RUN_CONFIGS:
        config = importlib.import_module(f"configs.{name}").get_config()
        stand_in(config)
        experiment = train.Experiment(config, f"/tmp/unused-{name}")
        assert experiment.mesh.size == jax.device_count()
        state = experiment.initial_state()
        state, metrics, finite = experiment.train_step(
            state, experiment.train_batch(0), experiment.root
        )
        assert bool(finite), (name, jax.device_get(metrics))
        averages = experiment.evaluate(state, 1)
        assert all(np.isfinite(v) for v in averages.values()), (name, averages)
        key = rng.purpose_key(experiment.root, "grids")
        grid_batch = experiment.placement.put_replicated(experiment.eval_source[np.arange(5)])
        experiment.placement.fetch(experiment.grids(state, grid_batch, key))
        samples, _ = sampling.generate(
            experiment.family,
            state,
            EVAL_SIZE,
            sampling.sample_key(0),
            batch_size=config.evaluation.sample_batch_size,
            placement=experiment.placement,
        )
        assert samples.shape[0] == EVAL_SIZE and np.all(np.isfinite(samples)), name
        entry = {"eval": sorted(averages), "samples": list(samples.shape)}
        if samples.shape[1:] == classifier.IMAGE_SHAPE:
            feature_net = random_classifier_net()
            extracted = feature_net.extract_batch(samples)
            assert extracted.features.shape == (EVAL_SIZE, feature_net.feature_dim), name
            entry["features"] = list(extracted.features.shape)
        if hasattr(experiment.family, "evaluation_metrics"):
            nll = experiment.family.evaluation_metrics(
                state,
                experiment.eval_source,
                jax.random.key(1),
                {"iwae_k": 3},
                experiment.placement,
            )
            assert np.isfinite(nll["nll_iwae"]) and nll["num_examples"] == EVAL_SIZE, nll
            entry["nll"] = nll["nll_iwae"]
        checked[name] = entry
        print(f"{name}: ok", flush=True)
    Path(out).write_text(json.dumps(checked, indent=1))


def host_leaves(state) -> dict[str, np.ndarray]:
    """``leaf_<i>``: every leaf of the state on the host (keys as their key data)."""

    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(sharding.fetch(x))

    return {f"leaf_{i}": host(x) for i, x in enumerate(jax.tree.leaves(state))}


def run_steps(name: str, steps: int, out: str, *pairs: str) -> None:
    config = importlib.import_module(f"configs.{name}").get_config()
    for pair in pairs:
        key, value = pair.split("=", 1)
        override(config, key, parse(value))
    experiment = train.Experiment(config, "/tmp/unused")
    state = experiment.initial_state()
    metrics_log, first = [], {}
    for step in range(steps):
        state, metrics, _ = experiment.train_step(
            state, experiment.train_batch(step), experiment.root
        )
        metrics_log.append(experiment.placement.fetch(metrics))
        if step == 0:
            first = {f"first_{name}": value for name, value in host_leaves(state).items()}
    evaluated = experiment.evaluate(state, steps)
    leaves = host_leaves(state)
    per_device = sharding.bytes_per_device(state)
    arrays = [
        x for x in jax.tree.leaves(state) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    ]
    largest = max(arrays, key=lambda x: x.size)
    np.savez(
        out,
        **leaves,
        **first,
        metrics=json.dumps(metrics_log, default=float),
        evaluated=json.dumps(evaluated),
        bytes_per_device=per_device,
        largest_shard_size=largest.addressable_shards[0].data.size,
        largest_size=largest.size,
    )


if __name__ == "__main__":
    check, *arguments = sys.argv[1:]
    if check == "configs":
        check_configs(*arguments)
    elif check == "train":
        name, steps, out, *pairs = arguments
        run_steps(name, int(steps), out, *pairs)
    else:
        raise SystemExit(f"unknown check {check}")
