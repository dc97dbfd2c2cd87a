"""Test-set evaluation of a VAE: the importance-weighted estimate of log p(x) with many samples
(k = 5000 by default, Burda et al. 2016), its standard error, the ELBO and its terms, bits/dim.

``evaluation_metrics(family, state, eval_source, key, options)`` is what ``VAEFamily.
evaluation_metrics`` (the optional family hook of ``experiments.evaluate``) calls. Per test example
``x_n`` (global position ``n`` in ``eval_source``) and importance sample ``s < k``:

    eps_{n,s} = normal(fold_in(fold_in(key, n), s)),   z_{n,s} = mean(x_n) + std(x_n) * eps_{n,s}
    log p̂(x_n) = logsumexp_s [log p(x_n | z_{n,s}) + log p(z_{n,s}) - log q(z_{n,s} | x_n)] - log k

so every number depends only on ``key``, the example and ``k``: not on the batch size, on how the k
samples are chunked, or on which other examples are evaluated. The k samples are processed in chunks
of at most ``chunk`` (``max_elements`` decoder outputs per chunk bound the memory) inside one
compiled loop per batch, with a streaming log-sum-exp. The weights of a chunk come from
``vae_jax.updates.log_weights``, the estimator the IWAE objective and ``eval_step`` use, and the
bound from ``vae_jax.objectives.iwae_bound``.

Returned (plain floats, nats per example unless stated): ``nll_iwae`` (-mean log p̂, positive),
``nll_iwae_stderr`` (std of -log p̂_n over the examples / sqrt(N)), ``nll_iwae_k``, ``elbo`` (with the
reconstruction averaged over the same k draws and the analytic KL: a low-variance ELBO estimate),
``elbo_stderr``, ``reconstruction``, ``kl``, ``bits_per_dim`` and ``elbo_bits_per_dim``
(``nats / (D ln 2)`` plus the likelihood's ``bits_offset``: 8 for a density on [0, 1] pixels),
``num_examples``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import batched, data, rng, sharding
from experiments.errors import ConfigError
from vae_jax import objectives, updates

DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_ELEMENTS = 2**24  # decoder output values per chunk (64 MiB of float32)


def option(options: Any, name: str, default):
    """``options[name]`` of a dict / ConfigDict / None, or ``default`` when absent or None."""
    if options is None:
        return default
    value = options.get(name, None) if hasattr(options, "get") else getattr(options, name, None)
    return default if value is None else value


def chunk_size(k: int, batch_size: int, output_size: int, max_elements: int) -> int:
    """Samples per chunk: as many as ``max_elements`` allows, spread evenly over the chunks."""
    largest = max(1, min(k, max_elements // max(1, batch_size * output_size)))
    num_chunks = math.ceil(k / largest)
    return math.ceil(k / num_chunks)


def sample_noise(example_keys: jax.Array, indices: jax.Array, latent_dim: int) -> jax.Array:
    """``eps[b, j] = normal(fold_in(example_keys[b], indices[j]))``: ``(batch, len(indices), d)``."""

    def one(example_key, index):
        return jax.random.normal(jax.random.fold_in(example_key, index), (latent_dim,))

    per_sample = jax.vmap(one, in_axes=(None, 0))
    return jax.vmap(per_sample, in_axes=(0, None))(example_keys, indices)


def batch_estimates(
    family, params, x: jax.Array, labels, key: jax.Array, offset: jax.Array, *, k: int, chunk: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(log p̂(x) (batch,), reconstruction (batch,), kl (batch,))`` of one batch whose first example
    is example ``offset`` of the split (see the module docstring)."""
    batch = x.shape[0]
    model, likelihood = family.model, family.likelihood
    posterior = updates.encode(params, x, labels, model=model)
    example_keys = rng.example_keys(key, batch, offset)
    # The images, labels and context once per batch, for all the chunks' samples.
    targets = updates.repeated_targets(params, x, labels, chunk, model=model)
    num_chunks = math.ceil(k / chunk)

    def one_chunk(carry, chunk_index):
        indices = chunk_index * chunk + jnp.arange(chunk, dtype=jnp.uint32)
        eps = sample_noise(example_keys, indices, family.latent_dim)
        log_w, log_px = updates.log_weights(
            params, posterior, eps, targets, model=model, likelihood=likelihood
        )
        valid = (indices < k)[None, :]
        chunk_lse = jax.nn.logsumexp(jnp.where(valid, log_w, -jnp.inf), axis=1)
        return carry, (chunk_lse, jnp.sum(jnp.where(valid, log_px, 0.0), axis=1))

    _, (lses, log_px_sums) = jax.lax.scan(one_chunk, None, jnp.arange(num_chunks, dtype=jnp.uint32))
    log_px_hat = objectives.iwae_bound(lses, k=k, axis=0)  # chunks: lse of lses = lse of all
    reconstruction = -jnp.sum(log_px_sums, axis=0) / k
    return log_px_hat, reconstruction, objectives.gaussian_kl(*posterior)


@functools.lru_cache(maxsize=16)
def compiled_estimates(family, k: int, chunk: int):
    """``batch_estimates`` of ``family`` for ``k`` and ``chunk``, jitted once per combination."""
    return jax.jit(functools.partial(batch_estimates, family, k=k, chunk=chunk))


def evaluation_metrics(
    family, state, eval_source, key: jax.Array, options=None, placement=None
) -> dict:
    """The VAE's test metrics (module docstring) over ``eval_source`` with the EMA parameters.

    ``options`` (dict, ConfigDict or None) may set ``iwae_k`` (default ``family.iwae_k_eval``),
    ``batch_size`` (examples per compiled call, default 100), ``max_elements`` (memory bound of a
    chunk, see ``chunk_size``) and ``max_examples`` (evaluate only N examples evenly spread over
    the split, numbered 0..N-1 for their keys; 0 = all). ``options`` may also be any object with
    these attributes (``experiments.evaluation.evaluator.EvalOptions``); missing ones take the
    defaults. ``placement`` (``experiments.sharding.Placement``, the mesh ``state`` lives on;
    default every device on the data axis): each batch is split over its devices.
    """
    placement = placement or sharding.Placement(sharding.make_data_mesh())
    k = int(option(options, "iwae_k", family.iwae_k_eval))
    batch_size = int(option(options, "batch_size", DEFAULT_BATCH_SIZE))
    max_elements = int(option(options, "max_elements", DEFAULT_MAX_ELEMENTS))
    max_examples = int(option(options, "max_examples", 0))
    for name, value, least in (
        ("iwae_k", k, 1),
        ("batch_size", batch_size, 1),
        ("max_examples", max_examples, 0),
    ):
        if value < least:
            raise ConfigError(f"the VAE's evaluation option {name}={value} must be >= {least}")
    if max_examples and max_examples < len(eval_source):
        # Evenly spread over the split (some test files are sorted by class).
        subset = eval_source[np.linspace(0, len(eval_source) - 1, max_examples).astype(int)]
        eval_source = data.ArraySource(
            subset, name=eval_source.name, num_classes=eval_source.num_classes
        )
    chunk = chunk_size(k, batch_size, family.values_per_sample, max_elements)
    estimate = compiled_estimates(family, k, chunk)

    def one_batch(batch):
        placed = placement.put_global({name: batch[name] for name in batch if name != "mask"})
        labels = family.labels(placed)
        return estimate(state.eval_params, placed["x"], labels, key, jnp.uint32(batch["index"][0]))

    batches = batched.batches(
        len(eval_source), batch_size, eval_source.__getitem__, multiple=placement.num_devices
    )
    log_px, reconstruction, kl = batched.collect(batches, one_batch, fetch=placement.fetch)
    log_px, reconstruction, kl = (np.asarray(v, np.float64) for v in (log_px, reconstruction, kl))
    nll = -log_px
    negative_elbo = reconstruction + kl
    count = len(nll)
    dims_ln2 = math.prod(family.image_shape) * math.log(2)
    offset = family.likelihood.bits_offset

    def stderr(values):
        return float(np.std(values, ddof=1) / math.sqrt(count)) if count > 1 else float("nan")

    return {
        "nll_iwae": float(np.mean(nll)),
        "nll_iwae_stderr": stderr(nll),
        "nll_iwae_k": k,
        "elbo": float(-np.mean(negative_elbo)),
        "elbo_stderr": stderr(negative_elbo),
        "reconstruction": float(np.mean(reconstruction)),
        "kl": float(np.mean(kl)),
        "bits_per_dim": float(np.mean(nll) / dims_ln2 + offset),
        "elbo_bits_per_dim": float(np.mean(negative_elbo) / dims_ln2 + offset),
        "num_examples": count,
    }
