"""Convolutional VAE on statically binarised MNIST: ``vae_binarized_mnist`` with the conv encoder /
decoder (4x4 stride-2 convolutions 28 → 14 → 7 with 32 and 64 channels, a 512-unit dense layer,
latent 32, ELU), same objective, optimiser, EMA and data.

Command::

    python -m experiments.main --config=configs/vae_conv_binarized_mnist.py --workdir=runs/vae_conv_bmnist

One epoch is 781 steps at batch 64; the run is 30 epochs = 23 430 steps.

Time on 2 CPU cores: ~4 min per epoch on the shared machine (~2 h for the 30 epochs; not run).
Measured (seed 0): a 2-epoch run of this command (``--config.num_train_steps=1562
--config.optimizer.decay_steps=1562``, 8 min): test negative ELBO 102.0 after epoch 1 (the MLP:
107.7) and 100.4 after epoch 2; k = 5000 NLL on 200 test examples 94.6 ± 1.5 nats. Expected result
of the full run: not measured.
"""

from configs import vae_binarized_mnist

EPOCHS = 30


def get_config():
    config = vae_binarized_mnist.get_config()
    config.model.encoder = "conv"
    config.model.conv_features = (32, 64)
    config.model.hidden = 512
    vae_binarized_mnist.set_epochs(
        config, EPOCHS, train_examples=vae_binarized_mnist.TRAIN_EXAMPLES
    )
    return config
