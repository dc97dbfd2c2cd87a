"""PixelVAE-style VAE on statically binarised MNIST: ``vae_conv_binarized_mnist`` whose decoder is
autoregressive over pixels (Gulrajani et al. 2017): the conv decoder outputs 32 feature maps and
p(x_i | x_<i, z) is a two-layer per-pixel MLP of those features and a causal 7x7 context of the
pixels before ``i`` (``vae_jax.networks.AutoregressiveHead``). Same encoder, objective, optimiser,
EMA and data.

Command::

    python -m experiments.main --config=configs/pixelvae_binarized_mnist.py --workdir=runs/pixelvae_bmnist
    python -m experiments.evaluate --workdir=runs/pixelvae_bmnist --family_options=max_examples=1000

One epoch is 781 steps at batch 64; the run is 20 epochs = 15 620 steps, with the test ELBO, sample
grids and a checkpoint every epoch. Samples, reconstructions, interpolations and traversals are
ancestral samples over the 784 pixels (``VAEFamily.autoregressive_means``; 10 000 prior samples take
about 20 s).

Time on 2 CPU cores: 41 min for the 20 epochs (2444 s, one thread, while tests used the other
core; the step is ~2.6x the conv VAE's: the decoder's last layer outputs 32 channels and the head
runs per pixel). The evaluate command took 29 min (one thread): the k = 5000 NLL of 1000 test
examples (about 4.5 h for all 10 000, so it evaluates 1000 evenly spread ones, the same as
``vae_conv_binarized_mnist``), then FID/KID/IS/PR of 10 000 prior samples. On a CPU with glibc,
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m experiments.main ...`` makes the step 77-87 →
57-62 ms: its 71 MB of temporaries are more than ``config.host_memory`` can keep (18 300 → 370
page faults per step; docs/performance.md).

Expected result, measured with seed 0: NLL (IWAE bound, k = 5000, 1000 test examples evenly spread
over the split) **81.20 ± 0.62 nats**, the best VAE in the repo (the conv VAE without the head:
86.51 on the same examples; the target for the best config: <= 85);
negative ELBO 82.67 on the whole test set (reconstruction 71.87, KL 10.80: the latent still carries
~11 nats, the head models the local detail). Learning curve (test negative ELBO by epoch): 88.66
(1), 86.03 (2), 84.04 (5), 83.01 (10), 82.75 (15), 82.67 (20); flat from ~epoch 15. Samples
through the MNIST domain classifier (10 000 prior samples vs the test set): FID 13.3, classifier
score 7.83, precision 0.76, recall 0.39 (the conv VAE: FID 24.0).
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
