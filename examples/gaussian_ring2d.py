"""``examples.gaussian`` on the ring of 8 Gaussians: the family of ``docs/extending.md`` trained by
the engine (``python -m experiments.main --config=examples/gaussian_ring2d.py
--workdir=runs/gaussian``). The maximum-likelihood fit is the data's own mean and standard
deviation: about (0, 0) and 1.41 per coordinate (points on a circle of radius 2)."""

import ml_collections

from configs import base
from experiments.optim import default_optimizer_config


def get_config(arg=None) -> ml_collections.ConfigDict:
    del arg
    config = base.get_base_config()
    config.family = "examples.gaussian"  # a module path: no change to the engine
    config.data = base.get_data_config(name="ring2d")
    config.model = ml_collections.ConfigDict({"example_shape": (2,)})
    config.optimizer = default_optimizer_config(learning_rate=0.05)
    config.batch_size = 256
    config.eval_batch_size = 1000
    config.num_train_steps = 300
    config.log_every_steps = 100
    config.eval_every_steps = 300
    config.checkpoint_every_steps = 300
    return config
