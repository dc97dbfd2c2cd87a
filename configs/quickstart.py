"""Quickstart: a convolutional VAE on the embedded procedural shapes (no download, no data files).

Command:
  python -m experiments.main --config=configs/quickstart.py --workdir=runs/quickstart
Time on 2 CPU cores: TODO. Expected result: TODO.
"""

from configs import base
from experiments.optim import default_optimizer_config
from vae_jax.defaults import default_model_config


def get_config(arg=None):
    del arg
    config = base.get_base_config()
    config.family = "vae"
    config.data = base.get_data_config(name="shapes", image_size=28)
    config.model = default_model_config(
        encoder="conv", image_shape=(28, 28, 1), latent_dim=10, conv_features=(32, 64), hidden=256
    )
    config.optimizer = default_optimizer_config(name="adam", learning_rate=1e-3)
    config.batch_size = 64
    config.num_train_steps = 1500
    config.log_every_steps = 100
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    return config
