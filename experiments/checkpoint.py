"""Checkpoints of the whole train state with orbax's ``CheckpointManager``, in ``WORKDIR/checkpoints/<step>``.

Saves are asynchronous. orbax writes each step into a temporary directory and renames it when the save
has committed, so a save cut off by a kill leaves only a temporary directory, which is never listed
as a step. A step directory without orbax's commit marker is skipped with a warning as well.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp

COMMIT_MARKER = "commit_success.txt"


class CheckpointError(Exception):
    """A checkpoint exists but cannot be restored into the expected state."""


class Checkpointer:
    """Saves and restores train states; ``keep`` is how many of the latest checkpoints stay on disk."""

    def __init__(self, directory: str | os.PathLike, keep: int):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def complete_steps(self) -> list[int]:
        """Steps whose save committed, oldest first."""
        steps = []
        for step in self._manager.all_steps():
            if (self.path(step) / COMMIT_MARKER).exists():
                steps.append(step)
            else:
                logging.warning(
                    "Skipping checkpoint %s: its save never committed.", self.path(step)
                )
        return sorted(steps)

    def path(self, step: int) -> Path:
        return self.directory / str(step)

    def latest_step(self) -> int | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state) -> None:
        """Starts an asynchronous save; the state's buffers may be donated right after it returns."""
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, step: int, abstract_state):
        """Restores ``step`` with the structure, shapes, dtypes and shardings of ``abstract_state``."""
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as error:  # orbax raises many types for unreadable or mismatched files
            message = " ".join(str(error).split())[:300]
            raise CheckpointError(
                f"cannot restore checkpoint {self.path(step)}: {type(error).__name__}: {message}. "
                "If it is damaged, move that directory out of checkpoints/ to resume from an "
                "earlier one; if the config (or the code) changed the train state's layout, use a "
                "new workdir (or the config and code that wrote it)."
            ) from error

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(state, sharding=None):
    """``ShapeDtypeStruct`` leaves of ``state`` (optionally with one sharding for all leaves)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding), state
    )
