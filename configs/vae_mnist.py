"""VAE on dynamically binarised MNIST: ``vae_binarized_mnist`` (MLP 784-512-512-32, ELU, EMA, cosine
decay, batch 64) on the MNIST IDX files, re-binarised at every step.

Command::

    python -m experiments.main --config=configs/vae_mnist.py --workdir=runs/vae_mnist

Data: MNIST (``mnist``), train split (60 000 images) for training, the test split (10 000) for eval,
binarised once with a fixed seed (``experiments.data.build_eval_source``). Each training image is
re-binarised at every step (``binarize='dynamic'``: pixel intensity = probability of a 1), the
protocol of most of the IWAE / VAE literature (it overfits far less than the static binarisation).
One epoch is 60000 // 64 = 937 steps; the run is 30 epochs = 28 110 steps.

Time on 2 CPU cores: ~40 s per epoch, ~20 min for the run (estimated from ``vae_binarized_mnist``;
not measured separately). Expected result: not measured (the test ELBO of the dynamically binarised
test set is not comparable with the static one).
"""

from configs import base, vae_binarized_mnist

TRAIN_EXAMPLES = 60_000
EPOCHS = 30


def get_config():
    config = vae_binarized_mnist.get_config()
    config.data = base.get_data_config(
        name="mnist", train_split="train", eval_split="test", binarize="dynamic"
    )
    vae_binarized_mnist.set_epochs(config, EPOCHS, train_examples=TRAIN_EXAMPLES)
    return config
