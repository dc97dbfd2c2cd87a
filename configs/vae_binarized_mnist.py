"""VAE on statically binarised MNIST (Larochelle & Murray's split): the base of the binarised-MNIST
VAE configs (``vae_conv_binarized_mnist``, ``iwae_binarized_mnist`` and ``vae_mnist`` derive from it).

Model: MLP VAE 784-512-512-32(x2)-512-512-784, ELU, Bernoulli likelihood, decoder output bias
initialised to the logit of the mean image, single-sample ELBO; Adam 1e-3 with a cosine decay over
the run, batch 64; eval, samples and grids use an EMA (0.999) of the parameters.

Command::

    python -m experiments.main --config=configs/vae_binarized_mnist.py --workdir=runs/vae_bmnist
    python -m experiments.evaluate --workdir=runs/vae_bmnist --metrics=   # NLL, k = 5000

Data: ``binarized_mnist`` train split (50 000 images) for training, the test split (10 000) for eval.
One epoch is 50000 // 64 = 781 steps; the run is 30 epochs = 23 430 steps, with eval (test negative
ELBO = ``eval/loss``), sample grids and a checkpoint every epoch.

Time on 2 CPU cores: 16 min wall clock for the 30 epochs on the shared 2-core machine (the
process got 357 s of CPU time; the machine was shared with other jobs), epoch 10 after ~5.5 min.
The k = 5000 evaluation costs ~0.37 s per test example here (~1 h for all 10 000; pass
``max_examples`` in the ``vae_jax.evaluation`` options for a subset).

Expected result: measured with seed 0, ``eval/loss`` (test negative ELBO, 10 000 examples) 97.08 nats
after 10 epochs (the check of issue 2: <= 100; the 784-500-20 ReLU VAE of Flax's example: ~104),
94.91 after 30. IWAE NLL at step 23 430: k = 5000 on 1000 test examples spread over the split
89.82 ± 0.70 nats (k = 50 on the same examples: 90.99); k = 50 on the whole test set 90.85 ± 0.23,
so k = 5000 on the whole test set ≈ 90.85 - (90.99 - 89.82) = 89.7 nats (pythae's VAE: 89.78;
the issue's target, <= 89.5, is not reached by this 30-epoch run).
"""

from configs import base
from experiments.optim import default_optimizer_config
from vae_jax.defaults import default_model_config

TRAIN_EXAMPLES = 50_000
BATCH_SIZE = 64
EPOCHS = 30


def set_epochs(config, epochs: int, *, train_examples: int, eval_every_epochs: int = 1) -> None:
    """Sets the run length to ``epochs`` of ``train_examples // config.batch_size`` steps, with eval,
    grids and a checkpoint every ``eval_every_epochs`` epochs, and a cosine decay (when the
    optimiser uses one) that ends with the run."""
    steps_per_epoch = train_examples // config.batch_size
    config.num_train_steps = epochs * steps_per_epoch
    config.eval_every_steps = eval_every_epochs * steps_per_epoch
    config.checkpoint_every_steps = eval_every_epochs * steps_per_epoch
    config.log_every_steps = min(200, steps_per_epoch)
    config.optimizer.decay_steps = config.num_train_steps


def get_config():
    config = base.get_base_config()
    config.family = "vae"
    config.batch_size = BATCH_SIZE
    config.data = base.get_data_config(
        name="binarized_mnist", train_split="train", eval_split="test"
    )
    config.model = default_model_config(
        encoder="mlp",
        image_shape=(28, 28, 1),
        latent_dim=32,
        hidden_widths=(512, 512),
        activation="elu",
        ema_decay=0.999,
        output_bias_init="data_mean",
    )
    config.optimizer = default_optimizer_config(name="adam", learning_rate=1e-3, schedule="cosine")
    set_epochs(config, EPOCHS, train_examples=TRAIN_EXAMPLES)
    return config
