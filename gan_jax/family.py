"""The GAN family: a generator and a discriminator updated alternately (see ``experiments.family``).

Config keys read (``gan_jax.defaults`` lists them all with their defaults):

``config.model``
    ``architecture`` (mlp | dcgan | resnet, see ``gan_jax.networks``); ``latent_dim``;
    ``image_size``, ``channels`` (image architectures) or ``data_dim`` (mlp);
    ``loss`` (a name in ``gan_jax.losses.LOSSES``);
    ``num_classes`` (> 0: conditional; ``generator.conditioning`` embedding | cbn and
    ``discriminator.conditioning`` projection | auxiliary must then be set), ``acgan_weight`` (the
    auxiliary classification loss's weight, D conditioning 'auxiliary');
    ``d_steps`` (D updates per G update), ``d_loop`` (``'unroll'``: the D updates as a Python
    loop, fastest on XLA:CPU; ``'scan'``: one ``lax.scan``, a program and compile time that do not
    grow with ``d_steps``, for accelerators), ``shared_fakes`` (the G update reuses the D update's
    fakes, see below), ``ema_decay`` and ``ema_start_step``, ``augment``
    (DiffAugment policy, ``gan_jax.augment``);
    ``generator`` / ``discriminator``: ``features``, ``weight_init``, ``activation`` (mlp), ``norm``,
    ``conditioning``, ``embedding_dim`` (G), ``sn_iterations`` (D);
    ``regularizers``: ``gradient_penalty``, ``gradient_penalty_one_sided``, ``r1``, ``r1_interval``,
    ``dragan``, ``dragan_scale``, ``weight_clip`` (``gan_jax.regularizers``).
``config.optimizer.generator`` / ``.discriminator``
    ``experiments.optim`` configs (any optimiser and schedule, separate learning rates: TTUR). The D
    optimiser's update count (its schedule's clock) advances ``d_steps`` times per train step.
``config.data.name``
    ``ring2d`` / ``grid2d`` turn on the toy metrics and scatter plots (``gan_jax.toy``).

One train step (one engine step) is ``d_steps`` D updates, then one G update, then the EMA update,
all in one compiled function (the D updates unrolled or scanned, ``d_loop``). The batch holds
``d_steps`` consecutive D batches: ``config.batch_size = d_steps * B``, and the G update uses B
latents. Each D update draws its own B latents; in it the fakes carry the real batch's labels (so
that interpolates of a gradient penalty share a label); the G update draws labels uniformly. With
``shared_fakes`` (``d_steps = 1``) the G update instead reuses the D update's latents, labels and G
forward pass (PyTorch's DCGAN example does this), and its gradient flows back through that pass:
one G forward pass less per step; G's batch statistics then come from that pass.

In a D update: the real pass runs D in train mode (batch norm on batch statistics, running averages
updated) and runs spectral normalisation's power iteration (once per D update, stored in the
state); the fake pass and the penalties use the updated vectors without iterating. Batch statistics
of D are updated by both passes (as PyTorch's DCGAN); G's by the G update's pass. The G update runs
D in train mode without keeping anything D updates. Gradient penalties (GP, R1, DRAGAN) need a D
that treats examples independently: they refuse ``discriminator.norm='batch'``. R1 with
``r1_interval = k > 1`` is computed only on every k-th D update (counted over the run), with weight
``k·γ/2`` (StyleGAN2's lazy regularisation); the logged ``r1_penalty`` is 0 on the others.

EMA (``ema_decay > 0``): after each step, ``experiments.ema`` (``ema_decay``, ``ema_start_step``,
``ema_warmup``) over G's parameters *and* its batch-norm running averages (as BigGAN's): a copy
until ``ema_start_step`` updates have been applied, then ``ema ← d·ema + (1 - d)·g``. Evaluation, grids and ``sample`` use the EMA generator when there is one.

Data: images arrive in [0, 1] and are mapped to [-1, 1], samples mapped back; 2-D points stay in raw
coordinates. Randomness derives from the step key with ``experiments.rng`` purposes
('d_step' + index, 'g_step', 'latent', 'labels', 'augment_*', 'gradient_penalty', 'dragan').
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from experiments import ema as ema_lib
from experiments import layers, optim, rng
from experiments.data import toy_modes
from experiments.data.embedded import TOY_2D_NAMES
from experiments.errors import ConfigError
from gan_jax import augment, losses, networks, regularizers, toy
from gan_jax.defaults import default_model_config

ARCHITECTURES = ("mlp", "dcgan", "resnet")
GRADIENT_PENALTIES = ("gradient_penalty", "r1", "dragan")
D_LOOPS = ("unroll", "scan")
TOY_PLOT_SAMPLES = 2500
MAX_CLASSES_IN_GRID = 16


@flax.struct.dataclass
class Network:
    """One network's parameters, other variable collections ('batch_stats', 'spectral') and
    optimiser state."""

    params: Any
    collections: Any
    opt_state: Any

    def variables(self) -> dict:
        return {"params": self.params, **self.collections}


@flax.struct.dataclass
class GANState:
    step: jax.Array
    generator: Network
    discriminator: Network
    ema: Any  # EMA of the generator's variables ({'params', 'batch_stats'}); None when off


def run(module: nn.Module, params, collections: dict, *args, mutable: bool, **kwargs):
    """``(outputs, collections)`` of ``module.apply``; with ``mutable`` the non-parameter collections
    may change (batch norm in train mode, spectral-norm updates) and their new values are returned."""
    variables = {"params": params, **collections}
    if not (mutable and collections):
        return module.apply(variables, *args, **kwargs), collections
    outputs, updates = module.apply(variables, *args, mutable=list(collections), **kwargs)
    return outputs, {**collections, **updates}


def mean_metrics(metrics: dict) -> dict:
    return {name: jnp.mean(value).astype(jnp.float32) for name, value in metrics.items()}


class GANFamily:
    """The ``experiments.family.Family`` functions of one GAN config (see the module docstring)."""

    def __init__(self, config):
        model = config.model
        check_config(config)
        self.architecture = model.architecture
        self.latent_dim = model.latent_dim
        self.is_image = model.architecture != "mlp"
        if self.is_image:
            self.data_shape = (model.image_size, model.image_size, model.channels)
        else:
            self.data_shape = (model.data_dim,)
        self.num_classes = model.num_classes
        self.conditional = model.num_classes > 0
        self.auxiliary = model.discriminator.conditioning == "auxiliary"
        self.acgan_weight = model.acgan_weight
        self.d_steps = model.d_steps
        self.shared_fakes = model.shared_fakes
        self.d_loop = model.d_loop
        self.ema_decay = model.ema_decay
        self.ema_start_step = model.ema_start_step
        self.ema_warmup = bool(model.ema_warmup)
        self.augment_policy = augment.parse_policy(model.augment)
        self.regularizers = model.regularizers
        self.loss = losses.get_loss(model.loss)
        self.generator, self.discriminator = networks.build_networks(model)
        self.g_optimizer = optim.make_optimizer(config.optimizer.generator)
        self.d_optimizer = optim.make_optimizer(config.optimizer.discriminator)
        self.toy = None
        if config.data.name in TOY_2D_NAMES:
            self.toy = toy_modes(config.data.name)

    # -- pieces ------------------------------------------------------------------------------------

    def latents(self, key: jax.Array, num: int) -> jax.Array:
        return rng.normal_per_example(rng.purpose_key(key, "latent"), (num, self.latent_dim))

    def sample_labels(self, key: jax.Array, num: int) -> jax.Array | None:
        """Labels drawn uniformly, one per example from its own key (None when unconditional)."""
        if not self.conditional:
            return None
        keys = rng.example_keys(rng.purpose_key(key, "labels"), num)
        return jax.vmap(lambda k: jax.random.randint(k, (), 0, self.num_classes))(keys)

    def preprocess(self, x: jax.Array) -> jax.Array:
        return x * 2.0 - 1.0 if self.is_image else x

    def postprocess(self, x: jax.Array) -> jax.Array:
        return (x + 1.0) / 2.0 if self.is_image else x

    def _augment(self, x: jax.Array, key: jax.Array) -> jax.Array:
        return augment.diff_augment(x, key, self.augment_policy)

    def _discriminate(self, params, collections, x, labels, *, train, update):
        """``((logits, class_logits), collections)`` of D."""
        return run(
            self.discriminator,
            params,
            collections,
            x,
            labels,
            train=train,
            update_stats=update,
            mutable=train or update,
        )

    def _generate(self, state: GANState, z: jax.Array, labels) -> jax.Array:
        variables = state.ema if state.ema is not None else state.generator.variables()
        return self.generator.apply(variables, z, labels, train=False)

    # -- the Family interface ----------------------------------------------------------------------

    def init_state(self, key, example_batch) -> GANState:
        shape = tuple(example_batch["x"].shape[1:])
        if shape != self.data_shape:
            keys = "model.image_size and model.channels" if self.is_image else "model.data_dim"
            raise ConfigError(
                f"the data have examples of shape {shape} but the model makes {self.data_shape}: "
                f"set {keys} to match"
            )
        if self.conditional and "label" not in example_batch:
            raise ConfigError(
                f"model.num_classes={self.num_classes} (a conditional GAN) but the data have no labels"
            )
        labels = jnp.zeros((2,), jnp.int32) if self.conditional else None
        g_vars = self.generator.init(
            rng.purpose_key(key, "generator"), jnp.zeros((2, self.latent_dim)), labels
        )
        d_vars = self.discriminator.init(
            rng.purpose_key(key, "discriminator"), jnp.zeros((2, *self.data_shape)), labels
        )

        def network(variables, optimizer):
            params = variables["params"]
            collections = {name: value for name, value in variables.items() if name != "params"}
            return Network(params, collections, optimizer.init(params))

        generator = network(g_vars, self.g_optimizer)
        return GANState(
            step=jnp.zeros((), jnp.int32),
            generator=generator,
            discriminator=network(d_vars, self.d_optimizer),
            ema=generator.variables() if self.ema_decay > 0 else None,
        )

    def train_step(self, state: GANState, batch, key):
        real = self.preprocess(batch["x"])
        per_update = real.shape[0] // self.d_steps
        real = real.reshape(self.d_steps, per_update, *real.shape[1:])
        labels = None
        if self.conditional:
            labels = batch["label"].reshape(self.d_steps, per_update)
        g = state.generator
        d_key = rng.purpose_key(key, "d_step")

        if self.d_loop == "scan" and self.d_steps > 1:
            d, d_metrics = self._d_updates_scanned(g, state, real, labels, d_key)
            shared = None
        else:
            d, d_metrics, shared = self._d_updates_unrolled(g, state, real, labels, d_key)
        g_key = rng.purpose_key(key, "g_step")
        if shared is None:
            g, g_metrics = self._g_update(g, d, per_update, g_key)
        else:
            g, g_metrics = self._g_update_shared(g, d, *shared, g_key)
        step = state.step + 1
        ema = self._update_ema(state.ema, g, step)
        metrics = {**mean_metrics(d_metrics), **mean_metrics(g_metrics)}
        return GANState(step=step, generator=g, discriminator=d, ema=ema), metrics

    def _d_updates_unrolled(self, g: Network, state: GANState, real, labels, d_key):
        """The ``d_steps`` D updates as a Python loop: ``(d, stacked metrics, shared)`` where
        ``shared`` is ``(generate_with_vjp output, labels)`` of the last update with
        ``shared_fakes`` (else None). XLA:CPU runs some convolutions (the strided convolution's
        kernel gradient among them) on a slow generic path inside a loop body, so this is the
        default; its cost is a program (and a compile time) that grows with ``d_steps``."""
        d, d_metrics, shared, labels_i = state.discriminator, [], None, None
        per_update = real.shape[1]
        for index in range(self.d_steps):
            labels_i = None if labels is None else labels[index]
            count, d_key_i = self._d_update_clock(state, d_key, index)
            fake = None
            if self.shared_fakes:
                shared = self._generate_with_vjp(g, d_key_i, per_update, labels_i)
                fake = shared[0]
            d, metrics_i = self._d_update(g, d, real[index], labels_i, d_key_i, count, fake)
            d_metrics.append(metrics_i)
        d_metrics = jax.tree.map(lambda *values: jnp.stack(values), *d_metrics)
        return d, d_metrics, None if shared is None else (shared, labels_i)

    def _d_update_clock(self, state: GANState, d_key, index):
        """``(count, key)`` of the step's D update ``index`` (a Python or traced int): its number
        over the run (the lazy-R1 clock) and its key ``fold_in(d_key, index)``."""
        return state.step * self.d_steps + index, jax.random.fold_in(d_key, index)

    def _d_updates_scanned(self, g: Network, state: GANState, real, labels, d_key):
        """The ``d_steps`` D updates as one ``lax.scan`` (``model.d_loop='scan'``): the same
        updates, keys and counts as ``_d_updates_unrolled``, in a program the size of one update
        (compile time independent of ``d_steps``; the choice for accelerators)."""

        def one_update(d, inputs):
            index, real_i, labels_i = inputs
            count, d_key_i = self._d_update_clock(state, d_key, index)
            return self._d_update(g, d, real_i, labels_i, d_key_i, count)

        indices = jnp.arange(self.d_steps, dtype=jnp.int32)
        return jax.lax.scan(one_update, state.discriminator, (indices, real, labels))

    def _generate_with_vjp(self, g: Network, key, num: int, labels):
        """``(fake, vjp, collections)``: G's train-mode forward pass on the D update's latents, its
        VJP with respect to G's parameters, and G's updated batch statistics."""

        def generate(params):
            return run(self.generator, params, g.collections, z, labels, train=True, mutable=True)

        z = self.latents(key, num)
        fake, vjp, collections = jax.vjp(generate, g.params, has_aux=True)
        return fake, vjp, collections

    def _d_update(self, g: Network, d: Network, real, labels, key, count, fake=None):
        if fake is None:
            z = self.latents(key, real.shape[0])
            fake, _ = run(
                self.generator, g.params, g.collections, z, labels, train=True, mutable=True
            )
        fake = jax.lax.stop_gradient(fake)
        real = self._augment(real, rng.purpose_key(key, "augment_real"))
        fake = self._augment(fake, rng.purpose_key(key, "augment_fake"))
        reg = self.regularizers

        def loss_fn(params, with_r1: bool):
            (real_logits, real_classes), collections = self._discriminate(
                params, d.collections, real, labels, train=True, update=True
            )
            (fake_logits, fake_classes), collections = self._discriminate(
                params, collections, fake, labels, train=True, update=False
            )
            adversarial = self.loss.discriminator(real_logits, fake_logits)
            total, terms = adversarial, {"d_adversarial_loss": adversarial}

            def critic(x):
                outputs, _ = self._discriminate(
                    params, collections, x, labels, train=False, update=False
                )
                return outputs[0]

            if self.auxiliary:
                aux = losses.auxiliary_classifier(real_classes, labels)
                aux += losses.auxiliary_classifier(fake_classes, labels)
                total += self.acgan_weight * aux
                terms["d_aux_loss"] = aux
            if reg.gradient_penalty > 0:
                penalty = regularizers.gradient_penalty(
                    critic,
                    real,
                    fake,
                    rng.purpose_key(key, "gradient_penalty"),
                    one_sided=reg.gradient_penalty_one_sided,
                )
                total += reg.gradient_penalty * penalty
                terms["gradient_penalty"] = penalty
            if reg.dragan > 0:
                penalty = regularizers.dragan_penalty(
                    critic, real, rng.purpose_key(key, "dragan"), scale=reg.dragan_scale
                )
                total += reg.dragan * penalty
                terms["dragan_penalty"] = penalty
            if reg.r1 > 0:
                penalty = regularizers.r1_penalty(critic, real) if with_r1 else jnp.zeros(())
                total += 0.5 * reg.r1 * reg.r1_interval * penalty
                terms["r1_penalty"] = penalty
            outputs = (real_logits, fake_logits, real_classes)
            return total, (collections, outputs, terms)

        def gradients(with_r1: bool):
            return jax.value_and_grad(functools.partial(loss_fn, with_r1=with_r1), has_aux=True)(
                d.params
            )

        if reg.r1 > 0 and reg.r1_interval > 1:
            due = count % reg.r1_interval == 0
            (loss, aux), grads = jax.lax.cond(
                due, lambda: gradients(True), lambda: gradients(False)
            )
        else:
            (loss, aux), grads = gradients(True)
        collections, (real_logits, fake_logits, real_classes), terms = aux
        updates, opt_state = self.d_optimizer.update(grads, d.opt_state, d.params)
        params = optax.apply_updates(d.params, updates)
        if reg.weight_clip > 0:
            params = regularizers.clip_weights(params, reg.weight_clip)
        metrics = {
            "d_loss": loss,
            **terms,
            "d_real": jax.nn.sigmoid(real_logits),
            "d_fake": jax.nn.sigmoid(fake_logits),
            "d_real_logit": real_logits,
            "d_fake_logit": fake_logits,
            "d_grad_norm": optax.tree.norm(grads),
        }
        if self.auxiliary:
            metrics["d_aux_accuracy"] = (jnp.argmax(real_classes, -1) == labels).astype(jnp.float32)
        return Network(params, collections, opt_state), mean_metrics(metrics)

    def _g_update(self, g: Network, d: Network, num: int, key):
        z = self.latents(key, num)
        labels = self.sample_labels(key, num)

        def loss_fn(params):
            fake, collections = run(
                self.generator, params, g.collections, z, labels, train=True, mutable=True
            )
            fake = self._augment(fake, rng.purpose_key(key, "augment"))
            loss, terms = self._g_loss(d, fake, labels)
            return loss, (collections, terms)

        (loss, (collections, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
        return self._apply_g_gradients(g, grads, collections, loss, terms)

    def _g_update_shared(self, g: Network, d: Network, shared, labels, key):
        """The G update on the D update's fakes and labels (``model.shared_fakes``): the gradient
        flows back through the forward pass the D update made, as PyTorch's DCGAN example does."""
        fake, vjp, collections = shared

        def loss_of_fake(fake):
            augmented = self._augment(fake, rng.purpose_key(key, "augment"))
            return self._g_loss(d, augmented, labels)

        (loss, terms), fake_grad = jax.value_and_grad(loss_of_fake, has_aux=True)(fake)
        (grads,) = vjp(fake_grad)
        return self._apply_g_gradients(g, grads, collections, loss, terms)

    def _g_loss(self, d: Network, fake, labels):
        (logits, classes), _ = self._discriminate(
            d.params, d.collections, fake, labels, train=True, update=False
        )
        adversarial = self.loss.generator(logits)
        loss, terms = adversarial, {}
        if self.auxiliary:
            aux = losses.auxiliary_classifier(classes, labels)
            loss += self.acgan_weight * aux
            terms = {"g_adversarial_loss": adversarial, "g_aux_loss": aux}
        return loss, terms

    def _apply_g_gradients(self, g: Network, grads, collections, loss, terms):
        updates, opt_state = self.g_optimizer.update(grads, g.opt_state, g.params)
        g = Network(optax.apply_updates(g.params, updates), collections, opt_state)
        return g, {"g_loss": loss, **terms, "g_grad_norm": optax.tree.norm(grads)}

    def _update_ema(self, ema, g: Network, step: jax.Array):
        return ema_lib.update(
            ema, g.variables(), step, self.ema_decay, self.ema_start_step, self.ema_warmup
        )

    def eval_step(self, state: GANState, batch, key):
        real = self.preprocess(batch["x"])
        num = real.shape[0]
        labels = batch["label"] if self.conditional else None
        fake_labels = self.sample_labels(key, num)
        fake = self._generate(state, self.latents(key, num), fake_labels)
        d = state.discriminator

        def discriminate(x, y):
            outputs, _ = self._discriminate(
                d.params, d.collections, x, y, train=False, update=False
            )
            return outputs

        real_logits, real_classes = discriminate(real, labels)
        fake_logits, fake_classes = discriminate(fake, fake_labels)
        metrics = {
            "d_real": jax.nn.sigmoid(real_logits),
            "d_fake": jax.nn.sigmoid(fake_logits),
            "d_real_logit": real_logits,
            "d_fake_logit": fake_logits,
            "d_accuracy": 0.5 * ((real_logits > 0).astype(jnp.float32) + (fake_logits < 0)),
        }
        if self.auxiliary:
            metrics["aux_accuracy_real"] = jnp.argmax(real_classes, -1) == labels
            metrics["aux_accuracy_fake"] = jnp.argmax(fake_classes, -1) == fake_labels
        if self.toy is not None:
            metrics.update(toy.eval_metrics(fake, *self.toy))
        return {name: value.astype(jnp.float32) for name, value in metrics.items()}

    def summarize_eval(self, averages: dict[str, float]) -> dict[str, float]:
        """Toy data: ``modes_covered`` and ``high_quality_fraction`` (see ``gan_jax.toy``)."""
        if self.toy is None:
            return {}
        return toy.summarize(averages, len(self.toy[0]))

    def sample(self, state: GANState, key, num: int, labels=None):
        """``num`` samples of the (EMA) generator, each from its own latent (``fold_in(key, i)``).

        Conditional models use ``labels`` ((num,) int32) or, when None, ``sample_labels(key, num)``;
        unconditional ones ignore ``labels``."""
        if not self.conditional:
            labels = None
        elif labels is None:
            labels = self.sample_labels(key, num)
        return self.postprocess(self._generate(state, self.latents(key, num), labels))

    def grids(self, state: GANState, batch, key):
        """``samples``: for images, one sample per grid example (conditional: C x C samples, row r of
        class r, for up to 16 classes); for 2-D toys, a scatter plot of 2500 samples over the modes."""
        if self.toy is not None:
            points = self.sample(state, key, TOY_PLOT_SAMPLES)
            return {"samples": toy.scatter_plot(points, *self.toy)}
        num, labels = batch["x"].shape[0], None
        if self.conditional and self.num_classes <= MAX_CLASSES_IN_GRID:
            num = self.num_classes**2
            labels = jnp.arange(num, dtype=jnp.int32) // self.num_classes
        return {"samples": self.sample(state, key, num, labels)}


def check_config(config) -> None:
    """ConfigError for a config the family cannot train (one line each, naming the key)."""
    model = config.model
    g, d, reg = model.generator, model.discriminator, model.regularizers

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    def choice(key: str, value, choices) -> None:
        require(value in choices, f"config.{key}={value!r}; expected one of {list(choices)}")

    choice("model.architecture", model.architecture, ARCHITECTURES)
    choice("model.loss", model.loss, sorted(losses.LOSSES))
    for name, net in (("generator", g), ("discriminator", d)):
        choice(f"model.{name}.weight_init", net.weight_init, sorted(layers.INITIALIZERS))
        if model.architecture == "mlp":
            choice(f"model.{name}.activation", net.activation, sorted(layers.ACTIVATIONS))
        require(len(net.features) > 0, f"config.model.{name}.features is empty")
    choice("model.discriminator.norm", d.norm, networks.D_NORMS[model.architecture])
    g_norms = {"mlp": ("none", "batch"), "dcgan": ("batch", "none"), "resnet": ("batch",)}
    choice("model.generator.norm", g.norm, g_norms[model.architecture])
    choice("model.generator.conditioning", g.conditioning, networks.G_CONDITIONINGS)
    choice("model.discriminator.conditioning", d.conditioning, networks.D_CONDITIONINGS)
    if model.num_classes > 0:
        require(
            g.conditioning != "none" and d.conditioning != "none",
            f"config.model.num_classes={model.num_classes} (conditional) needs "
            "model.generator.conditioning (embedding | cbn) and model.discriminator.conditioning "
            "(projection | auxiliary)",
        )
    else:
        require(
            g.conditioning == "none" and d.conditioning == "none",
            "model.generator/discriminator.conditioning need config.model.num_classes > 0",
        )
    if g.conditioning == "cbn":
        require(
            model.architecture != "mlp" and g.norm == "batch",
            "model.generator.conditioning='cbn' needs batch norm in G (dcgan or resnet, norm='batch')",
        )
    is_toy = config.data.name in TOY_2D_NAMES
    require(
        (model.architecture == "mlp") == is_toy,
        f"config.data.name={config.data.name!r} needs model.architecture="
        f"{'mlp' if is_toy else 'dcgan or resnet'}",
    )
    require(model.d_steps >= 1, "config.model.d_steps must be >= 1")
    require(
        model.d_loop in D_LOOPS,
        f"config.model.d_loop={model.d_loop!r}; expected one of {D_LOOPS}",
    )
    require(
        not (model.shared_fakes and model.d_loop == "scan"),
        "config.model.shared_fakes needs model.d_loop='unroll'",
    )
    require(
        not (model.shared_fakes and model.d_steps != 1),
        f"config.model.shared_fakes needs model.d_steps=1 (got {model.d_steps})",
    )
    require(
        config.batch_size % model.d_steps == 0,
        f"config.batch_size={config.batch_size} must be a multiple of model.d_steps="
        f"{model.d_steps} (the batch holds d_steps D batches)",
    )
    problem = ema_lib.check(model.ema_decay, model.ema_start_step)
    require(problem is None, problem or "")
    require(reg.r1_interval >= 1, "config.model.regularizers.r1_interval must be >= 1")
    require(reg.weight_clip >= 0, "config.model.regularizers.weight_clip must be >= 0")
    penalties = [name for name in GRADIENT_PENALTIES if reg[name] > 0]
    require(
        not (penalties and d.norm == "batch"),
        f"regularizers {penalties} need a discriminator that treats examples independently; "
        "set model.discriminator.norm to 'none' or 'spectral' (WGAN-GP drops batch norm from D)",
    )
    try:
        augment.parse_policy(model.augment)
    except ValueError as error:
        raise ConfigError(f"config.model.augment: {error}") from error
    require(
        not (model.augment and model.architecture == "mlp"),
        "config.model.augment (DiffAugment) needs image data",
    )
    if model.architecture != "mlp":
        num_doublings = len(g.features)
        base = model.image_size // 2**num_doublings
        require(
            base >= 1 and base * 2**num_doublings == model.image_size,
            f"config.model.image_size={model.image_size} must be a multiple of "
            f"2**len(model.generator.features) = {2**num_doublings}",
        )


def with_model_defaults(config) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``model`` has every key of ``gan_jax.defaults``: a workdir written
    before a key existed gets the key's default, which is the behaviour it was trained with."""
    completed = ml_collections.ConfigDict(config.to_dict())
    model = default_model_config()
    model.update(config.model.to_dict())
    completed.model = model
    return completed


def make(config) -> GANFamily:
    return GANFamily(with_model_defaults(config))
