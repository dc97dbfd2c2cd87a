"""Benchmark: the 784-500-20 MLP VAE step at batch 128 — exactly ``vae_mlp`` of
``../shared/bench/torch_reference.py`` (815 824 parameters).

Derived from ``configs/vae_binarized_mnist.py`` with the reference's model pinned: encoder
784 → 500 → ReLU → mean / log-variance heads of 20, decoder 20 → 500 → ReLU → 784 Bernoulli logits;
loss = mean over the batch of summed BCE + analytic KL, one posterior draw; Adam(1e-3), constant; no
EMA. Only the data differs: the embedded ``shapes`` images at 28 px (white shapes on black), so the
benchmark needs no data files (the step computes the same thing on any images in [0, 1]).

Command (run the PyTorch side alongside, alternating, and compare ratios)::

    python -m experiments.benchmark --config configs/bench/vae_mlp.py --steps 200
    python ../shared/bench/torch_reference.py --model vae_mlp

The family's per-pixel decoder ``output_bias`` (784 parameters the reference lacks) is off
(``output_bias_init='none'``), so the parameter count is the reference's.
Measured side by side, 2 threads each on the 2-core machine (docs/performance.md): on 2026-11-26,
six alternating rounds, this step 4.56-5.31 ms against PyTorch 2.13 eager's 7.05-10.20 ms, ratio
0.51-0.75, median 0.58 (target 0.5, not met: the step's matrix products alone, ``products_ms``,
take 3.24-3.53 ms and Adam 0.66-0.86 ms, which leaves almost nothing of half PyTorch's step for the
rest; docs/performance.md gives the figures). Compile 1.2-1.5 s.
"""

from configs import base, vae_binarized_mnist
from experiments.optim import default_optimizer_config
from vae_jax.defaults import default_model_config


def get_config(arg=None):
    del arg
    config = vae_binarized_mnist.get_config()
    config.data = base.get_data_config(name="shapes", image_size=28)
    config.batch_size = 128
    config.model = default_model_config(
        encoder="mlp",
        image_shape=(28, 28, 1),
        latent_dim=20,
        hidden_widths=(500,),
        activation="relu",
        likelihood="bernoulli",
        objective="elbo",
        num_samples=1,
        kl_weight=1.0,
        ema_decay=0.0,
        output_bias_init="none",
    )
    config.optimizer = default_optimizer_config(name="adam", learning_rate=1e-3)
    return config
