"""Where evaluation keeps what it computes once: trained classifiers and real-data features."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "GAN_VAE_JAX_CACHE"


def default_cache_dir() -> Path:
    """``$GAN_VAE_JAX_CACHE`` when set, else ``~/.cache/gan_vae_jax``."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/gan_vae_jax").expanduser()


def resolve_cache_dir(configured: str | os.PathLike | None) -> Path:
    """``configured`` (``~`` expanded) when non-empty, else ``default_cache_dir()``."""
    return Path(configured).expanduser() if configured else default_cache_dir()
