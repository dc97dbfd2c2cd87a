"""Seeds as one program: ``config.num_replicas = K`` trains seeds ``seed ... seed+K-1`` in one step.

Every replica is an ordinary run in its own workdir, ``WORKDIR/replica_<i>`` (``replica_workdirs``),
with its own ``config.json`` (``replica_config``: ``seed + i``, ``num_replicas = 1`` and the base
run's data seed written out), ``checkpoints/``, ``metrics.jsonl``, ``perf.jsonl``,
``provenance.json`` and ``samples/``: ``sample``, ``evaluate`` and ``report`` read it like any
run, and ``experiments.main`` on it alone continues it as a standalone run.

The numbers are those of the K standalone runs. Replica ``i``'s root key is
``rng.root_key(seed + i)``; its initial state comes from the standalone run's own compiled
``init_state`` with its own key (bit for bit the standalone run's); all replicas see the one data
stream of ``experiments.train.data_seed(config)`` (the base run's), so replica ``i`` draws what a
standalone run with seed ``seed + i`` and that data seed draws. The train step is compiled once
for all K replicas, stacked along a leading axis of every state leaf, with
``config.replica_loop``:

- ``vmap``: ``jax.vmap`` of the family's ``train_step`` over the replicas; the batch is shared
  (not batched). The step counter is passed unbatched (``state.replace(step=...)``), so that what
  depends only on the step (a lazy regulariser's ``lax.cond``) stays one branch.
- ``unroll``: the K steps written out one after the other in the same program (on CPU a
  convolution under ``vmap`` becomes a grouped convolution, slower there than K plain ones).
- ``auto`` (the default): ``unroll`` on a CPU backend when the state has a leaf of rank >= 4 (a
  convolution kernel), ``vmap`` otherwise.

A replica whose metrics are not finite at step ``s`` is stopped: the step keeps its state frozen
(a per-replica ``alive`` flag), the run writes one ``error:`` line naming the replica, its seed,
the step and its last good checkpoint, marks it in ``<its workdir>/stopped.json`` and nothing more
is written there; the others go on. The run's status is 1 when a replica stopped.

Placement: the stacked state is replicated over the mesh; the batch is split over ``data`` as
usual (``config.mesh.fsdp`` must be 1). Replicas need a single process.

Resume: every replica resumes from its newest intact checkpoint; those of the replicas that have
not stopped must be at one step (a kill between two replicas' saves can leave them apart: the
error names the steps). A stopped replica stays stopped.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checkpoint, provenance, rng, writers
from experiments.config_checks import check_config
from experiments.errors import ConfigError

REPLICA_DIR = "replica_{index}"
STOPPED_FILE = "stopped.json"
LOOPS = ("vmap", "unroll")


def num_replicas(config) -> int:
    return config.get("num_replicas", 1)


def replica_workdirs(workdir: str | Path, count: int) -> list[Path]:
    """``WORKDIR/replica_<i>`` for ``i < count``."""
    return [Path(workdir) / REPLICA_DIR.format(index=i) for i in range(count)]


def replica_config(config, index: int):
    """Replica ``index``'s config as a standalone run: ``seed + index``, ``num_replicas = 1`` and
    ``data_seed`` set to the base run's, so that the run continued alone sees the same data."""
    from experiments.train import data_seed

    replica = config.copy_and_resolve_references()
    with replica.unlocked():
        replica.data_seed = data_seed(config)
        replica.seed = config.seed + index
        replica.num_replicas = 1
    return replica.lock()


def choose_loop(config, state_shapes) -> str:
    """``config.replica_loop``, with ``auto`` resolved (see the module docstring)."""
    loop = config.get("replica_loop", "auto")
    if loop != "auto":
        return loop
    convolutional = any(len(leaf.shape) >= 4 for leaf in jax.tree.leaves(state_shapes))
    return "unroll" if convolutional and jax.default_backend() == "cpu" else "vmap"


def stack(states):
    """One state whose every leaf has a leading replica axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def unstack(stacked, index: int):
    """Replica ``index``'s state."""
    return jax.tree.map(lambda leaf: leaf[index], stacked)


def with_step(state, step):
    """``state`` with its ``step`` field replaced (a flax struct, dataclass or named tuple);
    ``None`` when the state cannot be rebuilt that way."""
    for method in ("replace", "_replace"):
        if callable(getattr(state, method, None)):
            return getattr(state, method)(step=step)
    return None


def freeze(keep: jax.Array, new, old):
    """``new`` for the replicas where ``keep``, ``old`` for the others (leaf by leaf)."""

    def select(n, o):
        if jax.dtypes.issubdtype(n.dtype, jax.dtypes.prng_key):
            data = select(jax.random.key_data(n), jax.random.key_data(o))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(n))
        return jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(select, new, old)


def replica_step(family, loop: str, stacked, batch, roots, alive):
    """One train step of every replica: ``(state, metrics, finite, alive)``.

    ``metrics`` and ``finite`` have a leading replica axis; a replica that was not ``alive``, or
    whose metrics are not finite, keeps its state (``alive`` comes back False for it).
    """
    from experiments.train import all_finite

    def one(state, root, step):
        state, metrics = family.train_step(state, batch, rng.step_key(root, "train", step))
        return state, metrics, all_finite(metrics)

    if loop == "vmap":
        step = jnp.max(stacked.step)  # every live replica's (a stopped one's is older)

        def mapped(state, root):
            unbatched = with_step(state, step)
            if unbatched is None:  # still right; a cond on the step then runs both branches
                return one(state, root, state.step)
            return one(unbatched, root, step)

        new, metrics, finite = jax.vmap(mapped)(stacked, roots)
    else:
        count = roots.shape[0]
        outputs = [one(unstack(stacked, i), roots[i], stacked.step[i]) for i in range(count)]
        new, metrics, finite = stack(outputs)
    keep = alive & finite
    return freeze(keep, new, stacked), metrics, finite, keep


def check_supported(config, mesh) -> None:
    if jax.process_count() > 1:
        raise ConfigError(
            f"config.num_replicas={num_replicas(config)}: replicas run in a single process "
            f"(this run has {jax.process_count()}); run the seeds as separate runs"
        )
    if mesh.shape.get("fsdp", 1) > 1:
        raise ConfigError(
            f"config.num_replicas={num_replicas(config)}: the stacked replicas are replicated "
            "over the mesh; config.mesh.fsdp must be 1"
        )


class Replicas:
    """K replicas of one config trained as one compiled step (see the module docstring)."""

    def __init__(self, config, workdir: str | Path, workdirs: list[Path] | None = None):
        from experiments.train import Experiment

        check_config(config)
        count = num_replicas(config)
        self.config = config
        self.workdirs = workdirs or replica_workdirs(workdir, count)
        self.experiments = [
            Experiment(replica_config(config, i), self.workdirs[i]) for i in range(count)
        ]
        base = self.base = self.experiments[0]
        check_supported(config, base.mesh)
        for experiment in self.experiments[1:]:  # one compiled eval step and grids for all
            experiment.eval_step, experiment.grids = base.eval_step, base.grids
        self.seeds = [experiment.config.seed for experiment in self.experiments]
        self.roots = jax.device_put(
            jnp.stack([experiment.root for experiment in self.experiments]), base.replicated
        )
        self.loop = choose_loop(config, base.state_shapes())
        step = functools.partial(replica_step, base.family, self.loop)
        self.train_step = jax.jit(
            step,
            donate_argnums=0,
            out_shardings=base.replicated,
            compiler_options=base.compiler_options,
        )

    def __len__(self) -> int:
        return len(self.experiments)

    def initial_states(self) -> list:
        """Each replica's initial state, from the standalone run's compiled ``init_state``."""
        base = self.base
        example = base.train_batch(0)
        init = jax.jit(base.family.init_state, out_shardings=base.state_sharding)
        return [
            init(rng.purpose_key(experiment.root, "init"), example)
            for experiment in self.experiments
        ]

    def place(self, states):
        return jax.device_put(stack(states), self.base.replicated)

    def initial_state(self):
        """``(stacked state, alive)`` at step 0."""
        alive = jax.device_put(np.ones(len(self), bool), self.base.replicated)
        return self.place(self.initial_states()), alive

    def stopped(self) -> list[int]:
        return [i for i, path in enumerate(self.workdirs) if (path / STOPPED_FILE).exists()]

    def restore_or_init(self, checkpointers):
        """``(stacked state, alive, step)``: every replica's newest intact checkpoint, or the
        initial states at step 0."""
        stopped = set(self.stopped())
        states, steps = [], []
        for experiment, checkpointer in zip(self.experiments, checkpointers, strict=True):
            state, step = checkpointer.resume(experiment.abstract_state())
            states.append(state)
            steps.append(step)
        live = {steps[i] for i in range(len(self)) if i not in stopped}
        if len(live) > 1:
            shown = ", ".join(
                f"{self.workdirs[i].name} at {steps[i]}"
                for i in range(len(self))
                if i not in stopped
            )
            raise checkpoint.CheckpointError(
                f"the replicas' newest intact checkpoints are at different steps ({shown}); move "
                "the newer ones out of checkpoints/ to resume every replica from one step"
            )
        step = live.pop() if live else None
        if step is None:
            step = 0
        initial = None
        for i in range(len(self)):
            if states[i] is None or i in stopped:  # a stopped replica's slot is never written
                if initial is None:
                    initial = self.initial_states()
                states[i] = initial[i]
        flags = np.asarray([i not in stopped for i in range(len(self))])
        if not flags.any():
            raise checkpoint.CheckpointError(
                f"every replica has stopped ({', '.join(str(p / STOPPED_FILE) for p in self.workdirs)})"
            )
        return self.place(states), jax.device_put(flags, self.base.replicated), step

    def run(self) -> int:
        from experiments.train import StopSignal, say

        config, base = self.config, self.base
        _ = base.batcher  # reads the train split: a data error comes before any workdir exists
        base.configure_host()
        for path in self.workdirs:
            path.mkdir(parents=True, exist_ok=True)
        checkpointers = [
            checkpoint.Checkpointer(path / "checkpoints", keep=config.checkpoints_to_keep)
            for path in self.workdirs
        ]
        try:
            stacked, alive, start_step = self.restore_or_init(checkpointers)
            for experiment in self.experiments:
                experiment.write_config(start_step)
            if start_step >= config.num_train_steps:
                say(
                    f"Run already finished: {len(self)} replicas at step {start_step} "
                    f"(num_train_steps={config.num_train_steps})."
                )
                return 0
            if start_step:
                say(f"Resuming {len(self)} replicas from step {start_step}.")
            live = [i for i, flag in enumerate(alive.tolist()) if flag]
            attempts = {i: provenance.start(self.experiments[i], start_step) for i in live}
            writer_list = {
                i: writers.MetricWriter(self.workdirs[i], resume_step=start_step) for i in live
            }
            try:
                with StopSignal() as stop:
                    status = self._loop(
                        stacked, alive, start_step, checkpointers, writer_list, stop, set(live)
                    )
                for i, attempt in attempts.items():
                    attempt.end(status, checkpointers[i])
                return status
            finally:
                for writer in writer_list.values():
                    writer.close()
        finally:
            for checkpointer in checkpointers:
                checkpointer.close()

    def _loop(self, stacked, alive, start_step, checkpointers, writer_list, stop, live) -> int:
        from experiments.train import PERF_PREFIX, is_due, loss_summary, say

        config, base, last_step = self.config, self.base, self.config.num_train_steps
        progress = writers.Progress(start_step, last_step)
        stopped_any = False
        pending = None
        window_start, window_step = time.perf_counter(), start_step

        def check(step, metrics, finite):
            nonlocal stopped_any
            finite = np.asarray(finite)
            for i in sorted(live):
                if not finite[i]:
                    self._stop_replica(i, step, metrics, checkpointers[i])
                    live.discard(i)
                    stopped_any = True

        try:
            for step in range(start_step + 1, last_step + 1):
                if stop.received is not None:
                    return self._stop_on_signal(stacked, step - 1, checkpointers, live, stop)
                batch = base.train_batch(step - 1)
                stacked, metrics, finite, alive = self.train_step(stacked, batch, self.roots, alive)
                if pending is not None:
                    check(*pending)
                pending = (step, metrics, finite)
                logged = is_due(step, config.log_every_steps, last_step)
                saved = is_due(step, config.checkpoint_every_steps, last_step)
                evaluated = is_due(step, config.eval_every_steps, last_step)
                if logged or saved or evaluated:
                    check(*pending)
                if not live:
                    return 1
                if logged:
                    now = time.perf_counter()
                    rate = (step - window_step) / (now - window_start)
                    window_start, window_step = now, step
                    host = jax.device_get(metrics)
                    for i in sorted(live):
                        values = {key: value[i] for key, value in host.items()}
                        writer_list[i].write(step, {**values, f"{PERF_PREFIX}steps_per_sec": rate})
                    first = {key: value[min(live)] for key, value in host.items()}
                    progress.update(step, loss_summary(first), force=True)
                else:
                    progress.update(step)
                if saved:
                    for i in sorted(live):
                        checkpointers[i].save(step, unstack(stacked, i))
                    say(f"step {step}: checkpoints of {len(live)} replicas saved")
                if evaluated:
                    for i in sorted(live):
                        experiment, state = self.experiments[i], unstack(stacked, i)
                        writer_list[i].write(step, experiment.evaluate(state, step))
                        experiment.save_grids(state, step, writer_list[i])
        finally:
            progress.close()
        if stopped_any:
            say(
                f"Finished {last_step} steps; {len(live)} of {len(self)} replicas went the whole way."
            )
            return 1
        say(f"Finished {last_step} steps of {len(self)} replicas.")
        return 0

    def _stop_replica(self, index: int, step: int, metrics, checkpointer) -> None:
        """Marks replica ``index`` stopped at ``step``, with one ``error:`` line."""
        from experiments.train import NonFiniteError

        values = {key: value[index] for key, value in jax.device_get(metrics).items()}
        error = NonFiniteError(step, values)
        checkpointer.wait()
        experiment = self.experiments[index]
        good = None
        try:
            _, good, _ = checkpointer.newest_intact(
                checkpoint.on_host(experiment.abstract_state()), before=step
            )
        except checkpoint.CheckpointError:
            pass
        where = f"checkpoint {checkpointer.path(good)}" if good is not None else "none yet"
        (self.workdirs[index] / STOPPED_FILE).write_text(
            json.dumps({"step": step, "reason": str(error), "last_good_checkpoint": good}) + "\n"
        )
        print(
            f"error: replica {index} (seed {self.seeds[index]}, {self.workdirs[index]}): {error}. "
            f"Stopped it; its last good checkpoint is {where}, left intact; the other replicas "
            "go on.",
            file=sys.stderr,
            flush=True,
        )

    def _stop_on_signal(self, stacked, step, checkpointers, live, stop) -> int:
        from experiments.train import say

        for i in sorted(live):
            checkpointers[i].wait()
            if step not in checkpointers[i].complete_steps():
                checkpointers[i].save(step, unstack(stacked, i))
        for i in sorted(live):
            checkpointers[i].wait()
        name = signal.Signals(stop.received).name
        say(f"Stopped by {name}: checkpoints of {len(live)} replicas at step {step} saved.")
        return 128 + stop.received


def benchmark(config, steps: int, warmup: int) -> dict:
    """The replicas' compiled step on one batch: ``median_step_ms`` (one step of all K replicas)
    and ``replica_steps_per_s`` (K over it), to set against ``1000 / median_step_ms`` of the
    same config with ``num_replicas=1`` (K standalone runs one after another)."""
    import statistics
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        run = Replicas(config, workdir)
    run.base.configure_host()
    stacked, alive = run.initial_state()
    batch = run.base.train_batch(0)
    start = time.perf_counter()
    run.train_step.lower(stacked, batch, run.roots, alive).compile()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        stacked, metrics, _, alive = run.train_step(stacked, batch, run.roots, alive)
        jax.block_until_ready(stacked)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        stacked, metrics, _, alive = run.train_step(stacked, batch, run.roots, alive)
        jax.block_until_ready(stacked)
        times.append(time.perf_counter() - start)
    if not np.asarray(alive).all():
        raise RuntimeError(f"non-finite metrics during the benchmark: {jax.device_get(metrics)}")
    step_ms = statistics.median(times) * 1e3
    return dict(
        family=config.family,
        batch_size=config.batch_size,
        num_replicas=len(run),
        replica_loop=run.loop,
        median_step_ms=round(step_ms, 3),
        replica_steps_per_s=round(len(run) / (step_ms / 1e3), 2),
        compile_s=round(compile_s, 3),
        recompiles=run.train_step._cache_size() - 1,
        steps=steps,
        warmup=warmup,
        backend=jax.default_backend(),
        cpu_count=len(os.sched_getaffinity(0)),
        jax=jax.__version__,
    )
