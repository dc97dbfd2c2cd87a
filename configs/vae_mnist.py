"""VAE on dynamically binarised MNIST: the 784-500-20 MLP VAE of Kingma & Welling (2014) and Flax's
VAE example, Adam 1e-3, batch 128, 10 epochs.

Command::

    python -m experiments.main --config=configs/vae_mnist.py --workdir=runs/vae_mnist

Data: MNIST from its IDX files (``mnist``), train split (60 000 images) for training, the test split
(10 000) for eval. Each training image is re-binarised at every step (``binarize='dynamic'``: pixel
intensity = probability of a 1), the usual protocol of the IWAE / VAE literature. One epoch is
60000 // 128 = 468 steps; the run is 10 epochs = 4680 steps, with eval, sample grids and a checkpoint
every epoch and metrics every 100 steps.

Time on 2 CPU cores: TODO (to be measured).
Expected result: TODO (to be measured: eval/loss, the test negative ELBO in nats, at step 4680).
"""

from configs import base
from experiments.optim import default_optimizer_config
from vae_jax.defaults import default_model_config

TRAIN_EXAMPLES = 60_000
BATCH_SIZE = 128
EPOCHS = 10
STEPS_PER_EPOCH = TRAIN_EXAMPLES // BATCH_SIZE  # 468


def get_config():
    config = base.get_base_config()
    config.family = "vae"
    config.batch_size = BATCH_SIZE
    config.num_train_steps = EPOCHS * STEPS_PER_EPOCH  # 4680
    config.log_every_steps = 100
    config.eval_every_steps = STEPS_PER_EPOCH
    config.checkpoint_every_steps = STEPS_PER_EPOCH
    config.data = base.get_data_config(
        name="mnist", train_split="train", eval_split="test", binarize="dynamic"
    )
    config.model = default_model_config(
        encoder="mlp", image_shape=(28, 28, 1), latent_dim=20, hidden_widths=(500,)
    )
    config.optimizer = default_optimizer_config(name="adam", learning_rate=1e-3)
    return config
