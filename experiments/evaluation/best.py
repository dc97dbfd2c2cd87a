"""Keeping the best checkpoint of a run by an eval metric, in ``WORKDIR/checkpoints_best/<step>``.

A second orbax ``CheckpointManager``, separate from the engine's ``checkpoints/`` (whose keep-last-N
behaviour is unchanged): it keeps one checkpoint, the best so far by ``config.evaluation.best_metric``
(any key of the eval metrics without the ``eval/`` prefix, e.g. ``fid``, or a family's ``loss``),
lower is better with ``best_mode='min'``. A candidate is written only when it beats the kept one,
whose value orbax stores next to it (``metrics/``), so a resumed run goes on comparing against it.
Restore it with ``experiments.workdir.load_experiment``-style code on that directory, or evaluate it
with ``python -m experiments.evaluate --workdir DIR --best``. Its saves record the same per-leaf
checksums as ``experiments.checkpoint``'s and ``restore`` verifies them: a damaged best checkpoint
is a ``CheckpointError`` (one line from ``evaluate``), never a silently different state.
"""

from __future__ import annotations

import math
from pathlib import Path

import orbax.checkpoint as ocp

from experiments import checkpoint
from experiments.errors import ConfigError

BEST_DIR = "checkpoints_best"
EVAL_PREFIX = "eval/"


class BestCheckpointer:
    def __init__(self, directory: str | Path, metric: str, mode: str):
        if mode not in ("min", "max"):
            raise ConfigError(f"config.evaluation.best_mode={mode!r}; expected 'min' or 'max'")
        self.directory = Path(directory).absolute()
        self.metric, self.mode = metric, mode
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1,
            best_fn=lambda metrics: metrics[metric],
            best_mode=mode,
            keep_checkpoints_without_metrics=False,
            create=True,
            enable_async_checkpointing=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def best(self) -> tuple[int, float] | None:
        """``(step, value)`` of the kept checkpoint, or None."""
        step = self._manager.best_step()
        if step is None:
            return None
        return step, float(self._manager.metrics(step)[self.metric])

    def is_better(self, value: float, than: float) -> bool:
        return value < than if self.mode == "min" else value > than

    def update(self, step: int, state, eval_metrics: dict) -> bool:
        """Saves ``state`` if its ``eval/<metric>`` beats the kept checkpoint; True if it did."""
        key = EVAL_PREFIX + self.metric
        if key not in eval_metrics:
            available = sorted(k.removeprefix(EVAL_PREFIX) for k in eval_metrics)
            raise ConfigError(
                f"config.evaluation.best_metric={self.metric!r} is not among the eval metrics "
                f"{available}; set config.evaluation.metrics so that it is computed"
            )
        value = float(eval_metrics[key])
        if not math.isfinite(value):
            return False
        self._manager.wait_until_finished()
        if step in self._manager.all_steps():  # a resumed run repeating an eval it already kept
            return False
        kept = self.best()
        if kept is not None and not self.is_better(value, kept[1]):
            return False
        self._manager.save(
            step,
            args=ocp.args.StandardSave(state),
            metrics={self.metric: value},
            custom_metadata={checkpoint.CHECKSUMS_KEY: checkpoint.checksums(state)},
        )
        return True

    def restore(self, step: int, abstract_state):
        """The kept state, every leaf verified (``checkpoint.VerificationError`` if one changed)."""
        return checkpoint.restore_verified(
            self._manager, self.directory / str(step), step, abstract_state
        )

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def from_config(config, workdir: str | Path) -> BestCheckpointer | None:
    """The best-checkpoint keeper a config asks for (``evaluation.best_metric``), or None."""
    evaluation = config.get("evaluation")
    if evaluation is None or not evaluation.get("best_metric", ""):
        return None
    return BestCheckpointer(
        Path(workdir) / BEST_DIR, evaluation.best_metric, evaluation.get("best_mode", "min")
    )
