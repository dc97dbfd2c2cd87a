"""Every GAN config: documented, and its train, eval and grid steps compile once through the engine.

Each config runs shrunk (tiny widths and images, a few examples) but otherwise unchanged: its loss,
regularisers, D steps, conditioning, EMA and optimisers are the real ones. The MNIST configs run on
the embedded shapes, ``sngan_cifar10`` on a tiny dataset prepared here under the name ``cifar10``
(``tfds.testing.mock_data`` cannot stand in: see tests/data/test_data_tfds.py).
"""

from __future__ import annotations

import importlib
import io

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from experiments import rng, train

CONFIGS = [
    "gan_ring2d",
    "dcgan_mnist",
    "lsgan_mnist",
    "wgan_gp_mnist",
    "hinge_sn_mnist",
    "cgan_mnist",
    "acgan_mnist",
    "sngan_cifar10",
]
SMALL_IMAGES = {
    "data.name": "shapes",
    "data.image_size": 8,
    "data.train_size": 64,
    "data.test_size": 12,
    "model.image_size": 8,
    "model.latent_dim": 4,
    "model.generator.features": (4, 4),
    "model.discriminator.features": (4, 4),
    "evaluation.metrics": "",  # no feature net takes 8 px shapes; tests/evaluation covers it
    "evaluation.best_metric": "",
}
TINY = {
    "gan_ring2d": {
        "data.train_size": 64,
        "data.test_size": 12,
        "model.generator.features": (8,),
        "model.discriminator.features": (8,),
    },
    "sngan_cifar10": {
        "model.latent_dim": 4,
        "model.generator.features": (4, 4, 4),
        "model.discriminator.features": (4, 4, 4, 4),
    },
}


class Cifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Twelve train and four test random 32x32 RGB images in CIFAR-10's format (version 3.0.2)."""

    VERSION = tfds.core.Version("3.0.2")

    def _info(self):
        features = {
            "id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples(0, 12), "test": self._generate_examples(12, 16)}

    def _generate_examples(self, start, stop):
        rs = np.random.RandomState(start)
        for index in range(start, stop):
            buffer = io.BytesIO()
            Image.fromarray(rs.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
            yield index, {"id": str(index), "image": buffer.getvalue(), "label": index % 10}


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    Cifar10(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def load(name: str):
    return importlib.import_module(f"configs.{name}").get_config()


def shrunk(name: str, **extra):
    config = load(name)
    overrides = TINY.get(name, SMALL_IMAGES)
    d_steps = config.model.d_steps
    overrides = {
        **overrides,
        "batch_size": 2 * d_steps,
        "eval_batch_size": 6,
        "num_grid_examples": 4,
        **extra,
    }
    for key, value in overrides.items():
        parent = config
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        parent[leaf] = value
    return config.lock()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_documented(name):
    module = importlib.import_module(f"configs.{name}")
    doc = module.__doc__
    for part in (
        "Command:",
        "python -m experiments.main",
        "Time on 2 CPU cores:",
        "Expected result:",
    ):
        assert part in doc, f"configs/{name}.py docstring lacks {part!r}"
    assert "TODO" not in doc
    config = module.get_config()
    assert config.family == "gan"


def experiment_for(name, tmp_path, request):
    extra = {}
    if name == "sngan_cifar10":
        extra["data.dir"] = str(request.getfixturevalue("cifar10_dir"))
    return train.Experiment(shrunk(name, **extra), tmp_path)


def abstract(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), jax.eval_shape(lambda: tree))


@pytest.mark.parametrize("name", CONFIGS)
def test_train_step_keeps_the_state_signature(name, tmp_path, request):
    """The step's output state has the input's exact shapes, dtypes and weak types (traced, not
    compiled), so feeding it back hits the compiled step: one compilation per run."""
    experiment = experiment_for(name, tmp_path, request)
    state = experiment.abstract_state()
    batch = jax.eval_shape(lambda: experiment.batcher.batch(0))
    new_state, metrics, finite = jax.eval_shape(
        experiment.train_step, state, batch, experiment.root
    )
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert abstract(new_state) == abstract(state)
    assert all(m.shape == () and m.dtype == np.float32 for m in jax.tree.leaves(metrics))
    assert finite.shape == ()
    num = min(6, len(experiment.eval_source))
    eval_batch = jax.eval_shape(lambda: experiment.eval_source[np.arange(num)])
    eval_metrics = jax.eval_shape(experiment.eval_step, state, eval_batch, experiment.root)
    assert all(m.shape == (num,) for m in jax.tree.leaves(eval_metrics))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gan_ring2d", "wgan_gp_mnist", "cgan_mnist", "sngan_cifar10"])
def test_config_steps_compile_once(name, tmp_path, request):
    """Two real steps, an eval and the grids: each function compiled once. (dcgan_mnist: see
    tests/test_train.py; the other configs differ from these in the loss or head only, which the
    signature test above covers.)"""
    experiment = experiment_for(name, tmp_path, request)
    state = experiment.initial_state()
    for step in range(2):
        batch = experiment.put_batch(experiment.batcher.batch(step))
        state, metrics, finite = experiment.train_step(state, batch, experiment.root)
        assert bool(finite), jax.device_get(metrics)
    averages = experiment.evaluate(state, 2)
    assert all(np.isfinite(value) for value in averages.values())
    key = rng.purpose_key(experiment.root, "grids")
    grid_batch = experiment.put_batch(experiment.eval_source[np.arange(4)])
    outputs = jax.device_get(experiment.grids(state, grid_batch, key))
    assert all(np.all((x >= 0) & (x <= 1)) for x in outputs.values())
    assert experiment.train_step._cache_size() == 1
    assert experiment.eval_step._cache_size() == 1
    if name == "gan_ring2d":
        assert {"eval/modes_covered", "eval/high_quality_fraction"} <= set(averages)
        assert outputs["samples"].shape == (1, 256, 256, 3)  # the scatter plot
    if name == "cgan_mnist":
        assert outputs["samples"].shape == (100, 8, 8, 1)  # 10 x 10, row r of class r
