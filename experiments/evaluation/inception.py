"""InceptionV3 as in the TF FID network (``inception-2015-12-05``), the one pytorch-fid and clean-fid
port, in Flax; its published weights loaded from a file the user provides.

Architecture: torchvision's ``Inception3`` (``aux_logits=False``, 1008 classes) with pytorch-fid's
patches, which reproduce the TF graph:

- ``Mixed_5b/5c/5d`` (``FIDInceptionA``), ``Mixed_6b..6e`` (``FIDInceptionC``) and ``Mixed_7b``
  (``FIDInceptionE_1``): the pool branch is a 3x3 stride-1 *average* pool, padding 1, that does not
  count the padded zeros (``count_include_pad=False``, TF's ``SAME`` average pooling);
- ``Mixed_7c`` (``FIDInceptionE_2``): the pool branch is a 3x3 stride-1 *max* pool, padding 1;
- every convolution is bias-free, followed by BatchNorm (eps 1e-3, inference statistics) and ReLU.

Outputs: ``pool3``, the 2048-d global average of ``Mixed_7c`` (FID, KID, precision/recall
features), and the 1008 logits ``pool3 @ fc.weight.T`` *without* the fc bias, as in Salimans et
al.'s Inception Score code and torch-fidelity's ``logits_unbiased`` (``logits_with_bias`` adds it).

Input pipeline (``preprocess``): images NHWC in [0, 1]; grey (C = 1) repeated to RGB; resized to
299 x 299 with PyTorch's ``F.interpolate(mode='bilinear', align_corners=False)`` (half-pixel
centres, source coordinates below 0 clamped to 0, no antialiasing), as pytorch-fid does; scaled to
[-1, 1] with ``2x - 1``.

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` is a torch ``state_dict``. The
project does not depend on torch, so it reads the same tensors from an ``.npz`` with the same names,
made once where torch is installed::

    python -c "import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-6726825d.pth', map_location='cpu'); np.savez('pt_inception-2015-12-05-6726825d.npz', **{k: v.numpy() for k, v in sd.items()})"

(``num_batches_tracked`` entries, if any, are ignored.) Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
BN_EPSILON = 1e-3
RESIZER = (
    "bilinear to 299x299 as torch.nn.functional.interpolate(mode='bilinear', align_corners=False) "
    "(half-pixel centres, no antialiasing); grey repeated to RGB; input scaled 2x-1"
)


class InceptionWeightsError(Exception):
    """The weights file is missing or does not hold the FID Inception's tensors."""


class BasicConv(nn.Module):
    """torchvision's ``BasicConv2d``: bias-free conv, BatchNorm(eps=1e-3), ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=(self.strides, self.strides),
            padding=((self.padding[0], self.padding[0]), (self.padding[1], self.padding[1])),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def avg_pool_3x3_same(x):
    """3x3 stride-1 average pool, padding 1, padded zeros not counted (``count_include_pad=False``)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def max_pool_3x3_same(x):
    return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def max_pool_3x3_stride2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        branch1x1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        branch5x5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        branch5x5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(branch5x5)
        branch3x3dbl = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        branch3x3dbl = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(branch3x3dbl)
        branch_pool = BasicConv(self.pool_features, (1, 1), name="branch_pool")(
            avg_pool_3x3_same(x)
        )
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        branch3x3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
        branch3x3dbl = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        branch3x3dbl = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(branch3x3dbl)
        return jnp.concatenate([branch3x3, branch3x3dbl, max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        branch1x1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        branch7x7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        branch7x7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
        branch7x7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
        dbl = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        dbl = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(dbl)
        dbl = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(dbl)
        dbl = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(dbl)
        dbl = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(dbl)
        branch_pool = BasicConv(192, (1, 1), name="branch_pool")(avg_pool_3x3_same(x))
        return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        branch3x3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        branch3x3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(branch3x3)
        branch7x7x3 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        branch7x7x3 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
        branch7x7x3 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
        branch7x7x3 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(branch7x7x3)
        return jnp.concatenate([branch3x3, branch7x7x3, max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
    """``pool='avg'``: FIDInceptionE_1 (Mixed_7b); ``pool='max'``: FIDInceptionE_2 (Mixed_7c)."""

    pool: str

    @nn.compact
    def __call__(self, x):
        branch1x1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        branch3x3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        branch3x3 = jnp.concatenate(
            [
                BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
                BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
            ],
            axis=-1,
        )
        dbl = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        dbl = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(dbl)
        dbl = jnp.concatenate(
            [
                BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(dbl),
                BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(dbl),
            ],
            axis=-1,
        )
        pooled = avg_pool_3x3_same(x) if self.pool == "avg" else max_pool_3x3_same(x)
        branch_pool = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([branch1x1, branch3x3, dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
    """Input: NHWC, 3 channels, already resized and scaled to [-1, 1] (see ``preprocess``).

    Returns a dict: ``pool3`` (N, 2048), ``logits`` (N, 1008, no bias), ``logits_with_bias``; with
    ``intermediates=True`` also the block outputs ``block0..block2`` (pytorch-fid's block indices).
    """

    intermediates: bool = False

    @nn.compact
    def __call__(self, x):
        outputs = {}
        x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = max_pool_3x3_stride2(x)
        outputs["block0"] = x
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = max_pool_3x3_stride2(x)
        outputs["block1"] = x
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        outputs["block2"] = x
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE("avg", name="Mixed_7b")(x)
        x = InceptionE("max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        fc = nn.Dense(NUM_CLASSES, name="fc")
        logits_with_bias = fc(pool3)
        result = {
            "pool3": pool3,
            "logits": logits_with_bias - fc.variables["params"]["bias"],
            "logits_with_bias": logits_with_bias,
        }
        if self.intermediates:
            result.update(outputs)
        return result


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix of 1-D linear interpolation exactly as PyTorch's
    ``interpolate(mode='bilinear', align_corners=False)`` along one axis (no antialiasing):
    ``src = max((i + 0.5) * in_size / out_size - 0.5, 0)``, ``i0 = floor(src)``,
    ``i1 = min(i0 + 1, in_size - 1)``, weights ``1 - (src - i0)`` and ``src - i0``."""
    matrix = np.zeros((out_size, in_size), np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        source = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(source)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        weight1 = source - i0
        matrix[i, i0] += 1.0 - weight1
        matrix[i, i1] += weight1
    return matrix


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """NHWC images resized to ``size x size`` with ``bilinear_matrix`` along H, then W (float32)."""
    rows = jnp.asarray(bilinear_matrix(images.shape[1], size), jnp.float32)
    columns = jnp.asarray(bilinear_matrix(images.shape[2], size), jnp.float32)
    precision = jax.lax.Precision.HIGHEST
    images = jnp.einsum("oh,nhwc->nowc", rows, images, precision=precision)
    return jnp.einsum("pw,nowc->nopc", columns, images, precision=precision)


def preprocess(images: jax.Array) -> jax.Array:
    """[0, 1] NHWC with 1 or 3 channels → the network's input: RGB, 299 x 299, in [-1, 1]."""
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    elif images.shape[-1] != 3:
        raise ValueError(f"InceptionV3 takes 1 or 3 channels, got {images.shape[-1]}")
    return 2.0 * resize_bilinear(images) - 1.0


def apply(variables, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(pool3, logits)`` of [0, 1] NHWC images (see ``preprocess``)."""
    outputs = FIDInceptionV3().apply(variables, preprocess(images))
    return outputs["pool3"], outputs["logits"]


def abstract_variables() -> dict:
    """The shapes and dtypes of the network's variables (nothing is computed)."""
    init = partial(FIDInceptionV3().init, jax.random.key(0))
    return jax.eval_shape(init, jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))


def torch_name_map() -> dict[str, tuple[tuple[str, ...], str]]:
    """torch state_dict name → (Flax variable path, conversion) for every tensor the network needs.

    Conversions: ``'conv'`` OIHW → HWIO; ``'dense'`` (out, in) → (in, out); ``'copy'`` as is.
    """
    mapping = {}
    variables = abstract_variables()
    for collection, tree in variables.items():
        for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
            keys = tuple(entry.key for entry in path)
            *module, leaf = keys
            if collection == "params" and leaf == "kernel":
                torch_leaf, conversion = "weight", "dense" if module == ["fc"] else "conv"
            elif collection == "params":
                torch_leaf = {"scale": "weight", "bias": "bias"}[leaf]
                conversion = "copy"
            else:
                torch_leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
                conversion = "copy"
            mapping[".".join([*module, torch_leaf])] = ((collection, *keys), conversion)
    return mapping


def convert(array: np.ndarray, conversion: str) -> np.ndarray:
    if conversion == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if conversion == "dense":
        return array.T
    return array


def load_weights(path: str | os.PathLike) -> dict:
    """The Flax variables (``params``, ``batch_stats``) from an ``.npz`` of the torch state_dict.

    Raises:
        InceptionWeightsError: missing file, missing or unexpected tensor names, or wrong shapes
            (all listed in the message).
    """
    path = os.fspath(path)
    if not path or not os.path.isfile(path):
        raise InceptionWeightsError(
            f"InceptionV3 weights file {path!r} not found. Convert pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth to .npz (see experiments/evaluation/inception.py "
            "and docs/evaluation.md) and pass its path (--inception_weights or "
            "config.evaluation.inception_weights)."
        )
    if path.endswith(".pth"):
        raise InceptionWeightsError(
            f"{path} is a torch file; convert it to .npz once where torch is installed (see "
            "experiments/evaluation/inception.py)."
        )
    try:
        with np.load(path) as archive:
            tensors = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise InceptionWeightsError(f"cannot read {path} as .npz: {error}") from error
    tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    mapping = torch_name_map()
    missing = sorted(set(mapping) - set(tensors))
    unexpected = sorted(set(tensors) - set(mapping))
    abstract = abstract_variables()
    variables: dict = {"params": {}, "batch_stats": {}}
    wrong_shapes = []
    for name, (variable_path, conversion) in mapping.items():
        if name not in tensors:
            continue
        value = convert(np.asarray(tensors[name], np.float32), conversion)
        expected = abstract
        for key in variable_path:
            expected = expected[key]
        if value.shape != expected.shape:
            wrong_shapes.append(f"{name}: {tensors[name].shape}")
            continue
        node = variables
        for key in variable_path[:-1]:
            node = node.setdefault(key, {})
        node[variable_path[-1]] = np.ascontiguousarray(value)
    if missing or unexpected or wrong_shapes:
        problems = []
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shapes),
        ):
            if names:
                shown = ", ".join(names[:5]) + (
                    f" and {len(names) - 5} more" if len(names) > 5 else ""
                )
                problems.append(f"{len(names)} {label} ({shown})")
        raise InceptionWeightsError(
            f"{path} is not the FID InceptionV3 state_dict: {'; '.join(problems)}"
        )
    return variables
