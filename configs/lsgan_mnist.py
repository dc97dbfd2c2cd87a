"""LSGAN (Mao et al. 2017) on MNIST: ``dcgan_mnist`` with the least-squares loss (a-b-c = 0-1-1).

Everything else is ``dcgan_mnist``'s: networks, Adam(2e-4, b1=0.5), batch 64, EMA of G, 6000 steps.

Command:
  python -m experiments.main --config=configs/lsgan_mnist.py --workdir=runs/lsgan_mnist
Time on 2 CPU cores: about 22 minutes expected (dcgan_mnist's networks and 6000 steps: 21 min);
the run at these defaults had not finished when this was written.
Expected result: recognisable digits and no NaN (not yet measured at these defaults).
"""

from configs import dcgan_mnist


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.model.loss = "least_squares"
    return config
