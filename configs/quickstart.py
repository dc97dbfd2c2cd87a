"""Quickstart: a small DCGAN on the embedded procedural shapes (no download, no data files).

Command:
  python -m experiments.main --config=configs/quickstart.py --workdir=runs/quickstart
Time on 2 CPU cores: TODO. Expected result: TODO.
"""

from configs import dcgan_mnist


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.data.name = "shapes"
    config.model.generator.features = (64, 32)
    config.model.discriminator.features = (32, 64)
    config.num_train_steps = 1000
    config.eval_every_steps = 250
    config.checkpoint_every_steps = 250
    config.log_every_steps = 50
    return config
