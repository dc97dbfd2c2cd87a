"""Draws samples from a trained model.

Usage: python -m experiments.sample --workdir=DIR --num=N --out=FILE.npz [--labels=0,1,...]
       [--seed=S] [--step=STEP] [--batch_size=B]

Loads the workdir's config and its latest checkpoint (or ``--step``), and writes ``N`` samples of the
model (``family.sample``: the EMA generator of a GAN when it has one) to an ``.npz`` file holding
``samples`` (float32, the data layout of ``experiments.data``: NHWC images in [0, 1], or 2-D points)
and, for a conditional model, ``labels`` (int32, ``(N,)``).

Labels: ``--labels`` lists class indices that are repeated in order to fill ``N`` (``--labels=3``
gives only 3s, ``--labels=0,1,...,9 --num=100`` ten of each, sample ``i`` having label
``labels[i % len(labels)]``). Without it a conditional model's sample ``i`` has label
``i % num_classes``. ``--labels`` is an error for an unconditional model.

Determinism: the samples follow ``experiments.sampling``, the contract ``experiments.evaluate``
uses too: sample ``i`` is ``family.sample(state, fold_in(sample_key(seed), i), 1, label_i)``,
computed in vmapped batches of ``--batch_size``; so the file depends only on the checkpoint,
``--seed``, ``--num`` and ``--labels``, not on the batch size, and ``evaluate --seed S
--num_samples N`` scores the same samples.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Experiment workdir (config.json + checkpoints/).")
_NUM = flags.DEFINE_integer("num", None, "Number of samples.", lower_bound=1)
_OUT = flags.DEFINE_string("out", None, "Output .npz file.")
_LABELS = flags.DEFINE_list("labels", None, "Class labels, repeated to fill --num (conditional).")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the latents and of drawn labels.", lower_bound=0, upper_bound=2**63 - 1
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 500, "Samples computed at once.", lower_bound=1)


class SampleError(Exception):
    """Bad sampling request (labels for an unconditional model, a label out of range)."""


def parse_labels(values: list[str] | None) -> list[int] | None:
    if values is None:
        return None
    try:
        labels = [int(value) for value in values if value.strip()]
    except ValueError as error:
        raise SampleError(f"--labels must be comma-separated integers: {error}") from error
    if not labels:
        raise SampleError("--labels is empty")
    return labels


def generate(
    family,
    state,
    num: int,
    *,
    seed: int = 0,
    labels=None,
    batch_size: int = 500,
    placement=None,
):
    """``(samples, labels)`` as numpy arrays (labels None when unconditional), drawn by the one
    sampling contract (``experiments.sampling``) with the key of ``seed``, split over the mesh of
    ``placement`` (where ``state`` lives)."""
    from experiments import sampling

    try:
        return sampling.generate(
            family,
            state,
            num,
            sampling.sample_key(seed),
            labels=labels,
            batch_size=batch_size,
            placement=placement,
        )
    except sampling.LabelError as error:
        raise SampleError(f"--labels: {error}") from error


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    for name, holder in (("workdir", _WORKDIR), ("num", _NUM), ("out", _OUT)):
        if holder.value is None:
            cli.fail(f"missing --{name}")
    out = Path(_OUT.value).expanduser()
    try:
        cli.check_output_file(out, "--out")
        labels = parse_labels(_LABELS.value)
    except (cli.UsageError, SampleError) as error:
        cli.fail(str(error))
    cli.quiet_library_logs()
    import numpy as np

    from experiments import checkpoint, data, workdir
    from experiments.errors import ConfigError

    try:
        experiment, state, step = workdir.load_experiment(_WORKDIR.value, _STEP.value)
        samples, labels = generate(
            experiment.family,
            state,
            _NUM.value,
            seed=_SEED.value,
            labels=labels,
            batch_size=_BATCH_SIZE.value,
            placement=experiment.placement,
        )
    except (SampleError, ConfigError, checkpoint.CheckpointError, data.DataError) as error:
        cli.fail(str(error), status=1)
    arrays = {"samples": samples} if labels is None else {"samples": samples, "labels": labels}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as file:  # a file object: np.savez would add .npz to a path
            np.savez(file, **arrays)
    except OSError as error:
        cli.fail(f"cannot write --out={out}: {error}", status=1)
    shown = f" with labels {np.bincount(labels).tolist()}" if labels is not None else ""
    print(f"Wrote {len(samples)} samples{shown} from checkpoint {step} to {out}.")
    sys.exit(0)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
