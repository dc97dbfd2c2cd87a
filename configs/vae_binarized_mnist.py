"""VAE on statically binarised MNIST (Larochelle & Murray): the 784-500-20 MLP VAE of Kingma & Welling
(2014) and Flax's VAE example, Adam 1e-3, batch 128, 10 epochs.

Command::

    python -m experiments.main --config=configs/vae_binarized_mnist.py --workdir=runs/vae_bmnist

Data: ``binarized_mnist`` train split (50 000 images) for training, the test split (10 000) for eval.
One epoch is 50000 // 128 = 390 steps; the run is 10 epochs = 3900 steps, with eval, sample grids and a
checkpoint every epoch and metrics every 100 steps.

Time on 2 CPU cores: TODO (to be measured).
Expected result: TODO (to be measured: eval/loss, the test negative ELBO in nats, at step 3900).
"""

from configs import base
from experiments.optim import default_optimizer_config
from vae_jax.defaults import default_model_config

TRAIN_EXAMPLES = 50_000
BATCH_SIZE = 128
EPOCHS = 10
STEPS_PER_EPOCH = TRAIN_EXAMPLES // BATCH_SIZE  # 390


def get_config():
    config = base.get_base_config()
    config.family = "vae"
    config.batch_size = BATCH_SIZE
    config.num_train_steps = EPOCHS * STEPS_PER_EPOCH  # 3900
    config.log_every_steps = 100
    config.eval_every_steps = STEPS_PER_EPOCH
    config.checkpoint_every_steps = STEPS_PER_EPOCH
    config.data = base.get_data_config(
        name="binarized_mnist", train_split="train", eval_split="test"
    )
    config.model = default_model_config(
        encoder="mlp", image_shape=(28, 28, 1), latent_dim=20, hidden_widths=(500,)
    )
    config.optimizer = default_optimizer_config(name="adam", learning_rate=1e-3)
    return config
