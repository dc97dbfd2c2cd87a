"""Trains one experiment: ``python -m experiments.main --config=FILE[:ARG] --workdir=DIR [--config.KEY=V]``.

Running it again with the same workdir resumes from the latest checkpoint; a finished run says so.
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value:
        cli.fail("missing --workdir=DIR")
    cli.quiet_library_logs()
    from experiments import train  # after flag parsing: jax is slow to import

    sys.exit(train.main(_CONFIG.value, _WORKDIR.value))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
