"""LSGAN (Mao et al. 2017) on MNIST: ``dcgan_mnist`` with the least-squares loss (a-b-c = 0-1-1).

Everything else is ``dcgan_mnist``'s: networks, Adam(2e-4, b1=0.5), batch 64, EMA of G, 6000 steps.

Command:
  python -m experiments.main --config=configs/lsgan_mnist.py --workdir=runs/lsgan_mnist
Time on 2 CPU cores: 41 minutes measured (2473 s, one thread while two other runs and the test
suite shared the 2 cores); about 21 minutes on a core of its own, like ``dcgan_mnist``.
Expected result: measured with seed 0, no NaN; recognisable digits of all ten classes; FID 21.9,
classifier score 7.11 ± 0.10, precision 0.45, recall 0.70 (10 000 EMA samples against the MNIST
test set; floor FID 0.30); 67.2% of samples classified with softmax ≥ 0.9 (test images: 98.4%).
"""

from configs import dcgan_mnist


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.model.loss = "least_squares"
    return config
