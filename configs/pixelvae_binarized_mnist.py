"""PixelVAE-style VAE on statically binarised MNIST: ``vae_conv_binarized_mnist`` whose decoder is
autoregressive over pixels (Gulrajani et al. 2017): the conv decoder outputs 32 feature maps and
p(x_i | x_<i, z) is a two-layer per-pixel MLP of those features and a causal 7x7 context of the
pixels before ``i`` (``vae_jax.networks.AutoregressiveHead``). Same encoder, objective, optimiser,
EMA and data.

Command::

    python -m experiments.main --config=configs/pixelvae_binarized_mnist.py --workdir=runs/pixelvae_bmnist
    python -m experiments.evaluate --workdir=runs/pixelvae_bmnist --max_examples=1000

Time and result: see below (filled in from the measured run).
"""

from configs import vae_binarized_mnist, vae_conv_binarized_mnist

EPOCHS = 20


def get_config():
    config = vae_conv_binarized_mnist.get_config()
    config.model.autoregressive_kernel = 7
    config.model.autoregressive_features = 32
    config.model.autoregressive_layers = 2
    vae_binarized_mnist.set_epochs(
        config, EPOCHS, train_examples=vae_binarized_mnist.TRAIN_EXAMPLES
    )
    return config
