"""Starts one run as N processes on this machine, as a cluster would (for tests and debugging).

Usage: python -m experiments.launch_local --num_processes=N [--devices_per_process=K]
           -- --config=FILE --workdir=DIR [--config.KEY=VALUE ...]

Each process is ``python -m experiments.main ARGS`` with ``--coordinator_address`` on 127.0.0.1 (a
free port), ``--num_processes``, its ``--process_id`` and short heartbeat and shutdown timeouts, so
JAX's own distributed runtime connects them (``experiments.distributed``). ``--devices_per_process``
gives each process that many CPU devices (``--xla_force_host_platform_device_count``), to try a
multi-host layout on one CPU.

- A process that exits with an error or is killed ends the others: one line names it, the others
  get SIGTERM and, after ``--grace_seconds``, SIGKILL; the status is non-zero. Rerunning the same
  command resumes from the last checkpoint.
- SIGTERM or Ctrl-C to the launcher is passed on as SIGTERM: every process stops at one agreed
  step with one checkpoint, and the launcher exits with their status (143).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from absl import app, flags

from experiments import cli

_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes to start (>= 1).")
_DEVICES = flags.DEFINE_integer(
    "devices_per_process", 0, "CPU devices per process (0: the platform's own devices)."
)
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 10, "Seconds without a heartbeat before JAX declares a process lost."
)
_SHUTDOWN = flags.DEFINE_integer(
    "shutdown_timeout", 10, "Seconds a finishing process waits for the others."
)
_GRACE = flags.DEFINE_integer(
    "grace_seconds", 15, "Seconds between SIGTERM and SIGKILL for the survivors of a lost process."
)
POLL_SECONDS = 0.1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def commands(main_args: list[str], num_processes: int, port: int) -> list[list[str]]:
    """The ``experiments.main`` command line of each process."""
    return [
        [
            sys.executable,
            "-m",
            "experiments.main",
            *main_args,
            f"--coordinator_address=127.0.0.1:{port}",
            f"--num_processes={num_processes}",
            f"--process_id={index}",
            f"--heartbeat_timeout={_HEARTBEAT.value}",
            f"--shutdown_timeout={_SHUTDOWN.value}",
        ]
        for index in range(num_processes)
    ]


def environment(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    if devices:
        flag = f"--xla_force_host_platform_device_count={devices}"
        kept = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
        env["XLA_FLAGS"] = " ".join([*kept, flag])
        env["JAX_PLATFORMS"] = "cpu"
    return env


def describe(status: int) -> str:
    if status < 0:
        return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


def stop(processes: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to every running process, then SIGKILL to those still running after ``grace``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def launch(main_args: list[str], num_processes: int) -> int:
    port = free_port()
    env = environment(_DEVICES.value)
    received: list[int] = []

    def on_signal(signum, frame):
        del frame
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    processes: list[subprocess.Popen] = []
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for command in commands(main_args, num_processes, port):
            processes.append(subprocess.Popen(command, env=env))
        while True:
            statuses = [process.poll() for process in processes]
            if all(status is not None for status in statuses):
                break
            failed = [
                (index, status)
                for index, status in enumerate(statuses)
                if status not in (None, 0) and not received
            ]
            if failed:
                index, status = failed[0]
                print(
                    f"error: process {index} of {num_processes} {describe(status)}; "
                    "stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                stop(processes, _GRACE.value)
                return status if status > 0 else 128 - status
            time.sleep(POLL_SECONDS)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop(processes, _GRACE.value)
    statuses = [process.returncode for process in processes]
    worst = max(statuses, key=lambda s: (s != 0, abs(s)))
    return worst if worst >= 0 else 128 - worst


def main(argv) -> None:
    main_args = argv[1:]
    if main_args and main_args[0] == "--":
        main_args = main_args[1:]
    if _NUM_PROCESSES.value is None or _NUM_PROCESSES.value < 1:
        cli.fail("--num_processes=N (N >= 1) is required")
    if _DEVICES.value < 0:
        cli.fail(f"--devices_per_process={_DEVICES.value} must be >= 0")
    if not any(arg.startswith("--config") for arg in main_args):
        cli.fail("give the experiments.main arguments after '--' (--config=FILE --workdir=DIR)")
    sys.exit(launch(main_args, _NUM_PROCESSES.value))


if __name__ == "__main__":
    app.run(main)
