"""The interface through which a model family (GAN, VAE, ...) plugs into the engine.

The engine (`experiments.train`) owns the loop, data, checkpoints, logging and sample grids; a family
owns its networks, losses and update rule. A family module exposes ``make(config) -> Family``; the
returned object has the five members below. ``make`` reads the config and builds its networks from
explicit keyword arguments; everything else is a pure function of pytrees:

``init_state(key, example_batch) -> state``
    The whole train state as one pytree (params, optimiser states, batch statistics, EMA, ...). It has an
    integer scalar field ``step`` (the number of updates applied) that ``train_step`` increments.
``train_step(state, batch, key) -> (state, metrics)``
    One update. ``key`` is already specific to this step (the engine folds the step in); every draw
    inside derives from it with ``experiments.rng``. ``metrics`` is a flat dict of float32 scalars;
    the engine stops the run when any of them is not finite and shows the ``*loss`` ones.
``eval_step(state, batch, key) -> metrics``
    Per-example metrics on held-out data: a flat dict of ``(batch,)`` float32 arrays. The engine
    averages them over the whole eval split, using ``batch['mask']`` to ignore padding.
``sample(state, key, num, labels=None) -> x``
    ``num`` samples in the data layout of ``experiments.data`` (images NHWC float32 in [0, 1]).
``grids(state, batch, key) -> dict[str, x]``
    Named image batches to save as PNG grids at each eval (a GAN: samples; a VAE: reconstructions of
    ``batch`` and prior samples).

Optional members, used when present:

``summarize_eval(averages) -> dict[str, float]``
    Extra eval metrics computed from the split-wide averages of ``eval_step``'s per-example metrics
    (e.g. how many modes have at least 1% of the samples).
``evaluation_metric_names``, ``evaluation_options``, ``evaluation_metrics(state, eval_source, key,
options[, placement]) -> dict[str, float]``
    Metrics of the family's own (e.g. a VAE's IWAE negative log-likelihood, named ``'nll'``) that
    ``python -m experiments.evaluate`` merges into its report next to FID and the rest, computed
    when ``--metrics`` names one of ``evaluation_metric_names`` (or is not given).
    ``evaluation_options`` is a dict of the options with their defaults (the command's
    ``--family_options KEY=VALUE`` override them, converted to the default's type); ``options`` is
    that dict. ``eval_source`` is the reference split (``experiments.data`` source), ``key`` a key
    for the family's own draws. A function with a ``placement`` parameter gets the run's
    ``experiments.sharding.Placement`` (the mesh the state lives on): split each batch over it
    with ``placement.put_global`` and bring results back with ``placement.fetch``, padding batches
    to ``placement.num_devices`` (``experiments.batched``). Called eagerly (not under ``jit``); values are scalars (or
    JSON-able). Called for every family, images or not.
``conditional`` and ``num_classes`` (attributes, default False and absent)
    True when ``sample`` honours ``labels``: evaluation then requests balanced labels
    (``i % num_classes``) and adds the label accuracy and the intra-class FID.

Batches are dicts with ``'x'`` and optionally ``'label'``; see ``experiments.data`` for the layout.

``config.compute_dtype`` (``'float32'`` | ``'bfloat16'``, checked by the engine) is a family's to
honour: every family's ``make`` gets the key, and one that ignores it (``examples.gaussian``)
computes in float32. The GAN and VAE families follow the policy of ``experiments.precision``.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import jax

from experiments.errors import ConfigError

PyTree = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# Short names of the families that ship with the engine; any other ``config.family`` is a module path.
FAMILIES = {"gan": "gan_jax.family", "vae": "vae_jax.family"}


class Family(Protocol):
    def init_state(self, key: jax.Array, example_batch: Batch) -> PyTree: ...

    def train_step(self, state: PyTree, batch: Batch, key: jax.Array) -> tuple[PyTree, Metrics]: ...

    def eval_step(self, state: PyTree, batch: Batch, key: jax.Array) -> Metrics: ...

    def sample(
        self, state: PyTree, key: jax.Array, num: int, labels: jax.Array | None = None
    ) -> jax.Array: ...

    def grids(self, state: PyTree, batch: Batch, key: jax.Array) -> dict[str, jax.Array]: ...


def family_module(name: str):
    """The module of family ``name``: an alias of ``FAMILIES`` or an importable module path
    (``'my_package.my_family'``) whose ``make(config)`` builds the family. A new family therefore
    needs no change to the engine."""
    path = FAMILIES.get(name, name)
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as error:
        if error.name and (path == error.name or path.startswith(error.name + ".")):
            raise ConfigError(
                f"config.family={name!r} is neither one of {sorted(FAMILIES)} nor an importable "
                f"module ({error.msg})"
            ) from error
        raise ConfigError(  # the family module exists; one of its own imports is missing
            f"config.family={name!r}: importing {path} failed: {error.msg}"
        ) from error
    except ValueError as error:  # e.g. an empty or relative module name
        raise ConfigError(f"config.family={name!r} is not a module path ({error})") from error
    if not callable(getattr(module, "make", None)):
        raise ConfigError(f"config.family={name!r}: module {path} has no make(config) function")
    return module


def make_family(config) -> Family:
    """Builds the family ``config.family`` names (see ``family_module``)."""
    return family_module(config.family).make(config)
