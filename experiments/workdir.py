"""Reading a finished or running experiment back from its workdir (for evaluate, sample, tools).

Checkpoints are verified against the checksums saved with them (``experiments.checkpoint``): a damaged
one is passed over with one ``warning:`` line, or, when asked for by step, is a ``CheckpointError``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import ml_collections

from experiments.errors import ConfigError

RESUMED_CONFIG = re.compile(r"config\.resumed_at_(\d+)\.json")


def tuples_for_lists(value):
    """JSON has no tuples; configs use tuples for every sequence (widths, shapes)."""
    if isinstance(value, dict):
        return {key: tuples_for_lists(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(tuples_for_lists(item) for item in value)
    return value


def config_path(workdir: str | Path) -> Path:
    """The config the workdir's latest checkpoints were trained with (the last resume's, if any)."""
    workdir = Path(workdir)
    if not workdir.exists():
        raise ConfigError(f"workdir {workdir} does not exist")
    if not workdir.is_dir():
        raise ConfigError(f"workdir {workdir} is a file, not an experiment workdir")
    resumed = [
        (int(match.group(1)), path)
        for path in workdir.glob("config.resumed_at_*.json")
        if (match := RESUMED_CONFIG.fullmatch(path.name))
    ]
    if resumed:
        return max(resumed)[1]
    path = workdir / "config.json"
    if not path.exists():
        raise ConfigError(f"{workdir} is not an experiment workdir: it has no config.json")
    return path


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a workdir was trained with, locked."""
    path = config_path(workdir)
    try:
        values = tuples_for_lists(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path} does not hold a config (a JSON object)")
    return ml_collections.ConfigDict(values).lock()


def load_experiment(workdir: str | Path, step: int | None = None):
    """``(experiment, state, step)`` for checkpoint ``step`` of a workdir (default: the latest).

    Every leaf is verified against the checksums saved with it (``experiments.checkpoint``). Without
    ``step``, a damaged newer checkpoint is skipped with one ``warning:`` line naming it (nothing is
    moved); a damaged ``step`` is a ``CheckpointError``.
    """
    from experiments import checkpoint, train  # jax-heavy: imported when needed

    workdir = Path(workdir)
    experiment = train.Experiment(load_config(workdir), workdir, training=False)
    if not (workdir / "checkpoints").is_dir():  # checked here: the Checkpointer would create it
        raise checkpoint.CheckpointError(f"{workdir} has no checkpoints/ (no checkpoint saved yet)")
    checkpointer = checkpoint.Checkpointer(workdir / "checkpoints", keep=1_000_000)
    try:
        steps = checkpointer.complete_steps()
        if not steps:
            raise checkpoint.CheckpointError(f"{workdir} has no complete checkpoint")
        if step is None:
            state, step, skipped = checkpointer.newest_intact(experiment.abstract_state())
            for passed in skipped:
                checkpoint.warn(
                    f"checkpoint {passed.path} {passed.reason}; using the newest intact one, "
                    f"{checkpointer.path(step)}"
                )
        elif step not in steps:
            raise checkpoint.CheckpointError(
                f"{workdir} has no checkpoint at step {step}; it has {steps}"
            )
        else:
            state = checkpointer.restore(step, experiment.abstract_state())
    finally:
        checkpointer.close()
    return experiment, state, step
