"""DiffAugment: what each augmentation does, per-example draws, differentiability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import augment

SIDE = 8


def images(num=6, channels=3, seed=0):
    rs = np.random.RandomState(seed)
    return jnp.asarray(rs.uniform(-1, 1, size=(num, SIDE, SIDE, channels)), jnp.float32)


def test_translation_shifts_each_image_by_an_integer_offset_with_zero_fill():
    x = images()
    y = np.asarray(augment.translation(x, jax.random.key(0)))
    shift = int(SIDE * augment.TRANSLATION_RATIO + 0.5)  # 1 pixel
    offsets = set()
    for original, moved in zip(np.asarray(x), y, strict=True):
        padded = np.pad(original, ((shift, shift), (shift, shift), (0, 0)))
        matches = [
            (dy, dx)
            for dy in range(2 * shift + 1)
            for dx in range(2 * shift + 1)
            if np.array_equal(padded[dy : dy + SIDE, dx : dx + SIDE], moved)
        ]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 1  # each example draws its own offset


def test_cutout_zeroes_one_square_per_image():
    x = jnp.ones((20, SIDE, SIDE, 1))
    y = np.asarray(augment.cutout(x, jax.random.key(0)))[..., 0]
    side = int(SIDE * augment.CUTOUT_RATIO + 0.5)
    for image in y:
        rows, cols = np.nonzero(image == 0)
        assert 0 < len(rows) <= side * side
        assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert any(np.sum(image == 0) == side * side for image in y)  # some fully inside


def test_color_ranges():
    x = images(num=50)
    key = jax.random.key(3)
    shifted = augment.brightness(x, key) - x
    assert np.all(np.abs(shifted) <= 0.5 + 1e-6)
    np.testing.assert_allclose(shifted, shifted[:, :1, :1, :1] * np.ones_like(shifted), atol=1e-6)
    grey = images(channels=1)
    np.testing.assert_allclose(augment.saturation(grey, key), grey, atol=1e-6)
    contrasted = augment.contrast(x, key)
    np.testing.assert_allclose(
        jnp.mean(contrasted, axis=(1, 2, 3)), jnp.mean(x, axis=(1, 2, 3)), atol=1e-5
    )


def test_policy_is_differentiable_and_per_example():
    policy = augment.parse_policy("color,translation,cutout")
    x = images()
    key = jax.random.key(7)
    grads = jax.grad(lambda v: jnp.sum(augment.diff_augment(v, key, policy) ** 2))(x)
    assert np.all(np.isfinite(grads)) and np.any(grads != 0)
    # Example i's draw depends only on the key and its position: a shorter batch agrees.
    whole = augment.diff_augment(x, key, policy)
    np.testing.assert_allclose(augment.diff_augment(x[:3], key, policy), whole[:3], atol=1e-6)


def test_parse_policy():
    assert augment.parse_policy("") == ()
    assert augment.parse_policy(" translation, color ") == ("translation", "color")
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        augment.parse_policy("translation,flip")
