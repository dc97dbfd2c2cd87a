"""The GAN family's config: its defaults for older configs, its checks and its translation into
``GANFamily``'s explicit arguments. This is the only module of ``gan_jax`` that reads a config.

Keys read (``gan_jax.defaults`` lists them all with their defaults):

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
    fakes, see ``gan_jax.family``), ``ema_decay``, ``ema_start_step`` and ``ema_warmup``,
    ``augment`` (DiffAugment policy, ``gan_jax.augment``);
    ``generator`` / ``discriminator``: ``features``, ``weight_init``, ``activation`` (mlp), ``norm``,
    ``conditioning``, ``embedding_dim`` (G), ``sn_iterations`` (D);
    ``regularizers``: ``gradient_penalty``, ``gradient_penalty_one_sided``, ``r1``, ``r1_interval``,
    ``dragan``, ``dragan_scale``, ``weight_clip`` (``gan_jax.regularizers``).
``config.optimizer.generator`` / ``.discriminator``
    ``experiments.optim`` configs (any optimiser and schedule, separate learning rates: TTUR). The D
    optimiser's update count (its schedule's clock) advances ``d_steps`` times per train step.
``config.data.name``
    ``ring2d`` / ``grid2d`` turn on the toy metrics and scatter plots (``gan_jax.toy``), with the
    mode centres of ``experiments.data.toy_modes``.
``config.batch_size``
    Must be a multiple of ``d_steps`` (the batch holds ``d_steps`` D batches).
``config.compute_dtype``
    The networks' compute dtype (``experiments.precision``; absent: float32).

Older configs: a config (e.g. a workdir's) written before a ``model`` key existed gets the key's
documented default (``with_model_defaults``), which is the behaviour it was trained with.
"""

from __future__ import annotations

import ml_collections

from experiments import ema as ema_lib
from experiments import layers, optim, precision
from experiments.errors import ConfigError
from gan_jax import augment, losses, networks
from gan_jax.defaults import default_model_config
from gan_jax.updates import D_LOOPS, GANHyper, GANNets

GRADIENT_PENALTIES = ("gradient_penalty", "r1", "dragan")


def toy_2d_names() -> tuple[str, ...]:
    # The data package is imported here, not at the top: only the config translation needs it.
    from experiments.data.embedded import TOY_2D_NAMES

    return tuple(TOY_2D_NAMES)


def with_model_defaults(config) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``model`` has every key of ``gan_jax.defaults``: a workdir written
    before a key existed gets the key's default, which is the behaviour it was trained with."""
    completed = ml_collections.ConfigDict(config.to_dict())
    model = default_model_config()
    model.update(config.model.to_dict())
    completed.model = model
    return completed


def check_config(config) -> None:
    """ConfigError for a config the family cannot train (one line each, naming the key)."""
    model = config.model
    g, d, reg = model.generator, model.discriminator, model.regularizers

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    def choice(key: str, value, choices) -> None:
        require(value in choices, f"config.{key}={value!r}; expected one of {list(choices)}")

    choice("model.architecture", model.architecture, networks.ARCHITECTURES)
    choice("model.loss", model.loss, sorted(losses.LOSSES))
    for name, net in (("generator", g), ("discriminator", d)):
        choice(f"model.{name}.weight_init", net.weight_init, sorted(layers.INITIALIZERS))
        if model.architecture == "mlp":
            choice(f"model.{name}.activation", net.activation, sorted(layers.ACTIVATIONS))
        require(len(net.features) > 0, f"config.model.{name}.features is empty")
    choice("model.discriminator.norm", d.norm, networks.D_NORMS[model.architecture])
    choice("model.generator.norm", g.norm, networks.G_NORMS[model.architecture])
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
    is_toy = config.data.name in toy_2d_names()
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


def build_nets(config) -> GANNets:
    """The modules (``gan_jax.networks`` from explicit arguments) and optimisers of a config."""
    model = config.model
    g, d = model.generator, model.discriminator
    generator, discriminator = networks.build_networks(
        model.architecture,
        image_size=int(model.image_size),
        channels=int(model.channels),
        data_dim=int(model.data_dim),
        num_classes=int(model.num_classes),
        dtype=precision.config_compute_dtype(config),
        generator=dict(
            features=tuple(g.features),
            weight_init=g.weight_init,
            norm=g.norm,
            activation=g.activation,
            conditioning=g.conditioning,
            embedding_dim=int(g.embedding_dim),
        ),
        discriminator=dict(
            features=tuple(d.features),
            weight_init=d.weight_init,
            norm=d.norm,
            activation=d.activation,
            sn_iterations=int(d.sn_iterations),
            conditioning=d.conditioning,
        ),
    )
    return GANNets(
        discriminator=discriminator,
        d_optimizer=optim.make_optimizer(config.optimizer.discriminator),
        generator=generator,
        g_optimizer=optim.make_optimizer(config.optimizer.generator),
        latent_dim=int(model.latent_dim),
        num_classes=int(model.num_classes),
    )


def hyper_parameters(model) -> GANHyper:
    """The update rules' hyper-parameters of a ``config.model``."""
    reg = model.regularizers
    return GANHyper(
        loss=losses.get_loss(model.loss),
        auxiliary=model.discriminator.conditioning == "auxiliary",
        acgan_weight=float(model.acgan_weight),
        augment=augment.parse_policy(model.augment),
        gradient_penalty=float(reg.gradient_penalty),
        gradient_penalty_one_sided=bool(reg.gradient_penalty_one_sided),
        r1=float(reg.r1),
        r1_interval=int(reg.r1_interval),
        dragan=float(reg.dragan),
        dragan_scale=float(reg.dragan_scale),
        weight_clip=float(reg.weight_clip),
        d_steps=int(model.d_steps),
        d_loop=model.d_loop,
        shared_fakes=bool(model.shared_fakes),
    )


def family_arguments(config) -> dict:
    """``GANFamily``'s arguments for a checked config that has every model key."""
    model = config.model
    if model.architecture == "mlp":
        data_shape = (int(model.data_dim),)
    else:
        data_shape = (int(model.image_size), int(model.image_size), int(model.channels))
    toy_modes = None
    if config.data.name in toy_2d_names():
        from experiments.data.embedded import toy_modes as modes_of

        toy_modes = modes_of(config.data.name)
    return dict(
        nets=build_nets(config),
        hp=hyper_parameters(model),
        data_shape=data_shape,
        ema_decay=float(model.ema_decay),
        ema_start_step=int(model.ema_start_step),
        ema_warmup=bool(model.ema_warmup),
        toy_modes=toy_modes,
    )
