"""Spectral normalisation (Miyato et al. 2018): a layer's weights divided by their top singular value.

The singular value is estimated by power iteration. Its vector ``u`` (and the last estimate
``sigma``, for logging) live in the ``'spectral'`` variable collection, i.e. in the train state: the
family updates them only in its train step (``update_stats=True``: ``num_iterations`` power
iterations from the stored ``u``, written back); everywhere else (``update_stats=False``) the stored
``u`` is used as it is, ``sigma = ‖W u‖``, and nothing is written. Gradients flow through ``sigma``
with ``u`` and ``v`` held constant, as in the paper. A weight of more than two dimensions (a
convolution kernel ``(kh, kw, in, out)``) is treated as the ``(kh * kw * in, out)`` matrix, as in
SNGAN and ``torch.nn.utils.spectral_norm``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

COLLECTION = "spectral"
EPSILON = 1e-12


def l2_normalize(x: jax.Array, eps: float = EPSILON) -> jax.Array:
    """``x / max(‖x‖, eps)`` (``torch.nn.functional.normalize``)."""
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def as_matrix(weight: jax.Array) -> jax.Array:
    """``weight`` as a ``(fan_in, out)`` matrix (its last axis is the output axis)."""
    return weight.reshape(-1, weight.shape[-1])


def power_iteration(
    matrix: jax.Array, u: jax.Array, num_iterations: int, eps: float = EPSILON
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(u, v, sigma)`` after ``num_iterations`` power iterations on ``matrix`` (m, n) from ``u`` (n,).

    ``u`` and ``v`` estimate the top right and left singular vectors, ``sigma = vᵀ M u = ‖M u‖``
    the top singular value (a lower bound that increases with the iterations). With 0 iterations,
    ``sigma`` is read off the given ``u``.
    """
    u = l2_normalize(u, eps)
    for _ in range(num_iterations):
        v = l2_normalize(matrix @ u, eps)
        u = l2_normalize(matrix.T @ v, eps)
    v = l2_normalize(matrix @ u, eps)
    return u, v, v @ (matrix @ u)


class SpectralNorm(nn.Module):
    """Wraps a layer so that each of its weights of two or more dimensions (kernels, embeddings) is
    divided by its estimated top singular value before the layer runs.

    ``SpectralNorm(nn.Dense(4))(x, update_stats=train)``. The wrapped layer's parameters keep the
    names they would have without the wrapper.
    """

    layer_instance: nn.Module
    num_iterations: int = 1
    eps: float = EPSILON

    @nn.compact
    def __call__(self, *args, update_stats: bool, **kwargs):
        def forward(layer):
            return layer(*args, **kwargs)

        normalize = functools.partial(self._normalize, update_stats=update_stats)
        return nn.map_variables(
            forward,
            "params",
            trans_in_fn=lambda variables: jax.tree_util.tree_map_with_path(normalize, variables),
            init=self.is_initializing(),
            mutable=True,
        )(self.layer_instance)

    def _normalize(self, path, weight, update_stats: bool):
        weight = jnp.asarray(weight)
        if weight.ndim < 2:
            return weight
        name = "/".join([self.layer_instance.name, *(str(entry.key) for entry in path[1:])])
        matrix = as_matrix(weight)
        u_var = self.variable(
            COLLECTION,
            f"{name}/u",
            lambda: jax.random.normal(self.make_rng("params"), (matrix.shape[1],), jnp.float32),
        )
        sigma_var = self.variable(COLLECTION, f"{name}/sigma", lambda: jnp.ones((), jnp.float32))
        iterations = self.num_iterations if update_stats else 0
        u, v, _ = power_iteration(jax.lax.stop_gradient(matrix), u_var.value, iterations, self.eps)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        sigma = v @ (matrix @ u)
        if update_stats and not self.is_initializing():
            u_var.value = u
            sigma_var.value = jax.lax.stop_gradient(sigma)
        return weight / jnp.where(sigma > 0, sigma, 1.0)
