"""Where a run's numbers go: ``metrics.jsonl`` (one JSON object per logged step), ``perf.jsonl``
(the ``perf/`` timings), TensorBoard event files (written by tensorboardX, no TensorFlow needed; the
timings too) and a progress line on the terminal.

``metrics.jsonl`` holds only numbers the config and seed decide, so two runs of one config on one
machine write it byte for byte the same; the wall-clock timings, which differ, go to ``perf.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.jsonl"
PERF_FILE = "perf.jsonl"
PERF_PREFIX = "perf/"  # keys of timings: written to PERF_FILE, not METRICS_FILE


def to_python(value):
    """A JSON-friendly float/int/list from a numpy or jax scalar or array."""
    array = np.asarray(value)
    if array.ndim == 0:
        return array.item()
    return array.tolist()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drops records logged after ``last_step`` (a resumed run logs those steps again, identically).

    Rewrites through a temporary file and an atomic rename, so a kill here loses nothing.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by a kill
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line)
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(f"{line}\n" for line in kept))
    os.replace(temporary, path)


def read_metrics(workdir: str | os.PathLike, name: str = METRICS_FILE) -> list[dict]:
    """All records of a workdir's ``metrics.jsonl`` (or ``name``, e.g. ``PERF_FILE``)."""
    path = Path(workdir) / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
    """Appends ``{"step": s, **metrics}`` lines to metrics.jsonl (the ``perf/`` keys to perf.jsonl)
    and scalars to TensorBoard."""

    def __init__(self, workdir: Path, resume_step: int):
        self.path = workdir / METRICS_FILE
        self.perf_path = workdir / PERF_FILE
        truncate_metrics(self.path, resume_step)
        truncate_metrics(self.perf_path, resume_step)
        self._file = self.path.open("a")
        self._perf_file = self.perf_path.open("a")
        from tensorboardX import SummaryWriter  # imported here: it is slow to import

        self._tensorboard = SummaryWriter(logdir=str(workdir / "tensorboard"), flush_secs=30)

    def write(self, step: int, metrics: dict) -> None:
        values = {key: to_python(value) for key, value in metrics.items()}
        perf = {key: value for key, value in values.items() if key.startswith(PERF_PREFIX)}
        rest = {key: value for key, value in values.items() if key not in perf}
        for file, part in ((self._file, rest), (self._perf_file, perf)):
            if part:
                file.write(json.dumps({"step": step, **part}) + "\n")
                file.flush()
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self._tensorboard.add_scalar(key, value, step)

    def write_image(self, step: int, name: str, image: np.ndarray) -> None:
        """``image`` HWC uint8."""
        self._tensorboard.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        self._perf_file.close()
        self._tensorboard.close()


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """A one-line progress bar with steps/s and ETA on a terminal; plain lines otherwise."""

    def __init__(self, start_step: int, total_steps: int, stream=None):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.start_step, self.total_steps = start_step, total_steps
        self.start_time = time.perf_counter()

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self.start_time
        return (step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, summary: str = "", force: bool = False) -> None:
        """Redraws the bar on a terminal (every call) or prints one line (only when ``force``)."""
        if not (self.interactive or force):
            return
        rate = self.rate(step)
        eta = (self.total_steps - step) / rate if rate > 0 else math.inf
        fraction = step / max(self.total_steps, 1)
        bar = "#" * int(20 * fraction) + "." * (20 - int(20 * fraction))
        line = (
            f"[{bar}] {step}/{self.total_steps} {rate:.2f} steps/s ETA {format_duration(eta)}"
            f"{'  ' + summary if summary else ''}"
        )
        if self.interactive:
            self.stream.write("\r" + line[:160].ljust(160))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


class NullWriter:
    """``MetricWriter``'s interface writing nothing: the writer of every process but process 0."""

    def write(self, step: int, metrics: dict) -> None:
        del step, metrics

    def write_image(self, step: int, name: str, image: np.ndarray) -> None:
        del step, name, image

    def close(self) -> None:
        pass
