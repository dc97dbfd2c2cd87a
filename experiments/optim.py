"""Optimisers and learning-rate schedules chosen by config (shared by every family).

An optimiser config has ``name`` (adam, adamw, rmsprop, sgd, adagrad), ``learning_rate`` and optional
``b1``, ``b2``, ``eps``, ``momentum``, ``weight_decay``, ``grad_clip_norm`` (0 = off), ``schedule``
(constant, cosine, linear_decay), ``warmup_steps`` and ``decay_steps``.
"""

from __future__ import annotations

import ml_collections
import optax

from experiments.errors import ConfigError

OPTIMIZER_NAMES = ("adam", "adamw", "rmsprop", "sgd", "adagrad")
SCHEDULE_NAMES = ("constant", "cosine", "linear_decay")


def default_optimizer_config(**overrides) -> ml_collections.ConfigDict:
    """Every key an optimiser config may set, with defaults (Adam, constant 1e-3)."""
    config = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-3,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            momentum=0.0,
            weight_decay=0.0,
            grad_clip_norm=0.0,
            schedule="constant",
            warmup_steps=0,
            decay_steps=0,
        )
    )
    config.update(overrides)
    return config


def make_schedule(config) -> optax.Schedule:
    """The learning rate as a function of the update count."""
    peak, warmup, decay = config.learning_rate, config.warmup_steps, config.decay_steps
    if config.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif config.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(decay - warmup, 1))
    elif config.schedule == "linear_decay":
        main = optax.linear_schedule(peak, 0.0, max(decay - warmup, 1))
    else:
        raise ConfigError(
            f"unknown schedule {config.schedule!r}; expected constant, cosine or linear_decay"
        )
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def make_optimizer(config) -> optax.GradientTransformation:
    """The optimiser an optimiser config describes (see the module docstring)."""
    lr = make_schedule(config)
    builders = {
        "adam": lambda: optax.adam(lr, b1=config.b1, b2=config.b2, eps=config.eps),
        "adamw": lambda: optax.adamw(
            lr, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay
        ),
        "rmsprop": lambda: optax.rmsprop(lr, decay=config.b2, eps=config.eps),
        "sgd": lambda: optax.sgd(lr, momentum=config.momentum or None),
        "adagrad": lambda: optax.adagrad(lr, eps=config.eps),
    }
    if config.name not in builders:
        raise ConfigError(f"unknown optimizer {config.name!r}; expected one of {sorted(builders)}")
    optimizer = builders[config.name]()
    if config.grad_clip_norm > 0:
        optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
    return optimizer
