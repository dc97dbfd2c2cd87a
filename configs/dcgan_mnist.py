"""DCGAN with the non-saturating loss on MNIST (the standard PyTorch DCGAN shapes, 28 px).

Command:
  python -m experiments.main --config=configs/dcgan_mnist.py --workdir=runs/dcgan \
      --config.data.dir=PATH_TO_MNIST_IDX_FILES
Time on 2 CPU cores: TODO. Expected result: TODO.
"""

import ml_collections

from configs import base
from experiments.optim import default_optimizer_config


def get_gan_model_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            latent_dim=100,
            image_size=28,
            channels=1,
            loss="non_saturating",
            ema_decay=0.0,
            generator=dict(features=(128, 64), weight_init="dcgan_normal"),
            discriminator=dict(features=(64, 128), norm="none", weight_init="dcgan_normal"),
        )
    )


def get_config(arg=None) -> ml_collections.ConfigDict:
    del arg
    config = base.get_base_config()
    config.family = "gan"
    config.data = base.get_data_config(name="mnist")
    config.model = get_gan_model_config()
    # Radford et al.: Adam(2e-4, beta1=0.5) for both networks.
    config.optimizer = ml_collections.ConfigDict(
        dict(
            generator=default_optimizer_config(learning_rate=2e-4, b1=0.5),
            discriminator=default_optimizer_config(learning_rate=2e-4, b1=0.5),
        )
    )
    config.batch_size = 64
    config.num_train_steps = 3000
    config.log_every_steps = 100
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    return config
