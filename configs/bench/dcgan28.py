"""Benchmark: the standard PyTorch DCGAN step on 28x28x1 images, G+D update at batch 64 — exactly
``dcgan28`` of ``../shared/bench/torch_reference.py``.

The model of ``configs/dcgan_mnist.py`` (G 771 969 + D 138 561 = 910 530 parameters: z 100 → Dense
(no bias) → BN → ReLU → 7x7x128 → UpConv 64 (no bias) → BN → ReLU → UpConv 1 → tanh; D: DownConv 64 →
LeakyReLU(0.2) → DownConv 128 → LeakyReLU(0.2) → Dense 1; non-saturating loss; Adam(2e-4, b1=0.5)
for both networks; one batch of latents per step whose G forward pass both updates use, as the
reference: ``model.shared_fakes``), with everything the reference does not do pinned off (EMA, regularisers,
augmentation, extra D steps). Only the data differs: the embedded ``shapes`` images at 28 px, so the
benchmark needs no data files (the step computes the same thing on any images in [0, 1]).

Command (run the PyTorch side alongside, alternating, and compare ratios, never absolute times
from different runs)::

    python -m experiments.benchmark --config configs/bench/dcgan28.py --steps 50
    python ../shared/bench/torch_reference.py --model dcgan28

Measured side by side, 2 threads each on the 2-core machine (docs/performance.md): on 2026-11-26,
eight alternating rounds, this step 63.5-89.1 ms against PyTorch 2.13 eager's 80.6-97.2 ms, ratio
0.67-1.11, median 0.78 (target 0.8); over all 24 rounds of that day, median 0.78. Its matrix
products alone (the benchmark's ``products_ms``) take 57.6-64.8 ms of it. One thread each:
117-129 ms against 147-150 ms. Compile 2.3-3.2 s. Before the host allocator kept
XLA's per-step buffers (``config.host_memory``) the step took 80 ms (ratio 0.89); before Eigen
convolutions (``config.cpu_convolutions``) and the col2im transposed convolution, 110 ms (ratio
1.25); with Flax's ConvTranspose/Conv, 3.0-3.4 s per step on one core.
"""

from configs import base, dcgan_mnist
from experiments.optim import default_optimizer_config


def get_config(arg=None):
    del arg
    config = dcgan_mnist.get_config()
    config.data = base.get_data_config(name="shapes", image_size=28)
    # A speed reference: no in-training FID (on shapes it would need the Inception weights).
    config.evaluation.metrics = config.evaluation.best_metric = ""
    config.batch_size = 64
    model = config.model
    model.latent_dim, model.image_size, model.channels = 100, 28, 1
    model.loss = "non_saturating"
    model.ema_decay = 0.0
    model.generator.features = (128, 64)
    model.generator.norm = "batch"
    model.discriminator.features = (64, 128)
    model.discriminator.norm = "none"
    model.d_steps = 1
    model.shared_fakes = True  # one z and one G forward pass per step, as the reference
    model.augment = ""
    model.num_classes = 0
    regularizers = model.regularizers
    regularizers.gradient_penalty = regularizers.r1 = regularizers.dragan = 0.0
    regularizers.weight_clip = 0.0
    config.optimizer.generator = default_optimizer_config(learning_rate=2e-4, b1=0.5)
    config.optimizer.discriminator = default_optimizer_config(learning_rate=2e-4, b1=0.5)
    return config
