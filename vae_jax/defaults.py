"""Defaults of the VAE family's ``config.model`` (imports only ml_collections, so configs stay cheap)."""

from __future__ import annotations

import ml_collections


def default_model_config(**overrides) -> ml_collections.ConfigDict:
    """Every ``config.model`` key of the VAE family with its default; ``vae_jax.family`` documents
    each key. The architecture defaults are the 784-500-20 MLP VAE of Kingma & Welling (2014) /
    Flax's VAE example; experiment configs (``configs/vae_*.py``) choose stronger ones."""
    config = ml_collections.ConfigDict(
        dict(
            # Networks.
            encoder="mlp",  # mlp | conv (the decoder mirrors it)
            image_shape=(28, 28, 1),  # (height, width, channels) of the data
            latent_dim=20,
            hidden_widths=(500,),  # mlp encoder; the decoder uses them reversed
            conv_features=(32, 64),  # conv encoder (decoder reversed)
            hidden=256,  # conv dense width
            activation="relu",  # experiments.layers.ACTIVATIONS
            kernel_init="default",  # experiments.layers.INITIALIZERS
            num_classes=0,  # > 0: conditional VAE on data 'label'
            output_bias_init="data_mean",  # data_mean | zeros | none (no per-pixel output bias)
            autoregressive_kernel=0,  # odd > 0: PixelVAE-style decoder with this causal context
            autoregressive_features=32,  # its channels (and the decoder's output channels)
            autoregressive_layers=2,  # its hidden 1x1 layers
            # Likelihood p(x | z).
            likelihood="bernoulli",  # bernoulli | gaussian | discretized_logistic
            gaussian_scale=0.1,  # gaussian with learn_scale=False: the fixed std on [0, 1] pixels
            learn_scale=False,  # gaussian: per-pixel learned std (second decoder channel)
            num_bins=256,  # discretized_logistic: levels per channel
            # Objective.
            objective="elbo",  # elbo | iwae
            num_samples=1,  # posterior draws per example and step (k of the IWAE objective)
            kl_weight=1.0,  # beta on the KL term (1.0 = the ELBO); the end of the warm-up
            kl_warmup_steps=0,  # 0: kl_weight throughout
            kl_warmup_start=0.0,  # the weight at step 0 of the warm-up
            kl_warmup_shape="linear",  # linear | cosine
            free_bits=0.0,  # nats per latent dimension (elbo objective only); 0 = off
            ema_decay=0.0,  # > 0: evaluate and sample with an EMA of the parameters (experiments.ema)
            ema_start_step=0,  # until this many updates the EMA copies the parameters
            ema_warmup=True,  # decay min(ema_decay, m / (m + 9)) for the m-th update after the start
            # Evaluation.
            iwae_k_train_eval=0,  # k of the IWAE NLL in the engine's eval (eval/nll_iwae); 0 = off
            iwae_k_eval=5000,  # default k of evaluation_metrics (experiments.evaluate)
        )
    )
    config.update(overrides)
    return config
