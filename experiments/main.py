"""Trains one experiment (or resumes it).

Usage: python -m experiments.main --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]
         [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]

Running it again with the same workdir resumes from the latest checkpoint; a finished run says so.
A bad config value, path or data file is reported as one line ``error: ...`` on stderr before the
workdir is touched.

Several processes (hosts): under a cluster JAX detects (SLURM, Open MPI, a TPU pod, GKE) every
process runs this same command and they connect by themselves; elsewhere give each process the
three flags (``experiments.distributed``; ``experiments.launch_local`` does it on one machine).
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 (several processes without a cluster)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 ... N-1.")
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 100, "Seconds without a heartbeat before a process counts as lost."
)
_SHUTDOWN = flags.DEFINE_integer(
    "shutdown_timeout", 60, "Seconds a finishing process waits for the others."
)


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value:
        cli.fail("missing --workdir=DIR")
    try:
        cli.check_dir(_WORKDIR.value, "--workdir")
    except cli.UsageError as error:
        cli.fail(str(error))
    cli.quiet_library_logs()
    from experiments import distributed, train  # after flag parsing: jax is slow to import
    from experiments.errors import ConfigError

    try:
        distributed.initialize(
            _COORDINATOR.value,
            _NUM_PROCESSES.value,
            _PROCESS_ID.value,
            heartbeat_timeout=_HEARTBEAT.value,
            shutdown_timeout=_SHUTDOWN.value,
        )
    except ConfigError as error:
        cli.fail(str(error))

    sys.exit(train.main(_CONFIG.value, _WORKDIR.value))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
