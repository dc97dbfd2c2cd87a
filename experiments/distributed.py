"""Several processes, one run: JAX's own distributed runtime (``jax.distributed``), nothing home-made.

``initialize`` connects this process to the others when ``experiments.main`` is given
``--coordinator_address``, ``--num_processes`` and ``--process_id``, or when it runs under a cluster
that JAX detects (SLURM, Open MPI, a TPU pod or GKE, by JAX's own detection) with more than one
process. With one process it does nothing. After it, ``jax.devices()`` lists every process's
devices and the run's mesh spans them all (``experiments.sharding``).

What the train loop does with several processes (``experiments.train``):

- each process reads only its own block of every global batch
  (``Batcher.batch(step, process_index, process_count)``) and the global array is assembled with
  ``jax.make_array_from_process_local_data``; the numbers are those of one process with all the
  devices;
- only process 0 writes ``metrics.jsonl``, TensorBoard events, PNG grids and ``config.json``;
  orbax saves and restores checkpoints collectively (every process calls it, each writes its own
  shards);
- a stop is agreed: SIGTERM (and SIGINT, turned into a SIGTERM of the process itself) reaches
  JAX's preemption service, and every process stops at the same step
  (``multihost_utils.reached_preemption_sync_point``) with one checkpoint; a non-finite metric is
  a value of the global step, seen by every process at the same step;
- a process that dies is noticed by the others through the coordination service's heartbeats
  (``heartbeat_timeout`` seconds); they exit non-zero and a rerun resumes from the last
  checkpoint.
"""

from __future__ import annotations

import os
import signal

import jax

from experiments.errors import ConfigError

DEFAULT_HEARTBEAT_TIMEOUT = 100  # JAX's default: seconds without a heartbeat before a peer is lost
DEFAULT_SHUTDOWN_TIMEOUT = 60  # seconds a finishing process waits for the others (JAX's: 300)


def detected_cluster() -> tuple[str, int] | None:
    """``(name, process count)`` of the cluster environment JAX's auto-detection finds, or None.

    Uses JAX's own detectors (the ones ``jax.distributed.initialize()`` without arguments tries, in
    its order), so a cluster is recognised exactly when JAX can initialise from it.
    """
    try:
        from jax._src.clusters import ClusterEnv
    except ImportError:  # a JAX without the detectors: only explicit flags work
        return None
    for env in ClusterEnv._cluster_types:
        if getattr(env, "opt_in_only_method", False):
            continue
        try:
            if env.is_env_present():
                return env.__name__, int(env.get_process_count())
        except Exception:  # a detector that cannot decide (e.g. no metadata server) finds nothing
            continue
    return None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT,
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT,
) -> bool:
    """Connects to the other processes of the run; returns whether this is a multi-process run.

    Raises ``ConfigError`` for an incomplete or impossible set of flags.
    """
    given = {
        "--coordinator_address": coordinator_address,
        "--num_processes": num_processes,
        "--process_id": process_id,
    }
    if any(value is not None for value in given.values()):
        missing = [flag for flag, value in given.items() if value is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} missing: give all three flags or none")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ConfigError(
                f"--process_id={process_id} must lie in [0, --num_processes={num_processes})"
            )
        if num_processes == 1:
            return False
        kwargs = dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    else:
        cluster = detected_cluster()
        if cluster is None or cluster[1] <= 1:
            return False
        kwargs = {}
    jax.distributed.initialize(
        **kwargs,
        heartbeat_timeout_seconds=heartbeat_timeout,
        shutdown_timeout_seconds=shutdown_timeout,
    )
    return True


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes the run's logs, grids and config (process 0)."""
    return jax.process_index() == 0


def stop_agreed(step: int) -> bool:
    """With several processes: whether a SIGTERM reached any of them and ``step`` is the step at
    which all stop (the same answer in every process). False with one process."""
    if not is_multiprocess():
        return False
    from jax.experimental import multihost_utils

    return multihost_utils.reached_preemption_sync_point(step)


def forward_interrupt_to_preemption(signum, frame) -> None:
    """A SIGINT handler that turns Ctrl-C into a SIGTERM of this process, which JAX's preemption
    service receives: every process then stops at one agreed step."""
    del signum, frame
    os.kill(os.getpid(), signal.SIGTERM)
