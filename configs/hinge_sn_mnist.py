"""Hinge loss with a spectrally normalised discriminator (SNGAN, Miyato et al. 2018) on MNIST:
``dcgan_mnist``'s networks and optimiser (SNGAN's "standard CNN" setting: Adam(2e-4, b1=0.5),
one D update per G update), the hinge loss, and spectral normalisation of every D layer (one power
iteration per D update, vectors kept in the train state); EMA of G and 6000 steps as ``dcgan_mnist``.

Command:
  python -m experiments.main --config=configs/hinge_sn_mnist.py --workdir=runs/hinge_sn_mnist
Time on 2 CPU cores: about 22 minutes expected (dcgan_mnist's networks and 6000 steps: 21 min);
the run at these defaults had not finished when this was written.
Expected result: recognisable digits and no NaN (not yet measured at these defaults).
"""

from configs import dcgan_mnist


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.model.loss = "hinge"
    config.model.discriminator.norm = "spectral"
    return config
