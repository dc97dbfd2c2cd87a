"""Command-line parsing shared by every entry point: absl flags plus a locked ml_collections config.

``config_flags`` reports a misspelt override as a traceback (and only sometimes with a suggestion) and
a missing config file as an ``_ErrorConfig`` object. Here both become one clear line on stderr and exit
status 2, before anything touches the workdir.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Sequence

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

CONFIG_FLAG = "config"


class UsageError(Exception):
    """A bad command line or config: the message is printed as one line, exit status 2."""


def fail(message: str, status: int = 2):
    """Prints ``error: message`` on stderr and exits with ``status``."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def quiet_library_logs() -> None:
    """Hides the INFO logs of jax and orbax (e.g. the TPU probe) unless ``--verbosity`` is given."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def define_config_flag() -> flags.FlagHolder:
    return config_flags.DEFINE_config_file(
        CONFIG_FLAG, None, "Path to a config file (FILE or FILE:ARG).", lock_config=True
    )


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """All dotted key paths of a (nested) ConfigDict, sub-configs included."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(flat_keys(value, f"{path}."))
    return keys


def closest_key(key: str, valid_keys: Sequence[str]) -> str | None:
    """The valid key most similar to ``key`` (dotted paths compared whole and by last part)."""
    matches = difflib.get_close_matches(key, valid_keys, n=1, cutoff=0.0)
    return matches[0] if matches else None


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``FILE[:ARG]`` by calling its ``get_config([ARG])``."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("_experiment_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UsageError(f"config file {path} has no get_config() function")
    return module.get_config(arg) if arg else module.get_config()


def config_overrides(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The ``--config`` value and the dotted keys of its ``--config.KEY`` overrides in ``argv``."""
    spec, keys = None, []
    for i, arg in enumerate(argv):
        name, has_value, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            continue
        if name == CONFIG_FLAG:
            spec = value if has_value else (argv[i + 1] if i + 1 < len(argv) else None)
        elif name.startswith(CONFIG_FLAG + "."):
            keys.append(name[len(CONFIG_FLAG) + 1 :])
    return spec, keys


def check_overrides(argv: Sequence[str]) -> None:
    """Fails with a one-line UsageError on a missing config or an override of an unknown key."""
    spec, keys = config_overrides(argv)
    if spec is None:
        raise UsageError("missing --config=FILE[:ARG] (e.g. --config=configs/quickstart.py)")
    config = load_config_file(spec)
    valid = flat_keys(config)
    for key in keys:
        if key not in valid:
            suggestion = closest_key(key, valid)
            hint = f"; did you mean '{suggestion}'?" if suggestion else ""
            raise UsageError(f"unknown config key '{key}' in --config.{key}{hint}")


def parse_flags(argv: Sequence[str]) -> list[str]:
    """An ``absl.app.run`` flags parser that turns config errors into one line and exit status 2."""
    try:
        check_overrides(argv[1:])
        return flags.FLAGS(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        message = " ".join(str(error).split())
        print(f"error: bad command line: {message}", file=sys.stderr)
    sys.exit(2)
