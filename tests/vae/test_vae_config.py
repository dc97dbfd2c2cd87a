"""``vae_jax.config``: older configs get the documented defaults, every bad key is a one-line
``ConfigError`` naming it, and the hyper-parameters are what the config says."""

import dataclasses

import ml_collections
import pytest

from configs import base
from experiments import optim
from experiments.errors import ConfigError
from vae_jax import config as vae_config
from vae_jax import family as vae_family
from vae_jax import objectives
from vae_jax.defaults import default_model_config


def config_with(model: dict) -> ml_collections.ConfigDict:
    config = base.get_base_config()
    config.family = "vae"
    config.model = ml_collections.ConfigDict(model)
    config.optimizer = optim.default_optimizer_config()
    return config


def test_an_older_config_gets_the_documented_defaults():
    """A workdir's config written before keys existed (here only the network and objective keys)
    gets each missing key's default from ``vae_jax.defaults``; the config itself is unchanged."""
    old = config_with(
        dict(image_shape=(8, 8, 1), latent_dim=3, hidden_widths=(16,), objective="iwae")
    )
    m = vae_config.model_config(old)
    defaults = default_model_config()
    assert set(m.keys()) == set(defaults.keys())
    assert m.objective == "iwae" and m.latent_dim == 3 and tuple(m.image_shape) == (8, 8, 1)
    for key in ("ema_decay", "ema_warmup", "iwae_k_eval", "autoregressive_kernel", "free_bits"):
        assert m[key] == defaults[key]
    assert set(old.model.keys()) == {"image_shape", "latent_dim", "hidden_widths", "objective"}
    fam = vae_family.make(old)
    assert fam.hp.objective == "iwae" and fam.hp.iwae_k_eval == defaults.iwae_k_eval
    assert fam.latent_dim == 3 and fam.image_shape == (8, 8, 1)


def test_hyperparameters_are_the_config_values():
    m = default_model_config(
        objective="iwae",
        num_samples=4,
        kl_weight=2.0,
        kl_warmup_steps=10,
        kl_warmup_start=0.5,
        kl_warmup_shape="cosine",
        ema_decay=0.99,
        ema_start_step=3,
        ema_warmup=False,
        output_bias_init="zeros",
        iwae_k_train_eval=7,
        iwae_k_eval=100,
    )
    hp = vae_config.hyperparameters(m)
    for field in dataclasses.fields(hp):
        assert getattr(hp, field.name) == m[field.name], field.name
    assert hash(hp) == hash(vae_config.hyperparameters(m))  # static under jit
    for step in (0, 5, 10, 20):
        expected = objectives.kl_weight_schedule(
            step, weight=2.0, warmup_steps=10, start=0.5, shape="cosine"
        )
        assert float(hp.kl_weight_at(step)) == float(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.objective = "elbo"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(likelihood="poisson"), "config.model: unknown likelihood"),
        (dict(objective="vi"), "config.model.objective='vi'"),
        (dict(num_samples=0), "config.model.num_samples must be >= 1"),
        (dict(kl_weight=-1.0), "config.model.kl_weight must be >= 0"),
        (dict(kl_warmup_steps=-1), "config.model.kl_warmup_steps must be >= 0"),
        (dict(kl_warmup_shape="cyclic"), "config.model.kl_warmup_shape='cyclic'"),
        (dict(free_bits=-0.1), "config.model.free_bits must be >= 0"),
        (dict(free_bits=0.5, objective="iwae"), "config.model.free_bits applies to the elbo"),
        (dict(ema_decay=1.0), "config.model.ema_decay=1.0 must be in [0, 1)"),
        (dict(ema_start_step=-1), "config.model.ema_start_step=-1 must be >= 0"),
        (dict(output_bias_init="ones"), "config.model.output_bias_init='ones'"),
        (dict(iwae_k_train_eval=-1), "config.model.iwae_k_train_eval must be >= 0"),
        (dict(iwae_k_eval=0), "config.model.iwae_k_eval must be >= 1"),
        (
            dict(autoregressive_kernel=3, likelihood="gaussian"),
            "config.model.autoregressive_kernel needs likelihood='bernoulli'",
        ),
        (dict(num_samples="3"), "config.model: Could not override field 'num_samples'"),
    ],
)
def test_bad_keys_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as error:
        vae_config.model_config(config_with(overrides))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
