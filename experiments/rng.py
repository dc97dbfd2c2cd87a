"""Explicit randomness: every draw derives from the run seed through ``jax.random.fold_in``.

A key is never stored and split in Python state. The engine derives the key of a train step as
``step_key(seed, 'train', step)``; a family then separates purposes (``purpose_key(key, 'latent')``)
and, where each example needs its own draw, folds in the example's position in the *global* batch
(``example_keys``), so the draws do not depend on how many devices share the batch.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp


def purpose_id(purpose: str) -> int:
    """A stable 31-bit integer for a purpose name (crc32, identical across processes and runs)."""
    return zlib.crc32(purpose.encode()) & 0x7FFFFFFF


def purpose_key(key: jax.Array, purpose: str) -> jax.Array:
    """The key for one named purpose (e.g. ``'latent'``, ``'dropout'``) derived from ``key``."""
    return jax.random.fold_in(key, purpose_id(purpose))


def root_key(seed: int) -> jax.Array:
    """The typed root key of a run."""
    return jax.random.key(seed)


def step_key(root: jax.Array, purpose: str, step: jax.Array | int) -> jax.Array:
    """The key for ``purpose`` at train step ``step`` (works on traced steps inside ``jit``)."""
    return jax.random.fold_in(purpose_key(root, purpose), step)


def example_keys(key: jax.Array, num: int, offset: jax.Array | int = 0) -> jax.Array:
    """One key per example: ``fold_in(key, offset + i)`` for ``i < num`` (global example positions)."""
    positions = offset + jnp.arange(num, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, positions)


def normal_per_example(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Standard normals of ``shape`` whose row ``i`` comes from example ``i``'s own key."""
    keys = example_keys(key, shape[0])
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(keys)
