"""The train loop every family shares: data → compiled step → metrics, checkpoints and sample grids.

A run is a pure function of its config: the batch of step ``s`` is ``batcher.batch(s)`` (its
examples fixed by ``config.data_seed``, by default ``config.seed``) and every
random draw derives from ``config.seed`` and the step (``experiments.rng``), so a resumed run repeats
the uninterrupted one bit for bit. Nothing the loop keeps in Python affects the numbers.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import (
    batched,
    checkpoint,
    compiler,
    data,
    distributed,
    host_memory,
    images,
    provenance,
    rng,
    sharding,
    writers,
)
from experiments.config_checks import check_config, check_training_paths
from experiments.data.on_device import DeviceBatcher
from experiments.errors import ConfigError
from experiments.evaluation import best as best_checkpoint
from experiments.evaluation import in_training
from experiments.family import make_family

PERF_PREFIX = writers.PERF_PREFIX  # timings: perf.jsonl, not metrics.jsonl


class NonFiniteError(Exception):
    def __init__(self, step: int, metrics: dict):
        self.step, self.metrics = step, metrics
        shown = ", ".join(f"{key}={float(value):.4g}" for key, value in sorted(metrics.items()))
        super().__init__(f"non-finite metric at step {step} ({shown})")


class StopSignal:
    """Records SIGINT/SIGTERM so the loop can save a checkpoint at the current step and exit.

    With several processes SIGTERM is left to JAX's preemption service, which agrees one step for
    every process (``distributed.stop_agreed``), and SIGINT is turned into a SIGTERM of this
    process, so that a Ctrl-C stops every process at that step too.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        if distributed.is_multiprocess():
            self._previous[signal.SIGINT] = signal.signal(
                signal.SIGINT, distributed.forward_interrupt_to_preemption
            )
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def all_finite(metrics: dict) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(value)) for value in metrics.values()]))


def loss_summary(metrics: dict) -> str:
    """``name value`` for every metric whose name ends in ``loss`` (the progress line's summary)."""
    return " ".join(
        f"{key} {float(value):.4f}"
        for key, value in sorted(metrics.items())
        if key.endswith("loss")
    )


def is_due(step: int, every: int, last_step: int) -> bool:
    return step == last_step or (every > 0 and step % every == 0)


def data_seed(config) -> int:
    """The seed of the train data's order: ``config.data_seed``, or ``config.seed`` when it is None
    (or absent, in workdirs written before the key existed)."""
    value = config.get("data_seed", None)
    return config.seed if value is None else value


def say(message: str) -> None:
    """A line on stdout, from process 0 only."""
    if distributed.is_writer():
        print(message, flush=True)


class Experiment:
    """Everything a run needs, built from the config before the workdir is touched.

    Building one has no effect beyond this object: it configures nothing process-wide and reads
    the train split only when a batch is asked for (``sample`` and ``evaluate`` load a workdir
    through it without either). ``run`` (and the benchmark) configure the host's allocator
    (``configure_host``) first.
    """

    def __init__(self, config, workdir: str | Path, *, training: bool = True):
        check_config(config)  # a value that cannot work: one ConfigError before anything is built
        self.config = config
        self.workdir = Path(workdir)
        self.family = make_family(config)
        # A command that only reads a state (training=False) fits the mesh to the devices here.
        self.mesh = sharding.mesh_from_config(config, fit=not training)
        if training:  # eval, sampling and feature batches are padded to the mesh instead
            sharding.check_batch_size(config.batch_size, self.mesh)
        host_memory.check(config.get("host_memory", "reuse"))
        self.eval_source = data.build_eval_source(config.data, config.data.eval_split)
        self.root = rng.root_key(config.seed)
        self.placement = sharding.Placement(self.mesh)
        if training:
            self.placement.rows(config.batch_size)  # each process's devices hold its own block
        self.replicated = self.placement.replicated
        options = compiler.step_compiler_options(config.get("cpu_convolutions", "eigen"))
        self.compiler_options = options  # of every step this experiment compiles
        self.step_function = functools.partial(self._train_step, self.family)  # not jitted
        self.state_sharding = sharding.state_sharding(self.mesh, self.state_shapes())
        self.train_step = jax.jit(
            self.step_function,
            donate_argnums=0,
            out_shardings=(self.state_sharding, self.replicated, self.replicated),
            compiler_options=options,
        )
        self.eval_step = jax.jit(
            self.family.eval_step, out_shardings=self.replicated, compiler_options=options
        )
        self.grids = jax.jit(
            self.family.grids, out_shardings=self.replicated, compiler_options=options
        )
        self.sample_metrics = (  # config.evaluation.metrics: FID etc. at every eval
            in_training.InTrainingEvaluator(
                config, self.family, self.workdir, self.root, self.placement
            )
            if in_training.enabled(config)
            else None
        )

    @functools.cached_property
    def train_source(self):
        return data.build_source(self.config.data, self.config.data.train_split)

    @functools.cached_property
    def host_batcher(self):
        return data.build_batcher(
            self.config.data,
            self.config.batch_size,
            data_seed(self.config),
            source=self.train_source,
        )

    @functools.cached_property
    def batcher(self):
        """The train batches: ``host_batcher``'s, or with ``data.on_device`` gathered on the devices."""
        # .get: workdirs written before the key existed load without it.
        if self.config.data.get("on_device", False):
            return DeviceBatcher(
                self.host_batcher, self.replicated, sharding.batch_sharded(self.mesh)
            )
        return self.host_batcher

    def configure_host(self) -> None:
        """Applies ``config.host_memory`` to this process (the train and benchmark entry points)."""
        host_memory.configure(self.config.get("host_memory", "reuse"))

    @staticmethod
    def _train_step(family, state, batch, root):
        key = rng.step_key(root, "train", state.step)
        state, metrics = family.train_step(state, batch, key)
        return state, metrics, all_finite(metrics)

    def put_batch(self, batch: dict) -> dict:
        """A whole (global) host batch on the devices, split over the mesh; each process puts
        only its rows (``sharding.Placement.put_global``)."""
        return self.placement.put_global(batch)

    def train_batch(self, step: int) -> dict:
        """The global batch of train step ``step`` (0-based) on the mesh; each process reads only
        its own block of rows (``Batcher.batch(step, process_index, process_count)``)."""
        if self.placement.multiprocess:
            local = self.batcher.batch(step, jax.process_index(), jax.process_count())
            return self.placement.put_local(local)
        return self.placement.put_local(self.batcher.batch(step))

    def initial_state(self):
        example = self.train_batch(0)
        init = jax.jit(self.family.init_state, out_shardings=self.state_sharding)
        return init(rng.purpose_key(self.root, "init"), example)

    def example_batch(self) -> dict:
        """A host batch with the train batches' shapes and dtypes (from the eval split: loading a
        workdir reads no train data)."""
        batch = self.eval_source[np.zeros(self.config.batch_size, np.int64)]
        return {key: value for key, value in batch.items() if key != "mask"}

    def state_shapes(self):
        """The state's ``ShapeDtypeStruct`` tree (no copy of the split to the devices, no train
        data read), traced once."""
        return self._state_shapes

    @functools.cached_property
    def _state_shapes(self):
        example = jax.eval_shape(lambda: self.example_batch())
        return jax.eval_shape(self.family.init_state, rng.purpose_key(self.root, "init"), example)

    def abstract_state(self):
        """``state_shapes`` placed as the state lives on this mesh (``state_sharding``): orbax
        restores a checkpoint onto it whatever the device count it was saved from."""
        return jax.tree.map(
            lambda x, where: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where),
            self.state_shapes(),
            self.state_sharding,
        )

    def restore_or_init(self, checkpointer: checkpoint.Checkpointer):
        """The newest intact checkpoint's state and step (newer damaged ones are moved aside with a
        line each: ``checkpoint.Checkpointer.resume``), or the initial state at step 0."""
        state, step = checkpointer.resume(self.abstract_state())
        if step is None:
            return self.initial_state(), 0
        return state, step

    def evaluate(self, state, step: int) -> dict[str, float]:
        """Per-example eval metrics averaged over the whole eval split (float64 accumulation)."""
        eval_key = rng.step_key(self.root, "eval", step)
        batch_size = self.config.eval_batch_size

        def one_batch(batch):
            # The key of batch b is fold_in(eval_key, b) (b = its first example // batch size).
            key = jax.random.fold_in(eval_key, int(batch["index"][0]) // batch_size)
            return self.eval_step(state, self.put_batch(batch), key)

        per_example = batched.collect(
            batched.batches(
                len(self.eval_source),
                batch_size,
                self.eval_source.__getitem__,
                multiple=self.placement.num_devices,
            ),
            one_batch,
            fetch=self.placement.fetch,
        )
        averages = {
            key: float(np.mean(np.asarray(value, np.float64))) for key, value in per_example.items()
        }
        summarize = getattr(self.family, "summarize_eval", None)
        if summarize is not None:
            averages.update(summarize(averages))
        if self.sample_metrics is not None:
            averages.update(self.sample_metrics(state, step, self.eval_source))
        return {f"eval/{key}": value for key, value in averages.items()}

    def save_grids(self, state, step: int, writer: writers.MetricWriter) -> None:
        # Spread over the split: some test files are sorted by class.
        count = min(self.config.num_grid_examples, len(self.eval_source))
        grid_batch = self.eval_source[np.linspace(0, len(self.eval_source) - 1, count).astype(int)]
        # Whole on every device: a grid's few examples need not divide by the device count.
        grid_batch = self.placement.put_replicated(grid_batch)
        outputs = self.grids(state, grid_batch, rng.purpose_key(self.root, "grids"))
        outputs = self.placement.fetch(outputs)  # every process: a gather may be collective
        if not distributed.is_writer():
            return
        directory = self.workdir / "samples"
        directory.mkdir(exist_ok=True)
        for name, batch in outputs.items():
            grid = images.save_grid(directory / f"{name}_{step:07d}.png", batch)
            writer.write_image(step, name, grid)

    def write_config(self, start_step: int) -> None:
        if not distributed.is_writer():
            return
        text = self.config.to_json_best_effort(indent=2, sort_keys=True)
        path = self.workdir / "config.json"
        if path.exists() and path.read_text() != text:
            path = self.workdir / f"config.resumed_at_{start_step}.json"
            say(f"The config differs from the one this workdir started with; writing {path.name}.")
        path.write_text(text)

    def run(self) -> int:
        """Trains to ``config.num_train_steps``; returns the process exit status."""
        config = self.config
        _ = (
            self.batcher
        )  # reads the train split: a data error stops the run before the workdir exists
        self.configure_host()
        _ = self.batcher  # reads the train split: a data error comes before the workdir is touched
        self.workdir.mkdir(parents=True, exist_ok=True)
        checkpointer = checkpoint.Checkpointer(
            self.workdir / "checkpoints", keep=config.checkpoints_to_keep
        )
        best = best_checkpoint.from_config(config, self.workdir)  # None unless configured
        try:
            state, start_step = self.restore_or_init(checkpointer)
            self.write_config(start_step)
            if start_step >= config.num_train_steps:
                say(
                    f"Run already finished: checkpoint at step {start_step} "
                    f"(num_train_steps={config.num_train_steps}) in {checkpointer.directory}."
                )
                return 0
            if start_step:
                say(f"Resuming from checkpoint {checkpointer.path(start_step)}.")
            attempt = provenance.start(self, start_step)  # provenance.json: this attempt
            writer = (
                writers.MetricWriter(self.workdir, resume_step=start_step)
                if distributed.is_writer()
                else writers.NullWriter()
            )
            try:
                with StopSignal() as stop:  # a signal while compiling is handled at the first step
                    self._advise_on_host_memory(state, start_step)
                    status = self._loop(state, start_step, checkpointer, writer, stop, best)
                    return attempt.end(status, checkpointer)
            finally:
                writer.close()
        finally:
            checkpointer.close()
            if best is not None:
                best.close()

    def _advise_on_host_memory(self, state, step: int) -> None:
        """Says when the step's temporaries are too large for ``config.host_memory`` to keep.

        It compiles the step ahead of time for its memory analysis; the loop's first call reuses
        that executable, so this costs a lowering, not a compilation.
        """
        if not host_memory.huge_pages_could_help():
            return
        batch = self.train_batch(step)
        compiled = self.train_step.lower(state, batch, self.root).compile()
        advice = host_memory.huge_pages_advice(host_memory.temporary_bytes(compiled))
        if advice is not None:
            say(f"Note: {advice}.")

    def _loop(self, state, start_step, checkpointer, writer, stop, best=None) -> int:
        config, last_step = self.config, self.config.num_train_steps
        progress = writers.Progress(
            start_step, last_step, stream=None if distributed.is_writer() else open(os.devnull, "w")
        )
        pending = None  # (step, metrics, finite) of the step before the one just dispatched
        window_start, window_step = time.perf_counter(), start_step
        try:
            for step in range(start_step + 1, last_step + 1):
                if stop.received is not None:
                    return self._stop_on_signal(state, step - 1, checkpointer, stop.received)
                if distributed.stop_agreed(step - 1):  # SIGTERM reached one of the processes
                    return self._stop_on_signal(state, step - 1, checkpointer, signal.SIGTERM)
                batch = self.train_batch(step - 1)
                state, metrics, finite = self.train_step(state, batch, self.root)
                if pending is not None:
                    self._check_finite(*pending)
                pending = (step, metrics, finite)
                if is_due(step, config.log_every_steps, last_step):
                    self._check_finite(*pending)
                    now = time.perf_counter()
                    rate = (step - window_step) / (now - window_start)
                    window_start, window_step = now, step
                    writer.write(step, {**metrics, f"{PERF_PREFIX}steps_per_sec": rate})
                    progress.update(step, loss_summary(metrics), force=True)
                else:
                    progress.update(step)
                if is_due(step, config.checkpoint_every_steps, last_step):
                    self._check_finite(*pending)
                    checkpointer.save(step, state)
                    say(f"step {step}: checkpoint saved")
                if is_due(step, config.eval_every_steps, last_step):
                    eval_metrics = self.evaluate(state, step)
                    writer.write(step, eval_metrics)
                    if best is not None:
                        best.update(step, state, eval_metrics)
                    self.save_grids(state, step, writer)
        except NonFiniteError as error:
            checkpointer.wait()
            # Named only if it committed and verifies (checked on the host, off the devices).
            good, passed = None, ""
            try:
                _, good, skipped = checkpointer.newest_intact(
                    checkpoint.on_host(self.abstract_state()), before=error.step
                )
                if skipped:
                    passed = f" (newer: {'; '.join(f'{s.step} {s.reason}' for s in skipped)})"
            except checkpoint.CheckpointError as failure:
                passed = f" ({failure})"
            if good is not None:
                where = f"checkpoint {checkpointer.path(good)}{passed}"
            else:
                where = f"none{passed}" if passed else "none yet"
            print(
                f"error: {error}. Stopped; the last good checkpoint is {where}, left intact.",
                file=sys.stderr,
            )
            return 1
        finally:
            progress.close()
        say(f"Finished {last_step} steps; final checkpoint {checkpointer.path(last_step)}.")
        return 0

    @staticmethod
    def _check_finite(step: int, metrics: dict, finite: jax.Array) -> None:
        if not bool(finite):
            raise NonFiniteError(step, jax.device_get(metrics))

    def _stop_on_signal(self, state, step: int, checkpointer, signum: int) -> int:
        checkpointer.wait()
        if step not in checkpointer.complete_steps():
            checkpointer.save(step, state)
        checkpointer.wait()
        say(
            f"Stopped by {signal.Signals(signum).name}: checkpoint {checkpointer.path(step)} saved."
        )
        return 128 + signum


def main(config, workdir: str) -> int:
    """Runs one experiment; bad input (config, data, checkpoint) is reported as one line, status 1."""
    try:
        if config.get("num_replicas", 1) != 1:  # seeds as one program (experiments.replicas)
            from experiments import replicas

            run = replicas.Replicas(config, workdir)
            check_training_paths(config)
            return run.run()
        experiment = Experiment(config, workdir)
        check_training_paths(config)  # files the in-training metrics need, before the workdir
        return experiment.run()
    except (ConfigError, data.DataError, checkpoint.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
