"""Defaults of the VAE family's ``config.model`` (imports only ml_collections, so configs stay cheap)."""

from __future__ import annotations

import ml_collections


def default_model_config(**overrides) -> ml_collections.ConfigDict:
    """Every ``config.model`` key of the VAE family with its default: the 784-500-20 MLP VAE of
    Kingma & Welling (2014) / Flax's VAE example. ``vae_jax.family`` documents each key."""
    config = ml_collections.ConfigDict(
        dict(
            encoder="mlp",  # mlp | conv
            image_shape=(28, 28, 1),  # (height, width, channels) of the data
            latent_dim=20,
            hidden_widths=(500,),  # mlp encoder; the decoder uses the same widths
            conv_features=(32, 64),  # conv encoder (decoder reversed)
            hidden=256,  # conv dense width
            activation="relu",  # experiments.layers.ACTIVATIONS
            kernel_init="default",  # experiments.layers.INITIALIZERS
            likelihood="bernoulli",  # bernoulli only
            kl_weight=1.0,  # beta on the KL term; 1.0 = the ELBO
        )
    )
    config.update(overrides)
    return config
