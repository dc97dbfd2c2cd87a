"""The GAN's update rules as pure functions: a discriminator (D) update, a generator (G) update and
the losses they minimise, usable without ``gan_jax.family.GANFamily``.

A hybrid family (a VAE-GAN, an adversarial autoencoder) trains a GAN discriminator on fakes of its
own (decoder outputs, encoder codes) with ``d_update`` and adds ``generator_loss`` to its own
objective; ``GANFamily`` wires the same functions into the GAN's train step (``gan_update``).

Contract
--------
``Network``
    One network's parameters, other variable collections (``'batch_stats'``, ``'spectral'``) and
    optimiser state; a pytree.
``GANNets`` (static: close over it, or pass it as a keyword argument under ``functools.partial``)
    The Flax modules, the optax transformations and the generator's input sizes. The D update reads
    only ``discriminator`` and ``d_optimizer``; ``generator``, ``g_optimizer``, ``latent_dim`` and
    ``num_classes`` may be left out (None, 0) by a family that brings its own fakes.
``GANHyper`` (static, frozen and hashable)
    The hyper-parameters: the loss pair, ACGAN's auxiliary loss, the DiffAugment policy, the D
    regularisers (gradient penalty, R1 and its lazy interval, DRAGAN, weight clipping) and how a
    train step is laid out (``d_steps``, ``d_loop``, ``shared_fakes``).
The discriminator module
    ``D.apply(variables, x, labels, train=..., update_stats=...) -> (logits (B,), class_logits (B, C)
    or None)`` on inputs ``x`` of any shape with a leading batch axis (images, 2-D points, latent
    codes: whatever the module takes; DiffAugment needs NHWC images). ``train`` runs batch norm on
    batch statistics; ``update_stats`` runs spectral normalisation's power iteration. Class logits
    are read only when ``GANHyper.auxiliary``.
Keys
    Every draw derives from the ``key`` argument with ``experiments.rng`` purposes: a D update uses
    ``'augment_real'``, ``'augment_fake'``, ``'gradient_penalty'`` and ``'dragan'``; a G update
    ``'latent'``, ``'labels'`` and ``'augment'``; ``gan_update`` gives the D update ``index`` of a
    step the key ``fold_in(purpose_key(key, 'd_step'), index)`` (its fakes' latents come from the
    same key) and the G update ``purpose_key(key, 'g_step')``.
Lazy R1
    ``count`` is the D update's number over the run (``step * d_steps + index`` in a GAN): with
    ``r1_interval = k > 1`` the R1 penalty is computed and applied (weight ``k·γ/2``) only when
    ``count % k == 0``; the logged ``r1_penalty`` is 0 on the other updates.

In a D update the real pass runs D in train mode with ``update_stats`` (batch norm on batch
statistics with running averages updated, one power iteration of spectral normalisation); the fake
pass continues from the collections the real pass left, without iterating; the penalties use those
collections in eval mode. Fakes are held constant (``stop_gradient``). The G loss runs D in train
mode and keeps nothing D updates.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from experiments import rng
from gan_jax import augment, losses, regularizers

D_LOOPS = ("unroll", "scan")


@flax.struct.dataclass
class Network:
    """One network's parameters, other variable collections ('batch_stats', 'spectral') and
    optimiser state."""

    params: Any
    collections: Any
    opt_state: Any

    def variables(self) -> dict:
        return {"params": self.params, **self.collections}


def init_network(
    module: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array, *args, **kwargs
) -> Network:
    """A ``Network`` of ``module.init(key, *args, **kwargs)`` with ``optimizer``'s initial state."""
    variables = module.init(key, *args, **kwargs)
    params = variables["params"]
    collections = {name: value for name, value in variables.items() if name != "params"}
    return Network(params, collections, optimizer.init(params))


@dataclasses.dataclass(frozen=True)
class GANNets:
    """The static parts of a GAN: modules, optimisers and the generator's input sizes."""

    discriminator: nn.Module
    d_optimizer: optax.GradientTransformation
    generator: nn.Module | None = None
    g_optimizer: optax.GradientTransformation | None = None
    latent_dim: int = 0
    num_classes: int = 0  # > 0: G and D take labels; G updates draw them uniformly


@dataclasses.dataclass(frozen=True)
class GANHyper:
    """The hyper-parameters of the D and G updates (see ``gan_jax.defaults`` for their meaning)."""

    loss: losses.GANLoss = losses.LOSSES["non_saturating"]
    auxiliary: bool = False  # ACGAN: D has class logits, both updates add the classification loss
    acgan_weight: float = 1.0
    augment: tuple[str, ...] = ()  # a gan_jax.augment.parse_policy result
    gradient_penalty: float = 0.0
    gradient_penalty_one_sided: bool = False
    r1: float = 0.0
    r1_interval: int = 1
    dragan: float = 0.0
    dragan_scale: float = 0.5
    weight_clip: float = 0.0
    d_steps: int = 1
    d_loop: str = "unroll"  # unroll | scan
    shared_fakes: bool = False

    def __post_init__(self):
        unknown = [name for name in self.augment if name not in augment.AUGMENTATIONS]
        problems = [
            (self.d_steps < 1, f"d_steps={self.d_steps} must be >= 1"),
            (self.r1_interval < 1, f"r1_interval={self.r1_interval} must be >= 1"),
            (self.d_loop not in D_LOOPS, f"d_loop={self.d_loop!r}; expected one of {D_LOOPS}"),
            (self.shared_fakes and self.d_steps != 1, "shared_fakes needs d_steps=1"),
            (self.shared_fakes and self.d_loop != "unroll", "shared_fakes needs d_loop='unroll'"),
            (bool(unknown), f"unknown augmentations {unknown}"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(f"GANHyper: {message}")


class DOutputs(NamedTuple):
    real_logits: jax.Array
    fake_logits: jax.Array
    real_classes: jax.Array | None


# -- pieces ----------------------------------------------------------------------------------------


def run(module: nn.Module, params, collections: dict, *args, mutable: bool, **kwargs):
    """``(outputs, collections)`` of ``module.apply``; with ``mutable`` the non-parameter collections
    may change (batch norm in train mode, spectral-norm updates) and their new values are returned."""
    variables = {"params": params, **collections}
    if not (mutable and collections):
        return module.apply(variables, *args, **kwargs), collections
    outputs, updates = module.apply(variables, *args, mutable=list(collections), **kwargs)
    return outputs, {**collections, **updates}


def discriminate(discriminator: nn.Module, params, collections, x, labels, *, train, update):
    """``((logits, class_logits), collections)`` of D on inputs ``x``."""
    return run(
        discriminator,
        params,
        collections,
        x,
        labels,
        train=train,
        update_stats=update,
        mutable=train or update,
    )


def mean_metrics(metrics: dict) -> dict:
    return {name: jnp.mean(value).astype(jnp.float32) for name, value in metrics.items()}


def latents(key: jax.Array, num: int, latent_dim: int) -> jax.Array:
    """``(num, latent_dim)`` standard normal latents, example ``i`` from its own key."""
    return rng.normal_per_example(rng.purpose_key(key, "latent"), (num, latent_dim))


def uniform_labels(key: jax.Array, num: int, num_classes: int) -> jax.Array | None:
    """``(num,)`` int32 labels drawn uniformly, one per example from its own key (None when
    ``num_classes`` is 0)."""
    if num_classes <= 0:
        return None
    keys = rng.example_keys(rng.purpose_key(key, "labels"), num)
    return jax.vmap(lambda k: jax.random.randint(k, (), 0, num_classes))(keys)


def generate_fakes(g: Network, key: jax.Array, num: int, labels, *, nets: GANNets) -> jax.Array:
    """``num`` fakes of G in train mode (batch statistics; G's running averages are not kept) from
    the latents of ``key``, as a D update draws them."""
    z = latents(key, num, nets.latent_dim)
    fake, _ = run(nets.generator, g.params, g.collections, z, labels, train=True, mutable=True)
    return fake


def generate_with_vjp(g: Network, key: jax.Array, num: int, labels, *, nets: GANNets):
    """``(fake, vjp, collections)``: ``generate_fakes``'s forward pass, its VJP with respect to G's
    parameters, and G's updated batch statistics (``shared_fakes``: the G update reuses them)."""

    def generate(params):
        return run(nets.generator, params, g.collections, z, labels, train=True, mutable=True)

    z = latents(key, num, nets.latent_dim)
    fake, vjp, collections = jax.vjp(generate, g.params, has_aux=True)
    return fake, vjp, collections


# -- the discriminator -----------------------------------------------------------------------------


def discriminator_loss(
    params,
    collections,
    real: jax.Array,
    fake: jax.Array,
    labels,
    key: jax.Array,
    *,
    discriminator: nn.Module,
    hp: GANHyper,
    fake_labels=None,
    with_r1: bool = True,
):
    """``(total, (collections, DOutputs, terms))``: D's loss on (already augmented) ``real`` and
    ``fake`` inputs, differentiable in ``params``.

    ``total`` is the adversarial loss ``hp.loss.discriminator`` plus ``hp.acgan_weight`` times the
    auxiliary classification loss of real and fake (``hp.auxiliary``) plus the weighted penalties;
    ``terms`` names its parts (``d_adversarial_loss``, ``d_aux_loss``, ``gradient_penalty``,
    ``dragan_penalty``, ``r1_penalty``: the penalties unweighted). ``fake_labels`` (default
    ``labels``) are the fakes' labels; the penalties use ``labels``. R1 enters with weight
    ``r1_interval·γ/2`` when ``with_r1``, else as 0.
    """
    fake_labels = labels if fake_labels is None else fake_labels
    (real_logits, real_classes), collections = discriminate(
        discriminator, params, collections, real, labels, train=True, update=True
    )
    (fake_logits, fake_classes), collections = discriminate(
        discriminator, params, collections, fake, fake_labels, train=True, update=False
    )
    adversarial = hp.loss.discriminator(real_logits, fake_logits)
    total, terms = adversarial, {"d_adversarial_loss": adversarial}

    def critic(x):
        outputs, _ = discriminate(
            discriminator, params, collections, x, labels, train=False, update=False
        )
        return outputs[0]

    if hp.auxiliary:
        aux = losses.auxiliary_classifier(real_classes, labels)
        aux += losses.auxiliary_classifier(fake_classes, fake_labels)
        total += hp.acgan_weight * aux
        terms["d_aux_loss"] = aux
    if hp.gradient_penalty > 0:
        penalty = regularizers.gradient_penalty(
            critic,
            real,
            fake,
            rng.purpose_key(key, "gradient_penalty"),
            one_sided=hp.gradient_penalty_one_sided,
        )
        total += hp.gradient_penalty * penalty
        terms["gradient_penalty"] = penalty
    if hp.dragan > 0:
        penalty = regularizers.dragan_penalty(
            critic, real, rng.purpose_key(key, "dragan"), scale=hp.dragan_scale
        )
        total += hp.dragan * penalty
        terms["dragan_penalty"] = penalty
    if hp.r1 > 0:
        penalty = regularizers.r1_penalty(critic, real) if with_r1 else jnp.zeros(())
        total += 0.5 * hp.r1 * hp.r1_interval * penalty
        terms["r1_penalty"] = penalty
    return total, (collections, DOutputs(real_logits, fake_logits, real_classes), terms)


def d_update(
    d: Network,
    real: jax.Array,
    fake: jax.Array,
    labels,
    key: jax.Array,
    count,
    *,
    nets: GANNets,
    hp: GANHyper,
    fake_labels=None,
) -> tuple[Network, dict]:
    """One D update on a batch of ``real`` and one of ``fake`` inputs: ``(d, metrics)``.

    ``fake`` may come from anywhere (a generator, a decoder, an encoder); no gradient flows into
    it. Both are augmented (``hp.augment``), D minimises ``discriminator_loss`` with
    ``nets.d_optimizer``, and the parameters are clipped (``hp.weight_clip``). ``count`` (a Python
    or traced int) is this D update's number over the run: the lazy-R1 clock. ``metrics`` are
    float32 scalars: ``d_loss``, the loss terms, ``d_real``/``d_fake`` (mean sigmoid of the logits),
    ``d_real_logit``/``d_fake_logit``, ``d_grad_norm`` (before the optimiser) and, with
    ``hp.auxiliary``, ``d_aux_accuracy`` (of the real examples' class logits).
    """
    fake = jax.lax.stop_gradient(fake)
    real = augment.diff_augment(real, rng.purpose_key(key, "augment_real"), hp.augment)
    fake = augment.diff_augment(fake, rng.purpose_key(key, "augment_fake"), hp.augment)

    def gradients(with_r1: bool):
        loss_fn = functools.partial(
            discriminator_loss,
            collections=d.collections,
            real=real,
            fake=fake,
            labels=labels,
            key=key,
            discriminator=nets.discriminator,
            hp=hp,
            fake_labels=fake_labels,
            with_r1=with_r1,
        )
        return jax.value_and_grad(loss_fn, has_aux=True)(d.params)

    if hp.r1 > 0 and hp.r1_interval > 1:
        due = count % hp.r1_interval == 0
        (loss, aux), grads = jax.lax.cond(due, lambda: gradients(True), lambda: gradients(False))
    else:
        (loss, aux), grads = gradients(True)
    collections, outputs, terms = aux
    updates, opt_state = nets.d_optimizer.update(grads, d.opt_state, d.params)
    params = optax.apply_updates(d.params, updates)
    if hp.weight_clip > 0:
        params = regularizers.clip_weights(params, hp.weight_clip)
    metrics = {
        "d_loss": loss,
        **terms,
        "d_real": jax.nn.sigmoid(outputs.real_logits),
        "d_fake": jax.nn.sigmoid(outputs.fake_logits),
        "d_real_logit": outputs.real_logits,
        "d_fake_logit": outputs.fake_logits,
        "d_grad_norm": optax.tree.norm(grads),
    }
    if hp.auxiliary:
        correct = jnp.argmax(outputs.real_classes, -1) == labels
        metrics["d_aux_accuracy"] = correct.astype(jnp.float32)
    return Network(params, collections, opt_state), mean_metrics(metrics)


# -- the generator ---------------------------------------------------------------------------------


def generator_loss(
    d: Network, fake: jax.Array, labels, key: jax.Array, *, discriminator: nn.Module, hp: GANHyper
):
    """``(loss, terms)``: G's loss ``hp.loss.generator`` on fakes (augmented with
    ``purpose_key(key, 'augment')``), plus ``hp.acgan_weight`` times the auxiliary classification
    loss of ``labels`` (``hp.auxiliary``; ``terms`` then holds ``g_adversarial_loss`` and
    ``g_aux_loss``, else nothing). Differentiable in ``fake``; D runs in train mode and nothing it
    updates is kept."""
    fake = augment.diff_augment(fake, rng.purpose_key(key, "augment"), hp.augment)
    (logits, classes), _ = discriminate(
        discriminator, d.params, d.collections, fake, labels, train=True, update=False
    )
    adversarial = hp.loss.generator(logits)
    loss, terms = adversarial, {}
    if hp.auxiliary:
        aux = losses.auxiliary_classifier(classes, labels)
        loss += hp.acgan_weight * aux
        terms = {"g_adversarial_loss": adversarial, "g_aux_loss": aux}
    return loss, terms


def apply_g_gradients(g: Network, grads, collections, loss, terms, *, nets: GANNets):
    """``(g, metrics)`` after one step of ``nets.g_optimizer`` on ``grads``; ``collections`` are G's
    new batch statistics."""
    updates, opt_state = nets.g_optimizer.update(grads, g.opt_state, g.params)
    g = Network(optax.apply_updates(g.params, updates), collections, opt_state)
    return g, {"g_loss": loss, **terms, "g_grad_norm": optax.tree.norm(grads)}


def g_update(
    g: Network, d: Network, num: int, key: jax.Array, *, nets: GANNets, hp: GANHyper
) -> tuple[Network, dict]:
    """One G update on ``num`` fresh latents and uniformly drawn labels: ``(g, metrics)`` with
    ``g_loss``, ``g_grad_norm`` and ``generator_loss``'s terms."""
    z = latents(key, num, nets.latent_dim)
    labels = uniform_labels(key, num, nets.num_classes)

    def loss_fn(params):
        fake, collections = run(
            nets.generator, params, g.collections, z, labels, train=True, mutable=True
        )
        loss, terms = generator_loss(d, fake, labels, key, discriminator=nets.discriminator, hp=hp)
        return loss, (collections, terms)

    (loss, (collections, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
    return apply_g_gradients(g, grads, collections, loss, terms, nets=nets)


def g_update_shared(
    g: Network, d: Network, shared, labels, key: jax.Array, *, nets: GANNets, hp: GANHyper
) -> tuple[Network, dict]:
    """The G update on a D update's fakes (``shared``: a ``generate_with_vjp`` result) and their
    labels: the gradient flows back through that forward pass, as PyTorch's DCGAN example does."""
    fake, vjp, collections = shared

    def loss_of_fake(fake):
        return generator_loss(d, fake, labels, key, discriminator=nets.discriminator, hp=hp)

    (loss, terms), fake_grad = jax.value_and_grad(loss_of_fake, has_aux=True)(fake)
    (grads,) = vjp(fake_grad)
    return apply_g_gradients(g, grads, collections, loss, terms, nets=nets)


# -- one GAN step ----------------------------------------------------------------------------------


def d_update_clock(step, d_steps: int, d_key: jax.Array, index):
    """``(count, key)`` of a step's D update ``index`` (a Python or traced int): its number over
    the run (the lazy-R1 clock) and its key ``fold_in(d_key, index)``."""
    return step * d_steps + index, jax.random.fold_in(d_key, index)


def d_updates(g: Network, d: Network, step, real, labels, d_key, *, nets: GANNets, hp: GANHyper):
    """The ``hp.d_steps`` D updates of a step on G's fakes: ``(d, stacked metrics, shared)``.

    ``real`` is ``(d_steps, B, ...)``, ``labels`` ``(d_steps, B)`` or None. With ``d_loop='unroll'``
    they run as a Python loop (XLA:CPU runs some convolutions, the strided convolution's kernel
    gradient among them, on a slow generic path inside a loop body, so this is the default; its
    cost is a program and a compile time that grow with ``d_steps``); with ``'scan'`` as one
    ``lax.scan`` (the same updates, keys and counts in a program the size of one update: the choice
    for accelerators). ``shared`` is ``(generate_with_vjp result, labels)`` of the last update with
    ``hp.shared_fakes``, else None.
    """
    per_update = real.shape[1]
    if hp.d_loop == "scan" and hp.d_steps > 1:

        def one_update(d, inputs):
            index, real_i, labels_i = inputs
            count, key_i = d_update_clock(step, hp.d_steps, d_key, index)
            fake = generate_fakes(g, key_i, per_update, labels_i, nets=nets)
            return d_update(d, real_i, fake, labels_i, key_i, count, nets=nets, hp=hp)

        indices = jnp.arange(hp.d_steps, dtype=jnp.int32)
        d, metrics = jax.lax.scan(one_update, d, (indices, real, labels))
        return d, metrics, None

    metrics, shared, labels_i = [], None, None
    for index in range(hp.d_steps):
        labels_i = None if labels is None else labels[index]
        count, key_i = d_update_clock(step, hp.d_steps, d_key, index)
        if hp.shared_fakes:
            shared = generate_with_vjp(g, key_i, per_update, labels_i, nets=nets)
            fake = shared[0]
        else:
            fake = generate_fakes(g, key_i, per_update, labels_i, nets=nets)
        d, metrics_i = d_update(d, real[index], fake, labels_i, key_i, count, nets=nets, hp=hp)
        metrics.append(metrics_i)
    metrics = jax.tree.map(lambda *values: jnp.stack(values), *metrics)
    return d, metrics, None if shared is None else (shared, labels_i)


def gan_update(
    g: Network, d: Network, step, real, labels, key: jax.Array, *, nets: GANNets, hp: GANHyper
) -> tuple[Network, Network, dict]:
    """One GAN train step: ``hp.d_steps`` D updates, then one G update: ``(g, d, metrics)``.

    ``real`` holds the step's D batches ``(d_steps * B, ...)`` (already in D's input range) and
    ``labels`` their labels or None; ``step`` is the number of steps before this one. The G update
    uses B latents (or, with ``hp.shared_fakes``, the D update's fakes and labels). ``metrics``:
    the D updates' metrics averaged over the step, and the G update's.
    """
    per_update = real.shape[0] // hp.d_steps
    real = real.reshape(hp.d_steps, per_update, *real.shape[1:])
    if labels is not None:
        labels = labels.reshape(hp.d_steps, per_update)
    d_key = rng.purpose_key(key, "d_step")
    d, d_metrics, shared = d_updates(g, d, step, real, labels, d_key, nets=nets, hp=hp)
    g_key = rng.purpose_key(key, "g_step")
    if shared is None:
        g, g_metrics = g_update(g, d, per_update, g_key, nets=nets, hp=hp)
    else:
        g, g_metrics = g_update_shared(g, d, *shared, g_key, nets=nets, hp=hp)
    return g, d, {**mean_metrics(d_metrics), **mean_metrics(g_metrics)}
