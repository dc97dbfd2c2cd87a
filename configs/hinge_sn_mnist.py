"""Hinge loss with a spectrally normalised discriminator (SNGAN, Miyato et al. 2018) on MNIST:
``dcgan_mnist``'s networks and optimiser (SNGAN's "standard CNN" setting: Adam(2e-4, b1=0.5),
one D update per G update), the hinge loss, and spectral normalisation of every D layer (one power
iteration per D update, vectors kept in the train state); EMA of G and 6000 steps as ``dcgan_mnist``.

Command:
  python -m experiments.main --config=configs/hinge_sn_mnist.py --workdir=runs/hinge_sn_mnist
Time on 2 CPU cores: 42 minutes measured (2520 s, one thread while two other runs and the test
suite shared the 2 cores); about 22 minutes on a core of its own.
Expected result: measured with seed 0, no NaN; recognisable digits of all ten classes; FID 24.8,
classifier score 6.91 ± 0.07, precision 0.43, recall 0.71 (10 000 EMA samples against the MNIST
test set; floor FID 0.30); 64.2% of samples classified with softmax ≥ 0.9 (test images: 98.4%).
"""

from configs import dcgan_mnist


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.model.loss = "hinge"
    config.model.discriminator.norm = "spectral"
    return config
