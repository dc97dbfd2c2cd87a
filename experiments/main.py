"""Trains one experiment (or resumes it).

Usage: python -m experiments.main --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

Running it again with the same workdir resumes from the latest checkpoint; a finished run says so.
A bad config value, path or data file is reported as one line ``error: ...`` on stderr before the
workdir is touched.
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")


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
    from experiments import train  # after flag parsing: jax is slow to import

    sys.exit(train.main(_CONFIG.value, _WORKDIR.value))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
