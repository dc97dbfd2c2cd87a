"""The VAE family: Gaussian-latent VAEs (β-VAE, KL warm-up, free bits, IWAE, conditional) trained on
the ELBO or the importance-weighted bound, with a Bernoulli, Gaussian or discretised-logistic
likelihood.

``make(config) -> VAEFamily`` implements ``experiments.family.Family`` (plus the optional
``evaluation_metrics`` of ``experiments.evaluate``). The model is Kingma & Welling (2014): q(z | x) =
N(mean(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x | z) from the decoder; reparameterised
posterior draws, analytic KL.

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
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from experiments import ema as ema_lib
from experiments import optim, rng
from experiments.errors import ConfigError
from vae_jax import likelihoods, networks, objectives
from vae_jax.defaults import default_model_config

OBJECTIVES = ("elbo", "iwae")
OUTPUT_BIAS_INITS = ("data_mean", "zeros", "none")
NUM_RECONSTRUCTIONS = 32  # inputs shown (each next to its reconstruction) in the grid
NUM_PRIOR_SAMPLES = 64
SAMPLES_PER_CLASS = 10  # conditional prior-sample grid: one row per class
GRID_STEPS = 10  # images per interpolation / traversal row
MAX_GRID_ROWS = 10  # interpolation pairs and traversed dimensions
TRAVERSAL_RANGE = 3.0  # traversals sweep z_j over [-3, 3]

__all__ = ["VAEFamily", "VAEState", "default_model_config", "make"]


@struct.dataclass
class VAEState:
    """The whole train state: one pytree."""

    step: jax.Array  # int32 scalar: updates applied so far
    params: Any
    opt_state: Any
    ema_params: Any  # the EMA of params, or None when ema_decay == 0

    @property
    def eval_params(self):
        """The parameters eval, samples, grids and evaluation use: the EMA when one is kept."""
        return self.params if self.ema_params is None else self.ema_params


class VAEFamily:
    """The functions of ``experiments.family.Family`` for one VAE config.

    Holds only static things (the Flax module, the optax transformation, the likelihood, shapes and
    weights); all mutable quantities live in ``VAEState``.
    """

    def __init__(
        self,
        model: networks.VAE,
        optimizer: optax.GradientTransformation,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        likelihood: likelihoods.Likelihood | None = None,
        num_classes: int = 0,
        objective: str = "elbo",
        num_samples: int = 1,
        kl_weight: float = 1.0,
        kl_warmup_steps: int = 0,
        kl_warmup_start: float = 0.0,
        kl_warmup_shape: str = "linear",
        free_bits: float = 0.0,
        ema_decay: float = 0.0,
        ema_start_step: int = 0,
        ema_warmup: bool = True,
        output_bias_init: str = "data_mean",
        iwae_k_train_eval: int = 0,
        iwae_k_eval: int = 5000,
    ):
        self.model = model
        self.optimizer = optimizer
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood or likelihoods.Bernoulli()
        self.num_classes = num_classes
        self.objective = objective
        self.num_samples = num_samples
        self.kl_weight = kl_weight
        self.kl_warmup_steps = kl_warmup_steps
        self.kl_warmup_start = kl_warmup_start
        self.kl_warmup_shape = kl_warmup_shape
        self.free_bits = free_bits
        self.ema_decay = ema_decay
        self.ema_start_step = ema_start_step
        self.ema_warmup = ema_warmup
        self.output_bias_init = output_bias_init
        self.iwae_k_train_eval = iwae_k_train_eval
        self.iwae_k_eval = iwae_k_eval

    @property
    def conditional(self) -> bool:
        """Whether samples take labels (``experiments.evaluate``'s ``acc`` and ``ifid`` need it)."""
        return self.num_classes > 0

    # -- pieces ------------------------------------------------------------------------------------

    def labels(self, batch: dict) -> jax.Array | None:
        """The batch's labels for a conditional VAE (None for an unconditional one)."""
        if not self.num_classes:
            return None
        if "label" not in batch:
            raise ConfigError(
                f"config.model.num_classes={self.num_classes} (a conditional VAE) but the data has "
                "no 'label'"
            )
        return batch["label"]

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
        """The posterior ``(mean, logvar)`` of ``x``."""
        return self.model.apply({"params": params}, x, labels, method=networks.VAE.encode)

    def context(self, params, x: jax.Array, repeats: int = 1) -> jax.Array | None:
        """The autoregressive decoder's causal context of ``x`` (None for a plain decoder); what
        ``decode`` needs to score ``x``. It is computed once per image and each row is repeated
        ``repeats`` times (``jnp.repeat``), for ``repeats`` latents scored per image."""
        if not self.autoregressive:
            return None
        context = self.model.apply({"params": params}, x, method=networks.VAE.context)
        return context if repeats == 1 else jnp.repeat(context, repeats, axis=0)

    def decode(self, params, z: jax.Array, labels=None, context=None) -> jax.Array:
        """The decoder output (the likelihood's parameters) at latents ``z``; an autoregressive
        decoder also needs the ``context`` of the images it scores (one row per row of ``z``)."""
        return self.model.apply({"params": params}, z, labels, context, method=networks.VAE.decode)

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

    def kl_weight_at(self, step: jax.Array | int) -> jax.Array:
        """β at update ``step`` (``objectives.kl_weight_schedule`` with this config's settings)."""
        return objectives.kl_weight_schedule(
            step,
            weight=self.kl_weight,
            warmup_steps=self.kl_warmup_steps,
            start=self.kl_warmup_start,
            shape=self.kl_warmup_shape,
        )

    def posterior_draws(self, params, x: jax.Array, labels, key: jax.Array, k: int):
        """``k`` reparameterised draws per example and their decoder log-likelihoods.

        Returns ``(log_px_given_z (batch, k), z (batch, k, d), mean, logvar)``; the noise of example
        ``i`` comes from ``fold_in(purpose_key(key, 'posterior'), i)``.
        """
        batch = x.shape[0]
        mean, logvar = self.encode(params, x, labels)
        eps = rng.normal_per_example(
            rng.purpose_key(key, "posterior"), (batch, k, self.latent_dim), mean.dtype
        )
        z = mean[:, None, :] + jnp.exp(0.5 * logvar)[:, None, :] * eps
        flat_labels = None if labels is None else jnp.repeat(labels, k, axis=0)
        context = self.context(params, x, repeats=k)
        output = self.decode(params, z.reshape((batch * k, self.latent_dim)), flat_labels, context)
        log_px = self.likelihood.log_prob(output, jnp.repeat(x, k, axis=0)).reshape((batch, k))
        return log_px, z, mean, logvar

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
        if self.output_bias_init == "data_mean":
            params = self.init_output_bias(params, x)
        return VAEState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.optimizer.init(params),
            ema_params=params if self.ema_decay > 0 else None,
        )

    def train_step(self, state: VAEState, batch: dict, key: jax.Array):
        x, labels = batch["x"], self.labels(batch)
        beta = self.kl_weight_at(state.step)

        def loss_fn(params):
            log_px, z, mean, logvar = self.posterior_draws(params, x, labels, key, self.num_samples)
            kl_per_dim = objectives.gaussian_kl_per_dim(mean, logvar)
            kl = jnp.sum(kl_per_dim, axis=1)
            reconstruction = -jnp.mean(log_px, axis=1)
            aux = {"reconstruction": reconstruction, "kl": kl}
            if self.objective == "iwae":
                log_w = objectives.importance_log_weights(log_px, z, mean, logvar, beta)
                bound = objectives.iwae_bound(log_w)
                aux["iwae_bound"] = bound
                return -jnp.mean(bound), aux
            if self.free_bits > 0:
                kl_term = objectives.free_bits_kl(kl_per_dim, self.free_bits)
            else:
                kl_term = jnp.mean(kl)
            return jnp.mean(reconstruction) + beta * kl_term, aux

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = self.updated_ema(state.ema_params, params, state.step)
        metrics = {
            "loss": loss,
            "elbo": -jnp.mean(aux["reconstruction"] + aux["kl"]),
            "reconstruction": jnp.mean(aux["reconstruction"]),
            "kl": jnp.mean(aux["kl"]),
            "kl_weight": beta,
            "grad_norm": optax.tree.norm(grads),
        }
        if "iwae_bound" in aux:
            metrics["iwae_bound"] = jnp.mean(aux["iwae_bound"])
        metrics = {name: value.astype(jnp.float32) for name, value in metrics.items()}
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params
        )
        return new_state, metrics

    def updated_ema(self, ema_params, params, step: jax.Array):
        """The EMA after the update that follows ``step`` updates (``experiments.ema``). None with
        ``ema_decay == 0``: the state then keeps no second copy of the parameters, which each step
        had to write (``bench/vae_mlp``: 0.05-0.5 ms of a 5 ms step, alternating in one process)."""
        if self.ema_decay == 0:
            return None
        return ema_lib.update(
            ema_params, params, step + 1, self.ema_decay, self.ema_start_step, self.ema_warmup
        )

    def eval_step(self, state: VAEState, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        """Per-example negative ELBO (``loss``), its terms and, with ``iwae_k_train_eval = k > 0``,
        ``nll_iwae`` (-IWAE bound with k draws, whose mean reconstruction also estimates the ELBO)."""
        x, labels = batch["x"], self.labels(batch)
        k = max(1, self.iwae_k_train_eval)
        log_px, z, mean, logvar = self.posterior_draws(state.eval_params, x, labels, key, k)
        reconstruction = -jnp.mean(log_px, axis=1)
        kl = objectives.gaussian_kl(mean, logvar)
        metrics = {
            "loss": reconstruction + kl,
            "elbo": -(reconstruction + kl),
            "reconstruction": reconstruction,
            "kl": kl,
        }
        if self.iwae_k_train_eval > 0:
            log_w = objectives.importance_log_weights(log_px, z, mean, logvar)
            metrics["nll_iwae"] = -objectives.iwae_bound(log_w)
        return {name: value.astype(jnp.float32) for name, value in metrics.items()}

    def default_labels(self, num: int) -> jax.Array | None:
        """Labels ``0, 1, ..., num_classes - 1, 0, 1, ...`` for a conditional VAE (else None)."""
        if not self.num_classes:
            return None
        return jnp.arange(num, dtype=jnp.int32) % self.num_classes

    def sample_labels(self, key: jax.Array, num: int) -> jax.Array | None:
        """``num`` uniform class labels, label ``i`` from ``fold_in(key, i)`` (``experiments.sample``
        draws them when given none); None for an unconditional VAE."""
        if not self.num_classes:
            return None
        keys = rng.example_keys(key, num)
        draw = lambda k: jax.random.randint(k, (), 0, self.num_classes, jnp.int32)
        return jax.vmap(draw)(keys)

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

    def evaluation_metrics(self, state: VAEState, eval_source, key: jax.Array, options) -> dict:
        """Test-set IWAE NLL (k = ``options['iwae_k']``, default ``iwae_k_eval``) with its standard
        error, the ELBO and its terms, bits/dim; see ``vae_jax.evaluation.evaluation_metrics``."""
        from vae_jax import evaluation

        return evaluation.evaluation_metrics(self, state, eval_source, key, options)


def make(config) -> VAEFamily:
    """The VAE family a config describes (see the module docstring for the keys)."""
    # A workdir written before a key existed gets the key's documented default, which is the
    # behaviour it was trained with (the same policy as the GAN family).
    m = default_model_config()
    m.update(config.model.to_dict())
    try:
        likelihood = likelihoods.make_likelihood(
            m.likelihood,
            gaussian_scale=float(m.gaussian_scale),
            learn_scale=bool(m.learn_scale),
            num_bins=int(m.num_bins),
        )
        objectives.kl_weight_schedule(0, shape=m.kl_warmup_shape)
    except ValueError as error:
        raise ConfigError(f"config.model: {error}") from error
    checks = [
        (m.objective in OBJECTIVES, f"objective={m.objective!r}; expected one of {OBJECTIVES}"),
        (int(m.num_samples) >= 1, f"num_samples must be >= 1; got {m.num_samples}"),
        (float(m.kl_weight) >= 0, f"kl_weight must be >= 0; got {m.kl_weight}"),
        (int(m.kl_warmup_steps) >= 0, f"kl_warmup_steps must be >= 0; got {m.kl_warmup_steps}"),
        (float(m.free_bits) >= 0, f"free_bits must be >= 0; got {m.free_bits}"),
        (
            float(m.free_bits) == 0 or m.objective == "elbo",
            "free_bits applies to the elbo objective only",
        ),
        (0 <= float(m.ema_decay) < 1, f"ema_decay must be in [0, 1); got {m.ema_decay}"),
        (int(m.ema_start_step) >= 0, f"ema_start_step must be >= 0; got {m.ema_start_step}"),
        (
            m.output_bias_init in OUTPUT_BIAS_INITS,
            f"output_bias_init={m.output_bias_init!r}; expected one of {OUTPUT_BIAS_INITS}",
        ),
        (int(m.iwae_k_train_eval) >= 0, "iwae_k_train_eval must be >= 0"),
        (int(m.iwae_k_eval) >= 1, "iwae_k_eval must be >= 1"),
        (
            not int(m.autoregressive_kernel) or m.likelihood == "bernoulli",
            "autoregressive_kernel needs likelihood='bernoulli' (its sampler draws binary pixels)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"config.model.{message}")
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
    )
    return VAEFamily(
        model,
        optim.make_optimizer(config.optimizer),
        image_shape=image_shape,
        latent_dim=int(m.latent_dim),
        likelihood=likelihood,
        num_classes=int(m.num_classes),
        objective=m.objective,
        num_samples=int(m.num_samples),
        kl_weight=float(m.kl_weight),
        kl_warmup_steps=int(m.kl_warmup_steps),
        kl_warmup_start=float(m.kl_warmup_start),
        kl_warmup_shape=m.kl_warmup_shape,
        free_bits=float(m.free_bits),
        ema_decay=float(m.ema_decay),
        ema_start_step=int(m.ema_start_step),
        ema_warmup=bool(m.ema_warmup),
        output_bias_init=m.output_bias_init,
        iwae_k_train_eval=int(m.iwae_k_train_eval),
        iwae_k_eval=int(m.iwae_k_eval),
    )
