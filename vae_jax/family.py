"""The VAE family: Gaussian-latent VAEs (β-VAE, KL warm-up, free bits, IWAE, conditional) trained on
the ELBO or the importance-weighted bound, with a Bernoulli, Gaussian or discretised-logistic
likelihood.

``make(config) -> VAEFamily`` implements ``experiments.family.Family`` (plus the optional
``evaluation_metrics`` of ``experiments.evaluate``). The model is Kingma & Welling (2014): q(z | x) =
N(mean(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x | z) from the decoder; reparameterised
posterior draws, analytic KL.

One home per piece: ``vae_jax.config`` fills missing keys with their defaults and checks them
(``ConfigError``); ``vae_jax.updates`` holds the losses, the IWAE estimator and the update as pure
functions, which ``VAEFamily`` wires; ``vae_jax.objectives`` the formulas (reparameterisation, KL,
bounds); ``vae_jax.networks`` and ``vae_jax.likelihoods`` the model; ``vae_jax.evaluation`` the
test-set metrics.

Config keys read (``vae_jax.defaults.default_model_config``, re-exported here, lists them with
their defaults):

``config.model``
    Networks (``vae_jax.networks``): ``encoder`` (``'mlp'`` | ``'conv'``; the decoder mirrors it),
    ``image_shape`` ``(height, width, channels)`` (the decoder's output shape and ``sample`` need it
    before any data is seen; ``init_state`` raises ``ConfigError`` when the data's images differ),
    ``latent_dim``, ``hidden_widths`` (MLP; the decoder uses them reversed), ``conv_features`` and
    ``hidden`` (conv), ``activation`` (``experiments.layers.ACTIVATIONS``), ``kernel_init``
    (``experiments.layers.INITIALIZERS``), ``num_classes`` (> 0: a conditional VAE on the batch's
    ``'label'``), ``output_bias_init``: ``'data_mean'`` sets the decoder's per-pixel output bias at
    init so that a zero network output decodes to the mean image of the first train batch (for
    Bernoulli: the logit of each pixel's mean; this removes the first epochs' work of learning the
    background), ``'zeros'``, or ``'none'`` (no output bias at all). ``autoregressive_kernel``
    (odd, > 0; Bernoulli likelihood only) makes the decoder autoregressive over pixels (a
    PixelVAE-style ``networks.AutoregressiveHead`` with a causal ``autoregressive_kernel`` square
    context, ``autoregressive_features`` channels and ``autoregressive_layers`` hidden 1x1 layers):
    likelihoods stay one parallel pass, while samples, reconstructions, interpolations and
    traversals are ancestral samples over the pixels in raster order, shown as each pixel's
    probability given the pixels sampled before it.
    Likelihood (``vae_jax.likelihoods``): ``likelihood`` (``'bernoulli'`` | ``'gaussian'`` |
    ``'discretized_logistic'``), ``gaussian_scale`` (fixed std), ``learn_scale`` (learned per-pixel
    std instead), ``num_bins`` (levels of the discretised logistic).
    Objective (``vae_jax.objectives``): ``objective``: ``'elbo'`` (mean over ``num_samples`` draws
    of reconstruction + β KL) or ``'iwae'`` (the importance-weighted bound with ``k =
    num_samples``); β follows ``kl_weight_schedule(step, weight=kl_weight, warmup_steps=
    kl_warmup_steps, start=kl_warmup_start, shape=kl_warmup_shape)`` (in the IWAE it multiplies
    log p(z) - log q(z) of each weight); ``free_bits`` λ nats per latent dimension (``'elbo'`` only).
    ``ema_decay``: > 0 keeps an exponential moving average of the parameters (``experiments.ema``
    with ``ema_start_step`` and ``ema_warmup``; by default decay ``min(ema_decay, n / (n + 9))``
    after update ``n``) that eval, samples, grids and ``evaluation_metrics`` use; 0 keeps none
    (``VAEState.ema_params`` is None) and they use the parameters.
    Evaluation: ``iwae_k_train_eval`` (> 0: ``eval_step`` also returns ``nll_iwae``, the IWAE bound
    with this k), ``iwae_k_eval`` (the default k of ``evaluation_metrics``, 5000).
``config.optimizer``
    As in ``experiments.optim`` (``make_optimizer``).
``config.compute_dtype``
    The networks' compute dtype (``experiments.precision``; absent: float32).

Metrics. ``train_step``: batch means of ``loss`` (the objective), ``elbo``, ``reconstruction``
(-log p(x | z), averaged over the draws), ``kl`` (analytic), ``kl_weight`` (β at this step),
``grad_norm`` (global L2 norm of the loss gradient, before the optimiser) and, for the IWAE
objective, ``iwae_bound``. ``eval_step`` (with the EMA parameters), per example ``(batch,)``:
``loss`` (the negative ELBO, nats; whatever β training uses), ``elbo``, ``reconstruction``, ``kl``,
and ``nll_iwae`` when ``iwae_k_train_eval > 0``.

Randomness (``experiments.rng``): posterior draws are ``normal_per_example(purpose_key(key,
'posterior'), (batch, k, latent))``, one key per example position, so they do not depend on how the
batch is split over devices; prior samples use ``purpose_key(key, 'prior')``;
``evaluation_metrics`` one key per (test example, importance sample) (``vae_jax.evaluation``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from experiments import optim, precision, rng, sampling
from experiments.errors import ConfigError
from vae_jax import config as vae_config
from vae_jax import likelihoods, networks, objectives, updates
from vae_jax.config import Hyperparameters
from vae_jax.defaults import default_model_config
from vae_jax.updates import VAEState

NUM_RECONSTRUCTIONS = 32  # inputs shown (each next to its reconstruction) in the grid
NUM_PRIOR_SAMPLES = 64
SAMPLES_PER_CLASS = 10  # conditional prior-sample grid: one row per class
GRID_STEPS = 10  # images per interpolation / traversal row
MAX_GRID_ROWS = 10  # interpolation pairs and traversed dimensions
TRAVERSAL_RANGE = 3.0  # traversals sweep z_j over [-3, 3]

__all__ = ["Hyperparameters", "VAEFamily", "VAEState", "default_model_config", "make"]


class VAEFamily:
    """The functions of ``experiments.family.Family`` for one VAE config.

    Holds only static things (the Flax module, the optax transformation, the likelihood, the image
    shape and the ``Hyperparameters``); all mutable quantities live in ``VAEState``. The losses and
    the update are the pure functions of ``vae_jax.updates``, which this class wires.
    """

    def __init__(
        self,
        model: networks.VAE,
        optimizer: optax.GradientTransformation,
        *,
        image_shape: tuple[int, int, int],
        likelihood: likelihoods.Likelihood | None = None,
        hp: Hyperparameters | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.image_shape = tuple(image_shape)
        self.likelihood = likelihood or likelihoods.Bernoulli()
        self.hp = Hyperparameters() if hp is None else hp

    @property
    def latent_dim(self) -> int:
        """The dimension of z."""
        return self.model.encoder.latent_dim

    @property
    def num_classes(self) -> int:
        """Classes of a conditional VAE (0: unconditional)."""
        return self.model.num_classes

    @property
    def iwae_k_eval(self) -> int:
        """The default k of ``evaluation_metrics``."""
        return self.hp.iwae_k_eval

    @property
    def conditional(self) -> bool:
        """Whether samples take labels (``experiments.evaluate``'s ``acc`` and ``ifid`` need it)."""
        return self.num_classes > 0

    # -- pieces ------------------------------------------------------------------------------------

    def labels(self, batch: dict) -> jax.Array | None:
        """The batch's labels for a conditional VAE (None for an unconditional one)."""
        return updates.batch_labels(batch, self.num_classes)

    @property
    def autoregressive(self) -> bool:
        """Whether p(x | z) is autoregressive over pixels (``networks.AutoregressiveHead``)."""
        return self.model.autoregressive is not None

    @property
    def values_per_sample(self) -> int:
        """Decoder values per posterior sample (what bounds an evaluation chunk's memory)."""
        height, width, channels = self.image_shape
        values = channels * self.likelihood.params_per_channel
        if self.autoregressive:
            head = self.model.autoregressive
            values = max(values, head.features * (2 + head.hidden_layers))
        return height * width * values

    def encode(self, params, x: jax.Array, labels=None) -> tuple[jax.Array, jax.Array]:
        """The posterior ``(mean, logvar)`` of ``x`` (``updates.encode``)."""
        return updates.encode(params, x, labels, model=self.model)

    def context(self, params, x: jax.Array, repeats: int = 1) -> jax.Array | None:
        """The autoregressive decoder's causal context of ``x`` (None for a plain decoder); what
        ``decode`` needs to score ``x``. It is computed once per image and each row is repeated
        ``repeats`` times (``jnp.repeat``), for ``repeats`` latents scored per image."""
        return updates.image_context(params, x, repeats, model=self.model)

    def decode(self, params, z: jax.Array, labels=None, context=None) -> jax.Array:
        """The decoder output (the likelihood's parameters) at latents ``z``; an autoregressive
        decoder also needs the ``context`` of the images it scores (one row per row of ``z``)."""
        return updates.decode(params, z, labels, context, model=self.model)

    def decode_means(self, params, z: jax.Array, labels=None, key=None, shared_noise=False):
        """The image decoded at ``z``, NHWC in [0, 1]: the likelihood's mean, or for an
        autoregressive decoder ``autoregressive_means`` (which needs ``key``)."""
        if not self.autoregressive:
            return self.likelihood.mean(self.decode(params, z, labels))
        if key is None:
            raise ValueError("an autoregressive decoder's images are samples: pass a key")
        return self.autoregressive_means(params, z, labels, key, shared_noise)

    def autoregressive_means(self, params, z, labels, key, shared_noise: bool = False):
        """Ancestral samples x ~ p(x | z), pixel by pixel in raster order, returned as the
        probability ``p(x_i = 1 | x_<i, z)`` of every pixel along the way: smoother to look at
        than the binary sample, and over the draws its average is the pixel's marginal probability
        given ``z``.

        Pixel ``i`` of image ``n`` uses ``uniform(fold_in(fold_in(key, n), i))``, so image ``n``
        depends only on ``key``, ``n`` and its ``z``; with ``shared_noise`` every image uses
        ``fold_in(key, i)`` instead (rows of an interpolation then differ only through ``z``).
        """
        height, width, channels = self.image_shape
        num = z.shape[0]
        apply = functools.partial(self.model.apply, {"params": params})
        features = apply(z, labels, method=networks.VAE.decoder_features)

        image_keys = None if shared_noise else rng.example_keys(key, num)

        def uniforms(i):
            if shared_noise:
                return jnp.broadcast_to(jax.random.uniform(jax.random.fold_in(key, i)), (num,))
            return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, i)))(image_keys)

        def one_pixel(i, carry):
            x, means = carry
            row, col = i // width, i % width
            p = self.likelihood.mean(apply(features, x, row, col, method=networks.VAE.pixel))
            drawn = (uniforms(i)[:, None] < p).astype(jnp.float32)
            x = jax.lax.dynamic_update_slice(x, drawn[:, None, None, :], (0, row, col, 0))
            means = jax.lax.dynamic_update_slice(means, p[:, None, None, :], (0, row, col, 0))
            return x, means

        blank = jnp.zeros((num, height, width, channels), jnp.float32)
        _, means = jax.lax.fori_loop(0, height * width, one_pixel, (blank, blank))
        return means

    def init_output_bias(self, params, x: jax.Array):
        """``params`` with the decoder's output bias set from the mean image of ``x``."""
        x = x.astype(jnp.float32)
        # Shrunk towards the overall mean (weight of one image) so that constant pixels stay finite.
        pixel_mean = (jnp.sum(x, axis=0) + jnp.mean(x)) / (x.shape[0] + 1)
        bias = self.likelihood.output_bias(pixel_mean)
        if self.autoregressive:
            head = {**params["autoregressive"], "output_bias": bias}
            return {**params, "autoregressive": head}
        decoder = {**params["decoder"], "output_bias": {"bias": bias}}
        return {**params, "decoder": decoder}

    # -- the Family interface ----------------------------------------------------------------------

    def init_state(self, key: jax.Array, example_batch: dict) -> VAEState:
        x = example_batch["x"]
        if tuple(x.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"config.model.image_shape={self.image_shape} but the data's images have shape "
                f"{tuple(x.shape[1:])}"
            )
        labels = self.labels(example_batch)
        params = self.model.init(
            {"params": rng.purpose_key(key, "params")},
            jnp.zeros((1, *self.image_shape), jnp.float32),
            rng.purpose_key(key, "posterior"),
            None if labels is None else jnp.zeros((1,), jnp.int32),
        )["params"]
        if self.hp.output_bias_init == "data_mean":
            params = self.init_output_bias(params, x)
        return VAEState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.init(params),
            ema_params=params if self.hp.ema_decay > 0 else None,
        )

    def train_step(self, state: VAEState, batch: dict, key: jax.Array):
        """One update (``updates.train_update``; the metrics are listed in the module docstring)."""
        return updates.train_update(
            state,
            batch,
            key,
            model=self.model,
            likelihood=self.likelihood,
            optimizer=self.optimizer,
            hp=self.hp,
        )

    def eval_step(self, state: VAEState, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        """Per-example negative ELBO (``loss``), its terms and, with ``iwae_k_train_eval = k > 0``,
        ``nll_iwae`` (-IWAE bound with k draws, whose mean reconstruction also estimates the ELBO),
        with the evaluation parameters (``updates.eval_metrics``)."""
        return updates.eval_metrics(
            state.eval_params, batch, key, model=self.model, likelihood=self.likelihood, hp=self.hp
        )

    def default_labels(self, num: int) -> jax.Array | None:
        """The engine's one default (``experiments.sampling.default_labels``: ``i % num_classes``)
        for a conditional VAE (else None)."""
        if not self.num_classes:
            return None
        return jnp.asarray(sampling.default_labels(num, self.num_classes))

    def sample(
        self, state: VAEState, key: jax.Array, num: int, labels: jax.Array | None = None
    ) -> jax.Array:
        """``num`` (a Python int) draws z ~ N(0, I) decoded to the likelihood's mean (an
        autoregressive decoder: ``autoregressive_means`` with pixel noise from ``key``), NHWC in
        [0, 1].

        A conditional VAE decodes with ``labels`` (``(num,)`` ints; default ``default_labels``); an
        unconditional one ignores them. Row ``i`` depends only on ``key``, ``i`` and its label.
        """
        if self.num_classes:
            labels = self.default_labels(num) if labels is None else jnp.asarray(labels, jnp.int32)
        else:
            labels = None
        z = rng.normal_per_example(rng.purpose_key(key, "prior"), (num, self.latent_dim))
        return self.decode_means(state.eval_params, z, labels, rng.purpose_key(key, "pixels"))

    def interpolations(self, params, x: jax.Array, labels=None, key=None) -> jax.Array:
        """Rows of ``GRID_STEPS`` images decoded along the straight line between the posterior means
        of examples ``i`` and ``n - 1 - i`` of ``x`` (``n`` examples; up to ``MAX_GRID_ROWS`` rows,
        pairing the two ends of the batch so that a batch spread over a class-sorted split pairs
        different classes; a conditional VAE keeps the label of the first of each pair; an
        autoregressive decoder samples every image with the same pixel noise from ``key``)."""
        pairs = min(MAX_GRID_ROWS, x.shape[0] // 2)
        mean, _ = self.encode(params, x, labels)
        start, end = mean[:pairs], mean[::-1][:pairs]
        t = jnp.linspace(0.0, 1.0, GRID_STEPS)[None, :, None]
        z = (1.0 - t) * start[:, None, :] + t * end[:, None, :]
        row_labels = None if labels is None else jnp.repeat(labels[:pairs], GRID_STEPS)
        return self.decode_means(
            params, z.reshape((pairs * GRID_STEPS, self.latent_dim)), row_labels, key, True
        )

    def traversals(self, params, x: jax.Array, labels=None, key=None) -> jax.Array:
        """Per-dimension traversals: row ``r`` varies latent ``j_r`` over [-3, 3] in ``GRID_STEPS``
        steps, the others fixed at the posterior mean of ``x[0]``; the rows are the
        ``min(MAX_GRID_ROWS, latent_dim)`` dimensions with the largest average KL on ``x`` (the
        ones the model uses), in decreasing order; ``key`` as in ``interpolations``."""
        rows = min(MAX_GRID_ROWS, self.latent_dim)
        mean, logvar = self.encode(params, x, labels)
        usage = jnp.mean(objectives.gaussian_kl_per_dim(mean, logvar), axis=0)
        _, dims = jax.lax.top_k(usage, rows)
        values = jnp.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, GRID_STEPS)
        z = jnp.broadcast_to(mean[0], (rows, GRID_STEPS, self.latent_dim))
        z = z.at[jnp.arange(rows)[:, None], jnp.arange(GRID_STEPS)[None, :], dims[:, None]].set(
            values[None, :]
        )
        row_labels = None if labels is None else jnp.full((rows * GRID_STEPS,), labels[0])
        return self.decode_means(
            params, z.reshape((rows * GRID_STEPS, self.latent_dim)), row_labels, key, True
        )

    def grids(self, state: VAEState, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        """``reconstructions``: the first up to 32 inputs of ``batch``, each followed by the mean
        decoded at its posterior mean (deterministic), as ``(2 * n, H, W, C)``; an even number of
        grid columns keeps each pair side by side. ``prior_samples``: 64 ``sample``s (a conditional
        VAE: ``SAMPLES_PER_CLASS`` per class, one row per class). ``interpolations`` (when the batch
        has two examples or more) and ``traversals``: ``GRID_STEPS`` images per row (see
        ``interpolations`` and ``traversals``)."""
        params, labels = state.eval_params, self.labels(batch)
        x = batch["x"][:NUM_RECONSTRUCTIONS]
        x_labels = None if labels is None else labels[:NUM_RECONSTRUCTIONS]
        mean, _ = self.encode(params, x, x_labels)
        pixels = rng.purpose_key(key, "pixels")
        reconstructions = self.decode_means(params, mean, x_labels, pixels, True)
        pairs = jnp.stack([x.astype(jnp.float32), reconstructions], axis=1)
        if self.num_classes:
            num = SAMPLES_PER_CLASS * self.num_classes
            prior = self.sample(state, key, num, jnp.arange(num) // SAMPLES_PER_CLASS)
        else:
            prior = self.sample(state, key, NUM_PRIOR_SAMPLES)
        outputs = {
            "reconstructions": pairs.reshape((2 * x.shape[0], *self.image_shape)),
            "prior_samples": prior,
            "traversals": self.traversals(params, batch["x"], labels, pixels),
        }
        if batch["x"].shape[0] >= 2:
            outputs["interpolations"] = self.interpolations(params, batch["x"], labels, pixels)
        return outputs

    # The family's own metric for ``experiments.evaluate --metrics``: the IWAE NLL and its terms.
    evaluation_metric_names = ("nll",)

    @property
    def evaluation_options(self) -> dict:
        """The options of ``evaluation_metrics`` with their defaults (``--family_options``)."""
        from vae_jax import evaluation

        return {
            "iwae_k": self.iwae_k_eval,
            "max_examples": 0,
            "batch_size": evaluation.DEFAULT_BATCH_SIZE,
        }

    def evaluation_metrics(
        self, state: VAEState, eval_source, key: jax.Array, options, placement=None
    ) -> dict:
        """Test-set IWAE NLL (k = ``options['iwae_k']``, default ``iwae_k_eval``) with its standard
        error, the ELBO and its terms, bits/dim; see ``vae_jax.evaluation.evaluation_metrics``."""
        from vae_jax import evaluation

        return evaluation.evaluation_metrics(self, state, eval_source, key, options, placement)


def make(config) -> VAEFamily:
    """The VAE family a config describes (see the module docstring for the keys). Missing
    ``config.model`` keys get their documented defaults and every key is checked
    (``vae_jax.config``)."""
    m = vae_config.model_config(config)
    likelihood = vae_config.make_likelihood(m)
    image_shape = tuple(int(d) for d in m.image_shape)
    model = networks.build_vae(
        encoder=m.encoder,
        image_shape=image_shape,
        latent_dim=int(m.latent_dim),
        activation=m.activation,
        hidden_widths=tuple(m.hidden_widths),
        conv_features=tuple(m.conv_features),
        hidden=int(m.hidden),
        kernel_init=m.kernel_init,
        params_per_channel=likelihood.params_per_channel,
        num_classes=int(m.num_classes),
        output_bias=m.output_bias_init != "none",
        autoregressive_kernel=int(m.autoregressive_kernel),
        autoregressive_features=int(m.autoregressive_features),
        autoregressive_layers=int(m.autoregressive_layers),
        dtype=precision.config_compute_dtype(config),
    )
    return VAEFamily(
        model,
        optim.make_optimizer(config.optimizer),
        image_shape=image_shape,
        likelihood=likelihood,
        hp=vae_config.hyperparameters(m),
    )
