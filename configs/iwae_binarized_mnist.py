"""IWAE (Burda et al. 2016) on statically binarised MNIST: ``vae_binarized_mnist`` trained on the
importance-weighted bound with k = 50 samples, with Burda et al.'s one-stochastic-layer shapes
(784-200-200-50(x2)-200-200-784; ELU instead of their tanh, plus this repo's output-bias init, EMA
and cosine decay).

Command::

    python -m experiments.main --config=configs/iwae_binarized_mnist.py --workdir=runs/iwae_bmnist
    python -m experiments.evaluate --workdir=runs/iwae_bmnist --metrics=   # NLL, k = 5000

The in-training eval also reports ``eval/nll_iwae``, the k = 50 bound on the test set. One epoch is
781 steps at batch 64 (each step decodes 64 x 50 latents); the run is 30 epochs.

Time on 2 CPU cores: ~6 min per epoch on the shared machine (each step decodes 64 x 50 latents),
so the 30 epochs take ~3 h; Burda et al.'s 3280 epochs would take ~2 weeks here.
Measured (seed 0): the first 1580 steps (2 epochs) of this command, stopped by SIGTERM after 20 min
(contended): ``eval/nll_iwae`` (k = 50, whole test set) 112.3 after epoch 1, 104.7 after epoch 2;
k = 5000 NLL on 500 test examples 100.8 ± 1.2 nats at step 1580. Expected result of the full run:
not measured (Burda et al.: 87.10 nats after 3280 epochs).
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
