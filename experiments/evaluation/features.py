"""Feature networks behind one interface, and batched, jitted feature extraction.

A ``FeatureNet`` maps images (NHWC float32 in [0, 1], the layout of ``experiments.data`` and of
every family's ``sample``) to ``(features, logits)``:

- ``'classifier'``: the domain classifier of MNIST-format datasets (``classifier``), 128-d
  penultimate ReLU activations divided by the classifier's fixed ``feature_scale``, and 10 class
  logits; for mnist, fashion_mnist, kmnist and
  binarized_mnist (which uses the MNIST classifier). Input must be 28 x 28 x 1. The MNIST one is
  the package's shipped weights (``classifier_mnist``); the others are trained on this machine.
- ``'classifier_local'``: the domain classifier trained on this machine (cached), even where
  weights ship; recorded as ``classifier_<dataset>_local``.
- ``'inception'``: the TF-FID InceptionV3 (``inception``), 2048-d pool3 and 1008 logits; any image
  size, 1 or 3 channels, resized to 299 x 299. Needs the weights file.
- ``'auto'``: the classifier where one exists for the dataset, else inception.

Every image is first clipped to [0, 1] and quantised to 8 bits (``round(255 x) / 255``), as if saved
as a PNG: real data is stored as 8-bit images, so generated images go through the same step.

Extraction (``FeatureNet.extract``) pads every batch to the net's fixed ``batch_size`` (one
compilation) and places it on the data mesh, split along the batch (``experiments.sharding``); each
image's features depend only on that image, not on how the caller batched them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import batched, sharding
from experiments.errors import ConfigError
from experiments.evaluation import classifier, inception

FEATURE_NET_NAMES = ("auto", "classifier", "classifier_local", "inception")
QUANTIZATION = "uint8: round(255 * clip(x, 0, 1)) / 255 before the network"
DEFAULT_BATCH_SIZE = {"classifier": 500, "inception": 50}


class FeatureNetError(ConfigError):
    """A feature net cannot be built (no weights, no data to train the classifier on, a classifier
    below its accuracy bar) or cannot take these images."""


@dataclass
class Features:
    """Per-image outputs of a feature net, float32 as computed (metrics convert to float64)."""

    features: np.ndarray  # (n, feature_dim)
    logits: np.ndarray  # (n, num_classes)

    def __len__(self) -> int:
        return self.features.shape[0]

    @staticmethod
    def concatenate(parts: list[Features]) -> Features:
        return Features(
            np.concatenate([p.features for p in parts]), np.concatenate([p.logits for p in parts])
        )


def quantize(images: jax.Array) -> jax.Array:
    """``round(255 * clip(x, 0, 1)) / 255``: the 8-bit values of a saved image."""
    return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0) / 255.0


@dataclass
class FeatureNet:
    """A network that maps images to ``(features, logits)``, and everything its protocol records.

    ``apply(variables, images) -> (features, logits)`` is a pure function of NHWC [0, 1] float32
    images; ``check_shape`` raises ``FeatureNetError`` for images the network cannot take.
    """

    name: str
    kind: str
    variables: Any
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    feature_dim: int
    num_classes: int
    weights_hash: str
    resizer: str
    check_shape: Callable[[tuple[int, ...]], None]
    batch_size: int
    details: dict = field(default_factory=dict)
    _compiled: Any = None

    def protocol(self) -> dict:
        """The fields every result records about its feature network."""
        return {
            "feature_net": self.name,
            "feature_net_hash": self.weights_hash,
            "feature_dim": self.feature_dim,
            "resizer": self.resizer,
            "quantization": QUANTIZATION,
            **self.details,
        }

    def _forward(self):
        if self._compiled is None:
            self._placement = sharding.Placement(sharding.make_data_mesh())
            self._variables = self._placement.put_replicated(self.variables)

            def forward(variables, images):
                features, logits = self.apply(variables, quantize(images))
                return features.astype(jnp.float32), logits.astype(jnp.float32)

            self._compiled = jax.jit(forward)
        return self._compiled

    def extract_batch(self, images: np.ndarray) -> Features:
        """Features of one array of images (any count), computed ``batch_size`` at a time."""
        images = np.asarray(images, np.float32)
        self.check_shape(images.shape[1:])
        if images.shape[0] == 0:
            return Features(
                np.zeros((0, self.feature_dim), np.float32),
                np.zeros((0, self.num_classes), np.float32),
            )
        forward = self._forward()
        placement = self._placement

        def one_batch(batch):
            return forward(self._variables, placement.put_global({"x": batch["x"]})["x"])

        read = lambda positions: {"x": images[positions]}
        batches = batched.batches(
            len(images), self.batch_size, read, multiple=placement.num_devices
        )
        features, logits = batched.collect(batches, one_batch, fetch=placement.fetch)
        return Features(features, logits)

    def extract(self, batches: Iterable[np.ndarray]) -> Features:
        """Features of a stream of image arrays, in order."""
        return Features.concatenate([self.extract_batch(batch) for batch in batches])


def classifier_feature_net(
    dataset: str,
    cache_dir,
    *,
    data_dir: str = "",
    batch_size: int | None = None,
    local: bool = False,
    log=None,
) -> FeatureNet:
    """The domain classifier of ``dataset`` as a feature net: the shipped weights, or (``local``,
    or none shipped) one trained here (now, if not cached)."""
    trained = classifier.load_or_train(dataset, cache_dir, data_dir=data_dir, local=local, log=log)
    return feature_net_from_classifier(trained, batch_size=batch_size)


def feature_net_from_classifier(
    trained: classifier.TrainedClassifier, *, batch_size: int | None = None
) -> FeatureNet:
    """A ``TrainedClassifier`` (however obtained) as a feature net."""
    net = trained.net
    scale = trained.feature_scale

    def apply(variables, images):
        features, logits = net.apply(variables, images)
        return features / scale, logits

    def check_shape(shape):
        if tuple(shape) != classifier.IMAGE_SHAPE:
            raise FeatureNetError(
                f"the {trained.config.data.name} classifier takes 28x28x1 images, got {tuple(shape)}"
            )

    shipped = trained.origin == classifier.SHIPPED
    return FeatureNet(
        name=f"classifier_{trained.config.data.name}" + ("" if shipped else "_local"),
        kind="classifier",
        variables={"params": trained.params},
        apply=apply,
        feature_dim=trained.config.model.feature_dim,
        num_classes=trained.config.model.num_classes,
        weights_hash=trained.weights_hash,
        resizer="none (28x28x1 input, scaled 2x-1)",
        check_shape=check_shape,
        batch_size=batch_size or DEFAULT_BATCH_SIZE["classifier"],
        details={
            "feature_layer": (
                f"penultimate Dense({trained.config.model.feature_dim}) after ReLU, divided by "
                "feature_scale"
            ),
            "feature_scale": scale,
            "classifier_weights": (
                "shipped with the package" if shipped else "trained on this machine"
            ),
            "classifier_test_accuracy": trained.test_accuracy,
            "classifier_config": classifier.config_fingerprint(trained.config),
        },
    )


def inception_feature_net(weights_path, *, batch_size: int | None = None) -> FeatureNet:
    """The TF-FID InceptionV3 from the ``.npz`` at ``weights_path`` as a feature net."""
    variables = inception.load_weights(weights_path)

    def check_shape(shape):
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise FeatureNetError(f"InceptionV3 takes HxWx1 or HxWx3 images, got {tuple(shape)}")

    return FeatureNet(
        name="inception_v3_tf_fid",
        kind="inception",
        variables=variables,
        apply=inception.apply,
        feature_dim=inception.FEATURE_DIM,
        num_classes=inception.NUM_CLASSES,
        weights_hash=classifier.weights_hash(variables),
        resizer=inception.RESIZER,
        check_shape=check_shape,
        batch_size=batch_size or DEFAULT_BATCH_SIZE["inception"],
        details={
            "feature_layer": "pool3 (2048)",
            "logits": "1008, pool3 @ fc.weight.T (no bias)",
            "weights_file": os.path.basename(os.fspath(weights_path)),
        },
    )


def resolve_kind(name: str, dataset: str) -> str:
    """``'classifier'`` or ``'inception'`` for a configured feature net name and a dataset."""
    if name not in FEATURE_NET_NAMES:
        raise FeatureNetError(f"unknown feature net {name!r}; expected one of {FEATURE_NET_NAMES}")
    if name == "auto":
        return "classifier" if dataset in classifier.CLASSIFIER_DATASET else "inception"
    return "classifier" if name == "classifier_local" else name


def build_feature_net(
    name: str,
    dataset: str,
    *,
    cache_dir,
    data_dir: str = "",
    inception_weights: str = "",
    batch_size: int | None = None,
    log=None,
) -> FeatureNet:
    """The feature net ``name`` (one of ``FEATURE_NET_NAMES``) for images of ``dataset``."""
    kind = resolve_kind(name, dataset)
    if kind == "classifier":
        try:
            return classifier_feature_net(
                dataset,
                cache_dir,
                data_dir=data_dir,
                batch_size=batch_size,
                local=name == "classifier_local",
                log=log,
            )
        except classifier.ClassifierError as error:
            raise FeatureNetError(str(error)) from error
    try:
        return inception_feature_net(inception_weights, batch_size=batch_size)
    except inception.InceptionWeightsError as error:
        raise FeatureNetError(str(error)) from error
