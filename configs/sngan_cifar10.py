"""SNGAN (Miyato et al. 2018) on CIFAR-10 with the SN-ResNet of its CIFAR experiments: G z (128) →
Dense 4x4x256 → 3 up-blocks of 256 → BN → ReLU → conv3x3 → tanh; D an optimised block and three
residual blocks of 128 (the first two halve the side) → ReLU → global sum → Dense 1, every layer
spectrally normalised; hinge loss; 5 D updates per G update with D batches of 64 (``batch_size =
320``); Adam(2e-4, b1=0, b2=0.9) for both, decayed linearly to 0 over the 50 000 G updates;
Xavier-uniform initialisation.

Data: ``tfds:cifar10``, which must be prepared in array_record format (nothing is downloaded; the
error message says how: ``tfds build cifar10 --data_dir DIR --file_format array_record``, then
``--config.data.dir=DIR``).

Command:
  python -m experiments.main --config=configs/sngan_cifar10.py --workdir=runs/sngan_cifar10 \
      --config.data.dir=PATH_TO_TFDS_DATA
Time on 2 CPU cores: not trained here (no CIFAR-10 on our machines, and no download); it needs an
accelerator. The 5 D updates of a step are one ``lax.scan`` (``model.d_loop='scan'``), so the
program holds one D update and compiles in 8.1–9.2 s on 2 cores (22 s unrolled, the other configs'
default). XLA:CPU runs convolution gradients inside a loop body on a slow path, so on a CPU the
scanned step is ~10x slower than the unrolled one (batch 40: 40.8 s vs 4.2 s on one core); for a
CPU run add ``--config.model.d_loop=unroll`` (one step at batch 320: 51.6 s on one core, 2.66
TFLOP). Measured with ``python -m experiments.benchmark --config=configs/sngan_cifar10.py --steps=3
--config.data.name=shapes --config.data.image_size=32 --config.model.channels=1`` (grey stand-in
data).
Expected result: Miyato et al. (2018) report Inception score 8.22 and FID 21.7 for this model
(their protocol, 50 000 samples); not reproduced here.
"""

from configs import base
from experiments.optim import default_optimizer_config
from gan_jax.defaults import default_model_config, default_optimizers_config

D_STEPS = 5
BATCH_PER_D_STEP = 64
NUM_STEPS = 50_000


def get_config(arg=None):
    del arg
    config = base.get_base_config()
    config.family = "gan"
    config.data = base.get_data_config(name="tfds:cifar10")
    config.model = default_model_config(
        architecture="resnet", latent_dim=128, image_size=32, channels=3, loss="hinge"
    )
    config.model.d_steps = D_STEPS
    config.model.d_loop = "scan"  # a program of one D update: compile time (see above)
    config.model.generator.update(features=(256, 256, 256), weight_init="xavier", norm="batch")
    config.model.discriminator.update(
        features=(128, 128, 128, 128), weight_init="xavier", norm="spectral"
    )
    optimizer = dict(learning_rate=2e-4, b1=0.0, b2=0.9, schedule="linear_decay")
    config.optimizer = default_optimizers_config(
        generator=default_optimizer_config(**optimizer, decay_steps=NUM_STEPS),
        discriminator=default_optimizer_config(**optimizer, decay_steps=D_STEPS * NUM_STEPS),
    )
    config.batch_size = D_STEPS * BATCH_PER_D_STEP
    config.num_train_steps = NUM_STEPS
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 1000
    return config
