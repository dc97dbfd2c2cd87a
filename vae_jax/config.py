"""The VAE family's ``config.model``: the documented defaults filled in, the checks, and the
hyper-parameters that the pure losses of ``vae_jax.updates`` take.

* ``model_config(config)``: ``config.model`` with every key of ``vae_jax.defaults.
  default_model_config``, checked. A workdir written before a key existed gets the key's
  documented default, which is the behaviour it was trained with (the same policy as the GAN
  family). Every problem is a ``ConfigError`` of one line naming the key.
* ``make_likelihood(m)``: the ``vae_jax.likelihoods.Likelihood`` that ``m`` names.
* ``hyperparameters(m)``: the objective, KL schedule, free bits, EMA, output-bias and evaluation
  settings as a frozen (hashable, static under ``jit``) ``Hyperparameters``.

The network keys (``encoder``, widths, ``activation``, ``kernel_init``, the autoregressive head) are
checked where they are used, by ``vae_jax.networks.build_vae``.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from experiments import ema as ema_lib
from experiments.errors import ConfigError
from vae_jax import likelihoods, objectives
from vae_jax.defaults import default_model_config

OBJECTIVES = ("elbo", "iwae")
OUTPUT_BIAS_INITS = ("data_mean", "zeros", "none")

__all__ = [
    "OBJECTIVES",
    "OUTPUT_BIAS_INITS",
    "Hyperparameters",
    "check",
    "hyperparameters",
    "make_likelihood",
    "model_config",
]


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """The VAE's settings besides its networks and likelihood (``vae_jax.family`` documents each
    ``config.model`` key of the same name)."""

    objective: str = "elbo"  # 'elbo' | 'iwae'
    num_samples: int = 1  # posterior draws per example and step (k of the IWAE objective)
    kl_weight: float = 1.0  # β at the end of the warm-up
    kl_warmup_steps: int = 0
    kl_warmup_start: float = 0.0
    kl_warmup_shape: str = "linear"
    free_bits: float = 0.0  # λ nats per latent dimension ('elbo' only)
    ema_decay: float = 0.0  # 0: no EMA is kept
    ema_start_step: int = 0
    ema_warmup: bool = True
    output_bias_init: str = "data_mean"
    iwae_k_train_eval: int = 0  # > 0: eval_step also returns nll_iwae with this k
    iwae_k_eval: int = 5000  # the default k of evaluation_metrics

    def kl_weight_at(self, step: jax.Array | int) -> jax.Array:
        """β at update ``step`` (``objectives.kl_weight_schedule`` with these settings)."""
        return objectives.kl_weight_schedule(
            step,
            weight=self.kl_weight,
            warmup_steps=self.kl_warmup_steps,
            start=self.kl_warmup_start,
            shape=self.kl_warmup_shape,
        )


def make_likelihood(m) -> likelihoods.Likelihood:
    """The likelihood ``m`` (a filled ``config.model``) names; ``ConfigError`` for a bad one."""
    try:
        return likelihoods.make_likelihood(
            m.likelihood,
            gaussian_scale=float(m.gaussian_scale),
            learn_scale=bool(m.learn_scale),
            num_bins=int(m.num_bins),
        )
    except ValueError as error:
        raise ConfigError(f"config.model: {error}") from error


def check(m) -> None:
    """``ConfigError`` (one line naming the key) for a filled ``config.model`` the family cannot
    train with; the network keys are ``networks.build_vae``'s to check."""
    make_likelihood(m)
    if m.kl_warmup_shape not in objectives.SCHEDULES:
        raise ConfigError(
            f"config.model.kl_warmup_shape={m.kl_warmup_shape!r}; expected one of "
            f"{objectives.SCHEDULES}"
        )
    checks = [
        (m.objective in OBJECTIVES, f"objective={m.objective!r}; expected one of {OBJECTIVES}"),
        (int(m.num_samples) >= 1, f"num_samples must be >= 1; got {m.num_samples}"),
        (float(m.kl_weight) >= 0, f"kl_weight must be >= 0; got {m.kl_weight}"),
        (int(m.kl_warmup_steps) >= 0, f"kl_warmup_steps must be >= 0; got {m.kl_warmup_steps}"),
        (float(m.free_bits) >= 0, f"free_bits must be >= 0; got {m.free_bits}"),
        (
            float(m.free_bits) == 0 or m.objective == "elbo",
            "free_bits applies to the elbo objective only",
        ),
        (
            m.output_bias_init in OUTPUT_BIAS_INITS,
            f"output_bias_init={m.output_bias_init!r}; expected one of {OUTPUT_BIAS_INITS}",
        ),
        (int(m.iwae_k_train_eval) >= 0, "iwae_k_train_eval must be >= 0"),
        (int(m.iwae_k_eval) >= 1, "iwae_k_eval must be >= 1"),
        (
            not int(m.autoregressive_kernel) or m.likelihood == "bernoulli",
            "autoregressive_kernel needs likelihood='bernoulli' (its sampler draws binary pixels)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"config.model.{message}")
    problem = ema_lib.check(float(m.ema_decay), int(m.ema_start_step))
    if problem is not None:
        raise ConfigError(problem)


def model_config(config) -> ml_collections.ConfigDict:
    """``config.model`` with the documented default of every missing key
    (``vae_jax.defaults.default_model_config``), checked (``check``); ``config`` is unchanged."""
    m = default_model_config()
    try:
        m.update(config.model.to_dict())
    except (TypeError, ValueError) as error:  # a value of the wrong type for its key
        raise ConfigError(f"config.model: {error}") from error
    check(m)
    return m


def hyperparameters(m) -> Hyperparameters:
    """The ``Hyperparameters`` of a filled, checked ``config.model`` (``model_config``)."""
    return Hyperparameters(
        objective=m.objective,
        num_samples=int(m.num_samples),
        kl_weight=float(m.kl_weight),
        kl_warmup_steps=int(m.kl_warmup_steps),
        kl_warmup_start=float(m.kl_warmup_start),
        kl_warmup_shape=m.kl_warmup_shape,
        free_bits=float(m.free_bits),
        ema_decay=float(m.ema_decay),
        ema_start_step=int(m.ema_start_step),
        ema_warmup=bool(m.ema_warmup),
        output_bias_init=m.output_bias_init,
        iwae_k_train_eval=int(m.iwae_k_train_eval),
        iwae_k_eval=int(m.iwae_k_eval),
    )
