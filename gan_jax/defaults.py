"""Defaults of the GAN family's ``config.model`` and ``config.optimizer`` (imports only ml_collections
and ``experiments.optim``'s defaults, so configs stay cheap to load).

Every key a GAN config may set exists here, so that any of them can be overridden on the command line
(``--config.model.regularizers.r1=10``); ``gan_jax.config`` lists the keys the family reads, and
``gan_jax.family`` and ``gan_jax.updates`` document what they do.
"""

from __future__ import annotations

import ml_collections

from experiments.optim import default_optimizer_config


def default_network_config(**overrides) -> ml_collections.ConfigDict:
    """Keys shared by ``model.generator`` and ``model.discriminator`` (each reads the ones it uses)."""
    config = ml_collections.ConfigDict(
        dict(
            # Hidden widths: MLP layers, DCGAN channels before each doubling (G) / after each
            # halving (D), ResNet block channels.
            features=(128, 64),
            weight_init="dcgan_normal",  # experiments.layers.INITIALIZERS
            activation="relu",  # MLP only: experiments.layers.ACTIVATIONS
            norm="batch",  # G: batch (dcgan, resnet) | none; D: none | batch | spectral
            conditioning="none",  # G: none | embedding | cbn; D: none | projection | auxiliary
            embedding_dim=32,  # G conditioning 'embedding': width of the label embedding
            sn_iterations=1,  # D norm 'spectral': power iterations per D update
        )
    )
    config.update(overrides)
    return config


def default_regularizers_config(**overrides) -> ml_collections.ConfigDict:
    """Discriminator regularisers; a weight of 0 turns one off."""
    config = ml_collections.ConfigDict(
        dict(
            gradient_penalty=0.0,  # λ of WGAN-GP (10 in Gulrajani et al. 2017)
            gradient_penalty_one_sided=False,  # max(0, ‖∇‖ - 1)² instead of (‖∇‖ - 1)²
            r1=0.0,  # γ of R1 (Mescheder et al. 2018): adds γ/2 E‖∇D(x_real)‖²
            r1_interval=1,  # lazy R1: every k D updates, with the weight multiplied by k
            dragan=0.0,  # λ of DRAGAN (Kodali et al. 2017)
            dragan_scale=0.5,  # DRAGAN perturbation: x + scale * std(x) * U[0, 1)
            weight_clip=0.0,  # original WGAN: clip every D parameter to [-c, c]; 0 = off
        )
    )
    config.update(overrides)
    return config


def default_model_config(**overrides) -> ml_collections.ConfigDict:
    """Every ``config.model`` key of the GAN family with its default (DCGAN on 28 px MNIST)."""
    config = ml_collections.ConfigDict(
        dict(
            architecture="dcgan",  # mlp | dcgan | resnet
            latent_dim=100,
            image_size=28,  # dcgan, resnet
            channels=1,  # dcgan, resnet
            data_dim=2,  # mlp: the dimension of the data vectors
            loss="non_saturating",  # minimax | non_saturating | least_squares | hinge | wasserstein
            num_classes=0,  # > 0: a conditional GAN (data must have 'label')
            acgan_weight=1.0,  # weight of the auxiliary classification loss (D 'auxiliary')
            d_steps=1,  # D updates per G update (the batch holds d_steps D batches)
            d_loop="unroll",  # unroll | scan: how the d_steps D updates are compiled
            # The G update reuses the D update's fakes (latents, labels and G's forward pass) as
            # PyTorch's DCGAN example does, instead of drawing its own: one G forward pass less.
            shared_fakes=False,  # needs d_steps == 1
            ema_decay=0.0,  # EMA of the generator weights; 0 = off
            ema_start_step=0,  # until this many updates the EMA copies the weights
            ema_warmup=False,  # decay min(ema_decay, m / (m + 9)) for the m-th update after the start
            augment="",  # DiffAugment policy: comma-separated translation, cutout, color
            generator=default_network_config(),
            discriminator=default_network_config(norm="none"),
            regularizers=default_regularizers_config(),
        )
    )
    config.update(overrides)
    return config


def default_optimizers_config(**overrides) -> ml_collections.ConfigDict:
    """``config.optimizer``: one ``experiments.optim`` config per network, Adam(2e-4, b1=0.5)."""
    config = ml_collections.ConfigDict(
        dict(
            generator=default_optimizer_config(learning_rate=2e-4, b1=0.5),
            discriminator=default_optimizer_config(learning_rate=2e-4, b1=0.5),
        )
    )
    config.update(overrides)
    return config
