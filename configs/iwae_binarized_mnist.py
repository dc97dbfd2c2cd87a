"""IWAE (Burda et al. 2016) on statically binarised MNIST: ``vae_binarized_mnist`` trained on the
importance-weighted bound with k = 50 samples, with Burda et al.'s one-stochastic-layer shapes
(784-200-200-50(x2)-200-200-784; ELU instead of their tanh, plus this repo's output-bias init, EMA
and cosine decay).

Command::

    python -m experiments.main --config=configs/iwae_binarized_mnist.py --workdir=runs/iwae_bmnist
    python -m experiments.evaluate --workdir=runs/iwae_bmnist --metrics=   # NLL, k = 5000

The in-training eval also reports ``eval/nll_iwae``, the k = 50 bound on the test set. One epoch is
781 steps at batch 64 (each step decodes 64 x 50 latents); the run is 30 epochs.

Time on 2 CPU cores: about 65 min for the 30 epochs (one thread while other runs shared the
machine; ~10 steps/s, ~78 s per epoch, on a core of its own), then 15 min for the k = 5000 NLL of
all 10 000 test examples. Burda et al.'s 3280 epochs would take about 71 h here.
Expected result, measured with seed 0: NLL (IWAE bound, k = 5000, all 10 000 test examples)
89.78 ± 0.23 nats (the issue's target <= 87.0 is not reached; Burda et al.: 87.10 after 3280
epochs); negative ELBO 102.27. Learning curve (k = 50 test bound by epoch): 112.04 (1), 97.02 (5),
94.09 (10), 92.20 (20), 91.87 (30), still falling.
"""

from configs import vae_binarized_mnist

EPOCHS = 30


def get_config():
    config = vae_binarized_mnist.get_config()
    config.model.hidden_widths = (200, 200)
    config.model.latent_dim = 50
    config.model.objective = "iwae"
    config.model.num_samples = 50
    config.model.iwae_k_train_eval = 50
    vae_binarized_mnist.set_epochs(
        config, EPOCHS, train_examples=vae_binarized_mnist.TRAIN_EXAMPLES
    )
    return config
