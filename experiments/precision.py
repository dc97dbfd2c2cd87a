"""Mixed precision: the dtype a family's networks compute in (``config.compute_dtype``).

``config.compute_dtype`` is ``'float32'`` (the default) or ``'bfloat16'``. It is a family's to
honour: the engine only checks its value (``experiments.config_checks``), and a family that does
not read it (``examples.gaussian``, say) runs in float32 whatever it says.

The GAN and VAE families follow one policy under ``'bfloat16'``:

- parameters and optimiser state stay float32 (modules get ``param_dtype`` float32; each layer
  casts its float32 parameters to bfloat16 for the computation, so gradients and updates are
  float32);
- activations and the products of dense layers and convolutions are bfloat16: inputs (float32
  data, latents, posterior draws) are cast at the network's entry;
- the outputs that feed a loss, a log-likelihood or a metric (discriminator logits, the decoder's
  likelihood parameters, the encoder's mean and log-variance, generated samples) are cast back to
  float32 at the network's exit, so every loss, log-likelihood, KL term and metric is computed in
  float32, and samples are float32;
- batch norm computes its batch mean and variance, normalises and keeps its running averages in
  float32 (Flax's ``BatchNorm`` with ``force_float32_reductions``), then casts its output to
  bfloat16; spectral normalisation's power iteration runs on the float32 weights.

With ``'float32'`` every module computes exactly what it computed before this option existed.
"""

from __future__ import annotations

import jax.numpy as jnp

from experiments.errors import ConfigError

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DEFAULT = "float32"


def compute_dtype(name: str):
    """The JAX dtype of a ``config.compute_dtype`` name (``COMPUTE_DTYPES``).

    Raises:
        ValueError: an unknown name.
    """
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}; expected one of {list(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]


def config_compute_dtype(config):
    """The compute dtype ``config.compute_dtype`` names (a config written before the key existed:
    float32).

    Raises:
        ConfigError: an unknown name (the message of ``experiments.config_checks``).
    """
    name = config.get("compute_dtype", DEFAULT)
    if name not in COMPUTE_DTYPES:
        raise ConfigError(f"config.compute_dtype={name!r}: expected one of {list(COMPUTE_DTYPES)}")
    return COMPUTE_DTYPES[name]
