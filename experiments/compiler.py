"""XLA options the engine compiles its steps with, chosen by ``config.cpu_convolutions``.

jaxlib 0.10's XLA:CPU hands convolutions, matrix products and reductions to YNNPACK by default.
There each convolution runs on one thread, while Eigen's convolutions use every core: on the
2-core machine the DCGAN benchmark step (``configs/bench/dcgan28.py``) took 110 ms with
YNNPACK's and 74.5 ms with Eigen's, compiled side by side (docs/performance.md). ``'eigen'``
keeps YNNPACK for the matrix products and reductions and gives the convolutions back to Eigen;
``'default'`` leaves XLA's choice. Only XLA:CPU reads the option, and a jaxlib that does not know
it compiles as before.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from experiments.errors import ConfigError

CPU_CONVOLUTIONS = ("eigen", "default")
_LIBRARY_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# XLA's default library fusions in jaxlib 0.10 less LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def step_compiler_options(cpu_convolutions: str) -> dict[str, str] | None:
    """The ``compiler_options`` of ``jax.jit`` for the train and eval steps (``None``: XLA's own).

    Raises:
      ConfigError: ``cpu_convolutions`` is not one of ``CPU_CONVOLUTIONS``.
    """
    if cpu_convolutions not in CPU_CONVOLUTIONS:
        raise ConfigError(
            f"config.cpu_convolutions={cpu_convolutions!r}; expected one of {CPU_CONVOLUTIONS}"
        )
    if cpu_convolutions == "default" or jax.default_backend() != "cpu":
        return None
    return {_LIBRARY_OPTION: _WITHOUT_CONVOLUTIONS} if _library_option_known() else None


@functools.cache
def _library_option_known() -> bool:
    """Whether this jaxlib's XLA:CPU accepts the option: it compiles a scalar addition with it."""
    options = {_LIBRARY_OPTION: _WITHOUT_CONVOLUTIONS}
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros(())).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True
