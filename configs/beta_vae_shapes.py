"""β-VAE (Higgins et al. 2017) on the embedded dSprites-style ``shapes`` (28 px; factors shape,
scale, orientation, x, y): ``quickstart``'s conv VAE (latent 10) with β = 4 reached by a linear KL
warm-up over the first 500 steps, an EMA of the parameters, and 2000 steps.

Command::

    python -m experiments.main --config=configs/beta_vae_shapes.py --workdir=runs/beta_vae_shapes

Look at ``samples/traversals_<step>.png``: row r varies the latent with the r-th largest average KL
over [-3, 3] (the others fixed at one test image's posterior mean). With β = 4 few latents stay
active and each tends to follow one factor (position x / y, scale, shape); ``interpolations_*.png``
and ``prior_samples_*.png`` show the rest.

Time on 2 CPU cores: 3.8 min (228 s wall clock, shared machine, compilation included).
Expected result: measured with seed 0, test negative ELBO (``eval/loss``) 48.5 nats with KL 6.7 nats at
step 2000; the traversals show 3-4 active latents (vertical / horizontal position, size and
orientation mixed in), the remaining rows nearly constant.
"""

from configs import quickstart


def get_config(arg=None):
    config = quickstart.get_config(arg)
    config.model.kl_weight = 4.0
    config.model.kl_warmup_steps = 500
    config.model.ema_decay = 0.999
    config.num_train_steps = 2000
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    return config
