"""Checkpoints of the whole train state with orbax's ``CheckpointManager``, in ``WORKDIR/checkpoints/<step>``.

Saves are asynchronous. orbax writes each step into a temporary directory and renames it when the save
has committed, so a save cut off by a kill leaves only a temporary directory, which is never listed
as a step. A step directory without orbax's commit marker is skipped as well.

Checksums. Every save records, for each array leaf of the state, the SHA-256 of its bytes with its
dtype and shape, keyed by the leaf's tree path (``generator.params.Dense_0.kernel``, as orbax names
its arrays), plus a digest of that record itself. They are computed from host copies before ``save``
returns (the state's buffers may be donated right after: what is hashed is what orbax copies), and
stored as orbax's custom metadata of the step, in ``<step>/_CHECKPOINT_METADATA``, which orbax writes
into the temporary directory before the rename: the checksums commit together with the arrays, or not
at all. A restore checks every restored leaf, i.e. the values the state will hold, so a damaged file
is caught whether it no longer reads (decompression, a broken index) or reads as other values.

A checkpoint fails verification when a leaf differs, its files cannot be read, or its checksums are
missing or damaged (orbax writes the metadata file with every step). ``newest_intact`` passes over
failed ones to the newest intact checkpoint; training (``resume``) moves each one passed over aside to
``checkpoints/corrupt-<step>`` with one ``warning:`` line naming it, so that the resumed run can save
that step again and orbax's keep-last-N counts only intact checkpoints (orbax lists no such name and
never deletes it); ``workdir.load_experiment`` only warns. Nothing is ever deleted. When no checkpoint
is intact, ``CheckpointError`` says so in one line and nothing is moved. Checksums whose leaves,
shapes or dtypes differ from the expected state (the record itself intact) mean another layout, not
damage: a ``CheckpointError``, as before. The non-finite stop of ``train`` names the newest checkpoint
that verifies. ``evaluation.best`` records and verifies the same checksums.

Checkpoints written before checksums existed (no checksums in their metadata) are restored, with a
one-line warning that they are unverified (written before checksums); one that orbax cannot restore
is a ``CheckpointError`` naming it, since damage and another layout cannot be told apart there.

A failed orbax restore leaves reads in flight that report, late and through ``sys.unraisablehook``
and asyncio's logger, dozens of tracebacks; those (and only those) are dropped, so that the one line
is all that is printed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments import sharding

COMMIT_MARKER = "commit_success.txt"
STEP_METADATA = "_CHECKPOINT_METADATA"  # orbax's per-step metadata file, with our custom metadata
CHECKSUMS_KEY = "checksums"
CHECKSUM_FORMAT = 1
HASH_NAME = "sha256"
SET_ASIDE_PREFIX = "corrupt-"
ORBAX_DIRECTORY = os.path.dirname(ocp.__file__)


class CheckpointError(Exception):
    """A checkpoint exists but cannot be restored into the expected state."""


class VerificationError(CheckpointError):
    """A checkpoint whose files are damaged: a leaf differs from its checksum, or cannot be read."""

    def __init__(self, path: Path, reason: str, leaves: tuple[str, ...] = ()):
        self.path, self.reason, self.leaves = path, reason, leaves
        super().__init__(f"checkpoint {path} failed verification ({reason})")


def warn(message: str) -> None:
    """One ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def one_line(error: Exception, limit: int = 200) -> str:
    message = " ".join(str(error).split())
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    return f"{type(error).__name__}: {message}"


def leaf_name(path) -> str:
    """``generator.params.Dense_0.kernel``: a tree path as orbax names the leaf's array."""
    parts = []
    for key in path:
        for attribute in ("name", "key", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def host_leaves(state) -> dict[str, np.ndarray]:
    """The leaves of ``state`` as numpy arrays on the host, by ``leaf_name``."""

    def to_host(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return x

    host = sharding.fetch(jax.tree.map(to_host, state))  # gathered from every process
    return {leaf_name(path): np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(host)}


def digest(array: np.ndarray) -> str:
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return hashlib.sha256(data).hexdigest()


def record_digest(leaves: dict) -> str:
    """The digest of the checksum record itself: a damaged record is told from another layout."""
    text = json.dumps(leaves, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def checksums(state) -> dict:
    """What ``save`` records: format, hash name, ``{leaf: {dtype, shape, sha256}}`` and the
    record's own digest."""
    leaves = {
        name: {"dtype": array.dtype.name, "shape": list(array.shape), "sha256": digest(array)}
        for name, array in host_leaves(state).items()
    }
    return {
        "format": CHECKSUM_FORMAT,
        "hash": HASH_NAME,
        "leaves": leaves,
        "digest": record_digest(leaves),
    }


def expected_layout(abstract_state) -> dict[str, tuple[str, list[int]]]:
    """``{leaf: (dtype, shape)}`` of a state or of its ``ShapeDtypeStruct`` tree."""
    layout = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
        dtype = leaf.dtype
        shape = list(leaf.shape)
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):  # stored as its key data
            data = jax.eval_shape(jax.random.key_data, leaf)
            dtype, shape = data.dtype, list(data.shape)
        layout[leaf_name(path)] = (np.dtype(dtype).name, shape)
    return layout


def read_checksums(step_dir: Path) -> dict | None:
    """The checksums recorded with a step, or None for one written before checksums existed.

    Raises ``VerificationError`` when they cannot be read: orbax writes the metadata file with
    every step, so a missing or unparsable one (or malformed checksums) means a damaged checkpoint.
    """
    path = step_dir / STEP_METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise VerificationError(
            step_dir, f"its checksums are missing: no {STEP_METADATA}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError(
            step_dir, f"its checksums are unreadable: {one_line(error)}"
        ) from None
    custom = metadata.get("custom_metadata") if isinstance(metadata, dict) else "bad"
    if not isinstance(custom, dict | None):
        raise VerificationError(step_dir, f"its checksums are unreadable: bad {STEP_METADATA}")
    if not custom or CHECKSUMS_KEY not in custom:
        return None
    recorded = custom[CHECKSUMS_KEY]
    try:
        leaves = recorded["leaves"]
        if recorded["format"] != CHECKSUM_FORMAT or recorded["hash"] != HASH_NAME:
            raise ValueError(f"format {recorded['format']} {recorded['hash']}")
        if recorded["digest"] != record_digest(leaves):
            raise ValueError("the record does not match its own digest")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise VerificationError(
            step_dir, f"its checksums are unreadable: {one_line(error)}"
        ) from None
    return recorded


def check_layout(step_dir: Path, recorded: dict, abstract_state) -> None:
    """A ``CheckpointError`` (not a damaged checkpoint) when the state's layout is not the saved one."""
    saved = {name: (e["dtype"], list(e["shape"])) for name, e in recorded["leaves"].items()}
    expected = expected_layout(abstract_state)
    if saved == expected:
        return
    missing, extra = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    if missing:
        difference = f"it has no leaf {missing[0]}"
    elif extra:
        difference = f"it has a leaf {extra[0]} the state has not"
    else:
        name = next(n for n in sorted(expected) if expected[n] != saved[n])
        difference = f"leaf {name} is {saved[name]}, the state expects {expected[name]}"
    raise CheckpointError(
        f"checkpoint {step_dir} holds another train state than this config makes ({difference}); "
        "if the config (or the code) changed the train state's layout, use a new workdir (or the "
        "config and code that wrote it)"
    )


def changed_leaves(recorded: dict, state) -> list[str]:
    """The leaves of ``state`` whose dtype, shape or bytes differ from the recorded checksums."""
    leaves, host = recorded["leaves"], host_leaves(state)
    changed = [
        name
        for name, array in host.items()
        if name not in leaves
        or array.dtype.name != leaves[name]["dtype"]
        or list(array.shape) != list(leaves[name]["shape"])
        or digest(array) != leaves[name]["sha256"]
    ]
    return changed + sorted(leaves.keys() - host.keys())


def describe_changed(changed: list[str]) -> str:
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return f"leaf {changed[0]} changed{more}"


def restore_verified(
    manager: ocp.CheckpointManager,
    step_dir: Path,
    step: int,
    abstract_state,
    warn: Callable[[str], None] = warn,
):
    """Restores ``step`` of ``manager`` and checks every leaf against the checksums saved with it.

    Raises ``VerificationError`` for a damaged checkpoint, ``CheckpointError`` for one that holds
    another state's layout (or, written before checksums, that orbax cannot restore).
    """
    recorded = read_checksums(step_dir)
    if recorded is not None:
        check_layout(step_dir, recorded, abstract_state)
    drop_closed_loop_callbacks()  # before: they may come before orbax's exception reaches here
    try:
        state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as error:  # orbax and tensorstore raise many types for unreadable files
        if recorded is not None:  # the layout matched: the files are damaged
            raise VerificationError(step_dir, f"unreadable: {one_line(error)}") from error
        raise CheckpointError(
            f"cannot restore checkpoint {step_dir}: {one_line(error, 300)}. "
            "If it is damaged, move that directory out of checkpoints/ to resume from an "
            "earlier one; if the config (or the code) changed the train state's layout, use a "
            "new workdir (or the config and code that wrote it)."
        ) from error
    if recorded is None:
        warn(f"checkpoint {step_dir} is unverified (written before checksums)")
        return state
    changed = changed_leaves(recorded, state)
    if changed:
        raise VerificationError(step_dir, describe_changed(changed), tuple(changed))
    return state


def left_by_a_failed_read(unraisable) -> bool:
    """An unraisable exception from the reads orbax leaves in flight when a restore fails."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return True
    code = getattr(unraisable.object, "cr_code", None)  # one of orbax's coroutines, never awaited
    return code is not None and code.co_filename.startswith(ORBAX_DIRECTORY)


def drop_closed_loop_callbacks() -> None:
    """Silences what a failed restore leaves behind: orbax reads through an asyncio loop that it
    closes when the first read fails; the reads still in flight then report through
    ``sys.unraisablehook`` (``RuntimeError('Event loop is closed')``, and errors of orbax's
    coroutines collected unawaited), as dozens of tracebacks, for up to a second after, some even
    before the restore's exception is raised; so this is installed before every restore. Only those
    are dropped; any other goes to the hook in place before.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(unraisable):
        if not left_by_a_failed_read(unraisable):
            previous(unraisable)

    hook.drops_closed_loop_callbacks = True
    sys.unraisablehook = hook


class OrbaxReadNoise(logging.Filter):
    """Drops the log records orbax leaves for a damaged checkpoint, which a restore here reports in
    one line already: its complaints about an unreadable step metadata file, and asyncio's reports
    (with tracebacks) of its reads still in flight: "Task exception was never retrieved", "Task was
    destroyed but it is pending"."""

    METADATA_MESSAGES = (
        "Failed to json parse Metadata file",
        "Failed to read Metadata file",
        "Metadata file does not exist",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.pathname.startswith(ORBAX_DIRECTORY):
            return not message.startswith(self.METADATA_MESSAGES)
        if record.name == "asyncio":  # a task of orbax's never retrieved, or destroyed pending
            return ORBAX_DIRECTORY not in message
        return True


for _name in ("absl", "asyncio"):
    if not any(isinstance(f, OrbaxReadNoise) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(OrbaxReadNoise())


def on_host(abstract_state):
    """``abstract_state`` placed on the host CPU (to check a checkpoint without device memory)."""
    try:
        cpu = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # no CPU backend in this process: keep the state's own placement
        return abstract_state
    sharding = jax.sharding.SingleDeviceSharding(cpu)
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract_state
    )


@dataclass(frozen=True)
class Skipped:
    """A checkpoint passed over on the way to the newest intact one."""

    step: int
    path: Path
    reason: str


class Checkpointer:
    """Saves and restores train states; ``keep`` is how many of the latest checkpoints stay on disk."""

    def __init__(self, directory: str | os.PathLike, keep: int, warn: Callable[[str], None] = warn):
        self.directory = Path(directory).absolute()
        self._warn = warn
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def committed(self, step: int) -> bool:
        return (self.path(step) / COMMIT_MARKER).exists()

    def complete_steps(self) -> list[int]:
        """Steps whose save committed, oldest first (not yet verified: see ``newest_intact``)."""
        return sorted(step for step in self._manager.all_steps() if self.committed(step))

    def path(self, step: int) -> Path:
        return self.directory / str(step)

    def latest_step(self) -> int | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state) -> None:
        """Starts an asynchronous save; the state's buffers may be donated right after it returns.

        The checksums are computed here, from host copies of the leaves, before returning. orbax
        declines (silently) to save a step at or below its latest one: that is an error here.
        """
        metadata = {CHECKSUMS_KEY: checksums(state)}
        args = ocp.args.StandardSave(state)
        if not self._manager.save(step, args=args, custom_metadata=metadata):
            raise CheckpointError(
                f"orbax did not save checkpoint {self.path(step)}: {self.directory} already has "
                f"step {self._manager.latest_step()}"
            )

    def restore(self, step: int, abstract_state):
        """Restores ``step`` with the structure, shapes, dtypes and shardings of ``abstract_state``,
        every leaf verified (``VerificationError`` if one differs or cannot be read)."""
        return restore_verified(
            self._manager, self.path(step), step, abstract_state, warn=self._warn
        )

    def newest_intact(self, abstract_state, before: int | None = None):
        """``(state, step, skipped)``: the newest checkpoint (below step ``before``) that committed
        and verifies, with the newer ones passed over; ``(None, None, [])`` when there is none.

        Raises ``CheckpointError`` when there are checkpoints but none is intact (one line naming
        each), or when one holds another layout than ``abstract_state``.
        """
        skipped = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            if before is not None and step >= before:
                continue
            if not self.committed(step):
                skipped.append(Skipped(step, self.path(step), "never committed"))
                continue
            try:
                return self.restore(step, abstract_state), step, skipped
            except VerificationError as error:
                skipped.append(
                    Skipped(step, self.path(step), f"failed verification ({error.reason})")
                )
        if skipped:
            reasons = "; ".join(f"{s.step} {s.reason}" for s in skipped)
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: {reasons}. Nothing was moved or "
                "deleted; move the damaged directories out of it to start afresh"
            )
        return None, None, []

    def resume(self, abstract_state):
        """``(state, step)`` of the newest intact checkpoint, or ``(None, None)`` when there is none.

        Each newer checkpoint that failed is moved aside to ``corrupt-<step>`` (so this run can save
        that step again), with one line naming it.
        """
        state, step, skipped = self.newest_intact(abstract_state)
        for passed in skipped:
            moved = self.set_aside(passed.step)
            self._warn(
                f"checkpoint {passed.path} {passed.reason}; moved to {moved}; "
                f"resuming from the newest intact one, {self.path(step)}"
            )
        return state, step

    def set_aside(self, step: int) -> Path:
        """Renames ``<step>`` to ``corrupt-<step>`` (``corrupt-<step>-<n>`` if taken); deletes nothing."""
        target = self.directory / f"{SET_ASIDE_PREFIX}{step}"
        number = 1
        while target.exists():
            number += 1
            target = self.directory / f"{SET_ASIDE_PREFIX}{step}-{number}"
        try:
            os.rename(self.path(step), target)
        except OSError as error:
            raise CheckpointError(
                f"cannot move the damaged checkpoint {self.path(step)} aside to {target}: "
                f"{one_line(error)}"
            ) from error
        self._manager.reload()
        return target

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
