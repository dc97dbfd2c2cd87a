"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees, real
and fake, in both the D and the G updates (gradients flow through them to G).

The policy is a comma-separated string of ``translation``, ``cutout`` and ``color`` (applied in the
order given), with the parameters of the authors' code: translation by up to 1/8 of the image side
(zero fill), a cutout square of half the side, and brightness ±0.5, saturation ×[0, 2] and contrast
×[0.5, 1.5]. Images are NHWC in [-1, 1]. Each example's draw comes from ``fold_in(key, position)``
(``experiments.rng.example_keys``), so it depends only on the run's keys and its batch position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments import rng

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def per_example(key: jax.Array, num: int, draw) -> jax.Array:
    """``draw(key_i)`` for each example's key, stacked."""
    return jax.vmap(draw)(rng.example_keys(key, num))


def column(values: jax.Array) -> jax.Array:
    """``(batch,)`` → ``(batch, 1, 1, 1)``."""
    return values[:, None, None, None]


def brightness(x: jax.Array, key: jax.Array) -> jax.Array:
    shift = per_example(key, x.shape[0], lambda k: jax.random.uniform(k, ()) - 0.5)
    return x + column(shift)


def saturation(x: jax.Array, key: jax.Array) -> jax.Array:
    factor = per_example(key, x.shape[0], lambda k: jax.random.uniform(k, ()) * 2.0)
    mean = jnp.mean(x, axis=3, keepdims=True)
    return (x - mean) * column(factor) + mean


def contrast(x: jax.Array, key: jax.Array) -> jax.Array:
    factor = per_example(key, x.shape[0], lambda k: jax.random.uniform(k, ()) + 0.5)
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * column(factor) + mean


def color(x: jax.Array, key: jax.Array) -> jax.Array:
    x = brightness(x, rng.purpose_key(key, "brightness"))
    x = saturation(x, rng.purpose_key(key, "saturation"))
    return contrast(x, rng.purpose_key(key, "contrast"))


def translation(x: jax.Array, key: jax.Array, ratio: float = TRANSLATION_RATIO) -> jax.Array:
    """Shifts each image by integers in [-s, s] along each axis, s = round(ratio * side); zero fill."""
    height, width = x.shape[1:3]
    sy, sx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    padded = jnp.pad(x, ((0, 0), (sy, sy), (sx, sx), (0, 0)))

    def one(image, example_key):
        key_y, key_x = jax.random.split(example_key)
        top = jax.random.randint(key_y, (), 0, 2 * sy + 1)
        left = jax.random.randint(key_x, (), 0, 2 * sx + 1)
        return jax.lax.dynamic_slice(image, (top, left, 0), (height, width, x.shape[3]))

    return jax.vmap(one)(padded, rng.example_keys(key, x.shape[0]))


def cutout(x: jax.Array, key: jax.Array, ratio: float = CUTOUT_RATIO) -> jax.Array:
    """Zeroes a square of side round(ratio * side) centred anywhere in each image (clipped)."""
    height, width = x.shape[1:3]
    cy, cx = int(height * ratio + 0.5), int(width * ratio + 0.5)

    def mask(example_key):
        key_y, key_x = jax.random.split(example_key)
        centre_y = jax.random.randint(key_y, (), 0, height + (1 - cy % 2))
        centre_x = jax.random.randint(key_x, (), 0, width + (1 - cx % 2))
        rows = jnp.arange(height) - (centre_y - cy // 2)
        cols = jnp.arange(width) - (centre_x - cx // 2)
        inside = ((rows >= 0) & (rows < cy))[:, None] & ((cols >= 0) & (cols < cx))[None, :]
        return jnp.where(inside, 0.0, 1.0).astype(x.dtype)

    return x * per_example(key, x.shape[0], mask)[..., None]


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """The augmentation names of a policy string ('' → none)."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown DiffAugment augmentation(s) {unknown}; expected some of {sorted(AUGMENTATIONS)}"
        )
    return names


def diff_augment(x: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
    """``x`` through the augmentations of ``policy`` (a ``parse_policy`` result), in order."""
    for name in policy:
        x = AUGMENTATIONS[name](x, rng.purpose_key(key, name))
    return x
