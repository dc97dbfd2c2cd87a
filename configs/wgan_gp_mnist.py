"""WGAN-GP (Gulrajani et al. 2017) on MNIST: ``dcgan_mnist``'s networks with the Wasserstein loss,
the two-sided gradient penalty (λ = 10) on real-fake interpolates, no normalisation in the critic,
5 critic updates per generator update and Adam(1e-4, b1=0, b2=0.9) for both, as in the paper.

The batch holds the 5 critic batches of 64 (``batch_size = 320``); the generator update uses 64
latents; 6000 generator updates (30 000 critic updates); EMA of G as ``dcgan_mnist``.

Command:
  python -m experiments.main --config=configs/wgan_gp_mnist.py --workdir=runs/wgan_gp_mnist
Time on 2 CPU cores: about 2 h (one thread, 0.8-1.1 steps/s, while other runs used the other
core): measured as 2000 steps in 54 min, then resumed to 6000 in 70 min (a resumed run equals a
straight one bit for bit).
On a CPU with glibc, start it as
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m experiments.main ...``: the step's 124 MB of
temporaries are more than ``config.host_memory`` can keep, so each step maps them afresh; with 2 MB
pages its 32 000 page faults per step drop to 160 and the step from 410-448 to 363-379 ms
(docs/performance.md; measured after the run above).
Expected result: measured with seed 0, no NaN; recognisable digits of all ten classes: FID 18.4,
classifier score 7.29 ± 0.10, precision 0.46, recall 0.79 (10 000 EMA samples against the MNIST test
set; floor FID 0.30); 67.9% of samples classified with softmax >= 0.9 (test images: 98.4%). At 2000
generator updates the digits were still ragged (FID 47.2, score 5.22, 47.6% confident): WGAN-GP
converges more slowly per update than the non-saturating loss, but ends with the best FID and recall
of the unconditional MNIST configs.
"""

from configs import dcgan_mnist
from experiments.optim import default_optimizer_config

D_STEPS = 5
BATCH_PER_D_STEP = 64


def get_config(arg=None):
    config = dcgan_mnist.get_config(arg)
    config.model.loss = "wasserstein"
    config.model.d_steps = D_STEPS
    config.model.discriminator.norm = "none"
    config.model.regularizers.gradient_penalty = 10.0
    for name in ("generator", "discriminator"):
        config.optimizer[name] = default_optimizer_config(learning_rate=1e-4, b1=0.0, b2=0.9)
    config.batch_size = D_STEPS * BATCH_PER_D_STEP
    config.num_train_steps = 6000
    return config
