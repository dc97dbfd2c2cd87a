"""Times the project's real train step.

Usage: python -m experiments.benchmark --config=FILE[:ARG] [--steps=50] [--warmup=5]
       [--data_steps=200] [--peak_size=2048] [--products_runs=N] [--config.KEY=VALUE ...]

It builds ``experiments.train.Experiment`` from the config (the same family, batcher, jitted and
donating ``train_step`` and ``put_batch`` that training runs) and measures:

* ``compile_s``: tracing, lowering and compiling the step (ahead of time, once; ``compile_cpu_s``
  is the CPU time it took, which other jobs on the machine inflate less);
* ``median_step_ms``: the median over ``--steps`` steps, after ``--warmup`` steps, of one call of the
  jitted step on a batch already on the device, each waited for with ``block_until_ready``;
* ``data_ms``: the input pipeline alone, ``batcher.batch(step)`` + ``put_batch`` (median), and
  ``data_fraction``: ``data_ms`` over ``median_step_ms``;
* ``step_with_data_ms``: both, as the train loop runs them (median): each iteration builds and
  places the next batch and dispatches its step while the previous step still runs, then waits
  for that previous step;
* ``flops_per_step``: XLA's cost analysis of the step lowered for the CPU, before any backend's
  rewrites (within 0.5% of the compiled CPU step's; a GPU's compiled count leaves out the
  convolutions it hands to cuDNN), and ``fraction_of_peak``: that work per median step against a
  float32 matmul peak measured in the same run (``peak_gflops``);
* ``products_ms``: the step's matrix products and convolutions alone (``live_products``: every
  ``dot_general`` and ``conv_general_dilated`` whose result the step uses, as often as it runs), on
  random operands of their shapes, compiled together with the step's compiler options (median of
  ``--products_runs`` runs, by default as many as ``--steps`` up to 20; null with
  ``--products_runs=0`` or on several devices);
  ``products_fraction``, that over ``median_step_ms``: how close the step is to what its linear
  algebra alone takes here (1 would leave nothing for element-wise work, the optimiser or
  dispatch); and ``products``, how many there are;
* ``params``: trainable parameters (every leaf under a ``params`` field of the state: both networks
  of a GAN, batch-norm scale and bias included, optimiser moments and EMA copies not);
* ``state_mb_per_device``: the train state's bytes on one device (about 1/``fsdp`` of it with
  ``config.mesh.fsdp``), and ``mesh``, the mesh's axes;
* ``peak_memory_mb``: the process's maximum resident set size (``memory_source`` says so), plus
  the compiled step's own buffers (``step_memory_mb``: arguments, outputs and temporaries);
* ``recompiles``: compilations after the first step (must be 0);
* ``mean_step_cpu_ms`` (CPU time of all threads per step) and ``load_average``: to judge how much
  other jobs on the machine disturbed the timing;
* ``page_faults_per_step`` (minor faults) and ``step_system_ms`` (kernel time per step): near 0
  when the host allocator reuses the step's buffers (``config.host_memory``), thousands and a
  quarter of the CPU time when each step's temporaries are mapped and zeroed afresh;
* ``allocator_advice``: on XLA:CPU with glibc, when the step's temporaries are too large for
  ``config.host_memory`` to keep, the environment setting that helps (also printed under the
  table); otherwise null.

It prints a table and, as its last line, one JSON object with all of these. Nothing is written to
disk (the experiment gets a temporary workdir that it never touches).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from experiments import cli

_CONFIG = cli.define_config_flag()
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps (after the warm-up).", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed steps before timing.", lower_bound=1)
_DATA_STEPS = flags.DEFINE_integer("data_steps", 200, "Batches timed for data_ms.", lower_bound=1)
_PEAK_SIZE = flags.DEFINE_integer(
    "peak_size",
    2048,
    "Side of the square float32 matmul that measures the peak FLOP/s.",
    lower_bound=1,
)

_PRODUCTS_RUNS = flags.DEFINE_integer(
    "products_runs",
    None,
    "Runs of the step's products alone for products_ms (default: --steps, at most 20; "
    "0: not measured).",
    lower_bound=0,
)
MAX_DEFAULT_PRODUCTS_RUNS = 20

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
LINEAR_PRIMITIVES = ("dot_general", "conv_general_dilated")
# Whose sub-jaxpr outputs are not the equation's own outputs one for one: all count as used.
_LOOPS = ("scan", "while")


def count_params(state) -> int:
    """Elements of every array leaf whose path passes through a field or key named ``params``."""
    import jax

    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        names = {getattr(entry, "name", getattr(entry, "key", None)) for entry in path}
        if "params" in names and hasattr(leaf, "size"):
            total += int(leaf.size)
    return total


def cost_flops(stage) -> float:
    """XLA's flop count of a lowered or compiled computation (``cost_analysis`` is a dict or a list
    of them; NaN where XLA gives none)."""
    analysis = stage.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan")))


def lowered_flops(function, *args) -> float:
    """XLA's flop count of ``function(*args)`` lowered for the CPU, before any backend's rewrites:
    the same program on every backend (a GPU's own lowering has no cost analysis, and its compiled
    count leaves out the convolutions it hands to cuDNN). ``args`` only give shapes and dtypes."""
    import jax

    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    abstract = jax.tree.map(
        functools.partial(_abstract_on, sharding=cpu), args, is_leaf=lambda x: hasattr(x, "shape")
    )
    return cost_flops(jax.jit(function).trace(*abstract).lower())


def _abstract_on(x, sharding):
    import jax

    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def live_products(jaxpr, used_outputs=None, repeats: int = 1) -> list:
    """The ``LINEAR_PRIMITIVES`` equations of ``jaxpr`` (a ``jax.extend.core.Jaxpr``) whose results
    are used, nested jits, custom derivatives and loop bodies included, each listed as often as it
    runs: a scan body's ``length`` times, a while body's once (its trip count is only known when it
    runs), every branch of a cond. Products whose results nothing uses (as the primal output of a
    ``jax.vjp`` taken only for its pullback) are left out, as XLA leaves them out.

    ``used_outputs``: which of ``jaxpr.outvars`` are used (default: all).
    """
    from jax.extend import core

    if used_outputs is None:
        used_outputs = [True] * len(jaxpr.outvars)
    live = {
        v
        for v, used in zip(jaxpr.outvars, used_outputs, strict=True)
        if used and isinstance(v, core.Var)
    }
    found = []
    for eqn in reversed(jaxpr.eqns):
        used = [isinstance(v, core.Var) and v in live for v in eqn.outvars]
        if not any(used) and not eqn.effects:
            continue
        name = eqn.primitive.name
        if name in LINEAR_PRIMITIVES:
            found.extend([eqn] * repeats)
        inner = repeats * (eqn.params["length"] if name == "scan" else 1)
        for sub in core.jaxprs_in_params(eqn.params):
            one_for_one = name not in _LOOPS and len(sub.outvars) == len(used)
            found.extend(live_products(sub, used if one_for_one else None, inner))
        live.update(v for v in eqn.invars if isinstance(v, core.Var))
    return found


def products_ms(function, args, compiler_options, runs: int) -> tuple[float, int]:
    """Median milliseconds of ``function(*args)``'s ``live_products`` alone, on random operands of
    their shapes (each product its own operands, so XLA merges none), compiled as one program with
    ``compiler_options``; and how many products there are."""
    import jax
    from jax.extend import core

    equations = live_products(jax.make_jaxpr(function)(*args).jaxpr)
    rng = np.random.default_rng(0)

    def operand(var):
        if isinstance(var, core.Literal):
            return var.val
        return jax.device_put(rng.standard_normal(var.aval.shape).astype(var.aval.dtype))

    operands = [[operand(var) for var in eqn.invars] for eqn in equations]

    def run(operands):
        return [
            eqn.primitive.bind(*ops, **eqn.params)
            for eqn, ops in zip(equations, operands, strict=True)
        ]

    compiled = jax.jit(run, compiler_options=compiler_options).lower(operands).compile()
    jax.block_until_ready(compiled(operands))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(compiled(operands))
        times.append(time.perf_counter() - start)
    return median_ms(times), len(equations)


def memory_mb(compiled) -> float | None:
    """Arguments + outputs + temporaries of a compiled computation in MiB (None if unknown)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if stats is None:
        return None
    total = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
    return total / 2**20


def matmul_peak_gflops(size: int, repeats: int = 5) -> float:
    """The best FLOP/s (in GFLOP/s) of a jitted ``size x size`` float32 matmul, same process."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def benchmark(
    config,
    steps: int,
    warmup: int,
    data_steps: int,
    peak_size: int,
    products_runs: int | None = None,
) -> dict:
    """Every figure of the module docstring for ``config``'s train step, as a dict.

    ``products_runs``: runs timed for ``products_ms``; None: ``steps``, at most
    ``MAX_DEFAULT_PRODUCTS_RUNS``; 0: not measured.
    """
    import jax

    from experiments import sharding, train
    from experiments.host_memory import huge_pages_advice, temporary_bytes

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kwargs: (
            compiles.append(duration) if event == COMPILE_EVENT else None
        )
    )

    with tempfile.TemporaryDirectory() as workdir:
        experiment = train.Experiment(config, workdir)
    experiment.configure_host()
    batcher, put = experiment.batcher, experiment.put_batch
    state = experiment.initial_state()
    params = count_params(state)
    state_mb_per_device = sharding.bytes_per_device(state) / 2**20
    batch = put(batcher.batch(0))
    root = experiment.root

    # Compile once, ahead of time, for the timing and the cost analysis; the jitted function then
    # runs from its cache (``recompiles`` counts any compilation after that).
    start, start_cpu = time.perf_counter(), time.process_time()
    compiled = experiment.train_step.lower(state, batch, root).compile()
    compile_s = time.perf_counter() - start
    compile_cpu_s = time.process_time() - start_cpu
    flops = lowered_flops(experiment.step_function, state, batch, root)
    step_memory = memory_mb(compiled)
    advice = huge_pages_advice(temporary_bytes(compiled))

    step = experiment.train_step
    for index in range(warmup):
        state, metrics, finite = step(state, batch, root)
        jax.block_until_ready((state, metrics, finite))
        if index == 0:
            compiles_after_first = len(compiles)
    if not bool(finite):
        raise RuntimeError(f"non-finite metrics during the benchmark: {jax.device_get(metrics)}")

    step_times = []
    start_cpu, start_usage = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics, finite = step(state, batch, root)
        jax.block_until_ready((state, metrics, finite))
        step_times.append(time.perf_counter() - start)
    step_cpu_ms = (time.process_time() - start_cpu) / steps * 1e3
    usage = resource.getrusage(resource.RUSAGE_SELF)
    page_faults = (usage.ru_minflt - start_usage.ru_minflt) / steps
    step_system_ms = (usage.ru_stime - start_usage.ru_stime) / steps * 1e3

    data_times = []
    for index in range(data_steps):
        start = time.perf_counter()
        jax.block_until_ready(put(batcher.batch(index)))
        data_times.append(time.perf_counter() - start)

    # As the train loop runs: the next batch is built while the step before it still runs, and
    # each iteration waits for that previous step's finiteness flag.
    loop_times, previous_finite = [], None
    for index in range(steps + 1):
        start = time.perf_counter()
        batch = put(batcher.batch(warmup + index))
        state, metrics, finite = step(state, batch, root)
        if previous_finite is not None:
            jax.block_until_ready(previous_finite)
            loop_times.append(time.perf_counter() - start)
        previous_finite = finite
    jax.block_until_ready((state, metrics, finite))
    recompiles = len(compiles) - compiles_after_first
    if products_runs is None:
        products_runs = min(steps, MAX_DEFAULT_PRODUCTS_RUNS)
    products, products_count = None, None
    # The step's shapes are global: on one device its products compute what the step computes.
    if products_runs and jax.device_count() == 1:
        products, products_count = products_ms(
            experiment.step_function,
            (state, batch, root),
            experiment.compiler_options,
            products_runs,
        )

    peak_gflops = matmul_peak_gflops(peak_size)
    step_ms, data_ms = median_ms(step_times), median_ms(data_times)
    step_sorted = sorted(step_times)
    achieved_gflops = flops / (step_ms / 1e3) / 1e9
    return dict(
        family=config.family,
        batch_size=config.batch_size,
        median_step_ms=round(step_ms, 3),
        p10_step_ms=round(step_sorted[len(step_sorted) // 10] * 1e3, 3),
        p90_step_ms=round(step_sorted[(9 * len(step_sorted)) // 10] * 1e3, 3),
        compile_s=round(compile_s, 3),
        compile_cpu_s=round(compile_cpu_s, 3),
        mean_step_cpu_ms=round(step_cpu_ms, 3),
        step_system_ms=round(step_system_ms, 3),
        page_faults_per_step=round(page_faults, 1),
        load_average=round(os.getloadavg()[0], 2),
        images_per_s=round(config.batch_size / (step_ms / 1e3), 1),
        flops_per_step=flops,
        achieved_gflops=round(achieved_gflops, 2),
        peak_gflops=round(peak_gflops, 2),
        fraction_of_peak=round(achieved_gflops / peak_gflops, 4),
        products_ms=None if products is None else round(products, 3),
        products_fraction=None if products is None else round(products / step_ms, 4),
        products=products_count,
        params=params,
        state_mb_per_device=round(state_mb_per_device, 3),
        mesh=dict(experiment.mesh.shape),
        peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        memory_source="process max RSS (resource.getrusage)",
        step_memory_mb=None if step_memory is None else round(step_memory, 2),
        allocator_advice=advice,
        data_ms=round(data_ms, 4),
        data_fraction=round(data_ms / step_ms, 4),
        step_with_data_ms=round(median_ms(loop_times), 3),
        recompiles=recompiles,
        steps=steps,
        warmup=warmup,
        backend=jax.default_backend(),
        devices=jax.device_count(),
        cpu_count=len(os.sched_getaffinity(0)),
        jax=jax.__version__,
        python=platform.python_version(),
    )


TABLE_ROWS = (
    ("median step", "median_step_ms", "ms"),
    ("p10 / p90 step", None, "ms"),
    ("step with data", "step_with_data_ms", "ms"),
    ("input pipeline", "data_ms", "ms"),
    ("pipeline / step", "data_fraction", "(input pipeline over the median step)"),
    ("compile", "compile_s", "s"),
    ("compile CPU time", "compile_cpu_s", "s (this process)"),
    ("step CPU time", "mean_step_cpu_ms", "ms (all threads, mean)"),
    ("step kernel time", "step_system_ms", "ms (system CPU time, mean)"),
    ("page faults", "page_faults_per_step", "per step (minor)"),
    ("load average", "load_average", "(1 min, at the end: other jobs share the cores)"),
    ("throughput", "images_per_s", "images/s"),
    ("work per step", "flops_per_step", "FLOP"),
    ("achieved", "achieved_gflops", "GFLOP/s"),
    ("matmul peak", "peak_gflops", "GFLOP/s"),
    ("fraction of peak", "fraction_of_peak", ""),
    ("products alone", "products_ms", "ms (the step's matrix products and convolutions)"),
    ("products / step", "products_fraction", "(1: nothing but products)"),
    ("products", "products", "(dot_general and conv_general_dilated run per step)"),
    ("parameters", "params", ""),
    ("peak memory", "peak_memory_mb", "MiB (process max RSS)"),
    ("step buffers", "step_memory_mb", "MiB (compiled memory analysis)"),
    ("recompilations", "recompiles", "after the first step"),
)


def format_table(result: dict) -> str:
    lines = [
        f"benchmark: family={result['family']} batch={result['batch_size']} "
        f"steps={result['steps']} (+{result['warmup']} warm-up) on {result['backend']} "
        f"({result['cpu_count']} cores), jax {result['jax']}"
    ]
    for label, key, unit in TABLE_ROWS:
        if key is None:
            value = f"{result['p10_step_ms']:.3f} / {result['p90_step_ms']:.3f}"
        elif isinstance(result[key], float) and key == "flops_per_step":
            value = f"{result[key]:.4g}"
        elif isinstance(result[key], int):
            value = f"{result[key]:,}"
        else:
            value = str(result[key])
        lines.append(f"  {label:<18} {value:>16}  {unit}")
    if result.get("allocator_advice"):
        lines.append(f"  note: {result['allocator_advice']}")
    return "\n".join(lines)


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.quiet_library_logs()
    from experiments import data
    from experiments.errors import ConfigError

    config = _CONFIG.value
    try:
        result = benchmark(
            config,
            _STEPS.value,
            _WARMUP.value,
            _DATA_STEPS.value,
            _PEAK_SIZE.value,
            _PRODUCTS_RUNS.value,
        )
    except (ConfigError, data.DataError) as error:  # raised while the experiment is built
        cli.fail(str(error), status=1)
    result["config"] = flags.FLAGS["config"].config_filename
    print(format_table(result), flush=True)
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
