"""Command-line parsing shared by every entry point: absl flags plus a locked ml_collections config.

``config_flags`` reports a misspelt override as a traceback (and only sometimes with a suggestion) and
a missing config file as an ``_ErrorConfig`` object. Here both become one clear line on stderr and exit
status 2, before anything touches the workdir; so do a config file that cannot be run, an override
of the wrong type and a bad flag value. ``--help`` (``-h``, ``--helpfull``) prints the entry
module's docstring and its flags and exits 0, before the config is needed.

Entry points run the path checks (``check_dir``, ``check_output_file``) on the paths a user gives
before any work, so that a wrong path fails at once rather than after training or sampling.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

# The flags defined through this module's functions belong to the entry module that calls them, so
# that its --help lists them.
flags.disclaim_key_flags()

CONFIG_FLAG = "config"
# Help flags and whether each asks for the short help (the main module's flags) or the full one.
HELP_FLAGS = {
    "-h": True,
    "-?": True,
    "--help": True,
    "-help": True,
    "--helpshort": True,
    "-helpshort": True,
    "--helpfull": False,
    "-helpfull": False,
}


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


def where_in_file(error: BaseException, path: str) -> str:
    """`` (line N)`` of the innermost frame of ``error``'s traceback in file ``path``, or ''."""
    if isinstance(error, SyntaxError) and error.lineno is not None:
        return f" (line {error.lineno})"
    target = os.path.realpath(path)
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.realpath(frame.filename) == target
    ]
    return f" (line {lines[-1]})" if lines else ""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``FILE[:ARG]`` by calling its ``get_config([ARG])``.

    Raises:
        UsageError: no such file, or the file cannot be run, has no ``get_config``, its
            ``get_config`` raises or returns something other than a ``ConfigDict``.
    """
    path, _, arg = spec.partition(":")
    if not path:
        raise UsageError("empty --config; expected --config=FILE[:ARG]")
    if os.path.isdir(path):
        raise UsageError(f"--config={path} is a directory; expected a config file")
    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("_experiment_config", path)
    module = importlib.util.module_from_spec(module_spec)
    # A config file is user code: whatever it raises is reported as one line naming the file, the
    # line and the exception (run the file with python to see the whole traceback).
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        raise UsageError(
            f"config file {path} cannot be loaded{where_in_file(error, path)}: "
            f"{type(error).__name__}: {one_line(error)}"
        ) from error
    if not callable(getattr(module, "get_config", None)):
        raise UsageError(f"config file {path} has no get_config() function")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except Exception as error:
        call = f"get_config({arg!r})" if arg else "get_config()"
        raise UsageError(
            f"config file {path}: {call} raised{where_in_file(error, path)} "
            f"{type(error).__name__}: {one_line(error)}"
        ) from error
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(
            f"config file {path}: get_config() returned a {type(config).__name__}, "
            "not an ml_collections.ConfigDict"
        )
    return config


def one_line(error: BaseException) -> str:
    """The message of ``error`` with its whitespace (newlines included) collapsed."""
    return " ".join(str(error).split())


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


def check_overrides(argv: Sequence[str]) -> ml_collections.ConfigDict:
    """The config file's config; a one-line UsageError on a missing or broken config file or an
    override of an unknown key."""
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
    return config


def config_value(config: ml_collections.ConfigDict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


def check_override_types(
    original: ml_collections.ConfigDict, overridden: ml_collections.ConfigDict, keys: Sequence[str]
) -> None:
    """A UsageError when an override gives a tuple whose items are not of the type of the config
    file's items (``config_flags`` checks scalars itself but accepts any tuple)."""
    for key in keys:
        before, after = config_value(original, key), config_value(overridden, key)
        if not isinstance(before, tuple) or not before or not isinstance(after, tuple):
            continue
        kinds = {type(item) for item in before}
        if len(kinds) != 1 or kinds.pop() not in (int, float, str, bool):
            continue
        kind = type(before[0])
        accepted = (int, float) if kind is float else kind
        for item in after:
            if not isinstance(item, accepted) or (kind is not bool and isinstance(item, bool)):
                raise UsageError(
                    f"--config.{key}={after!r}: expected a tuple of {kind.__name__}s "
                    f"like {before!r}"
                )


def help_request(args: Sequence[str]) -> bool | None:
    """None without a help flag in ``args``; else whether it asks for the short help."""
    for arg in args:
        if arg == "--":
            break
        if arg in HELP_FLAGS:
            return HELP_FLAGS[arg]
    return None


def parse_flags(argv: Sequence[str]) -> list[str]:
    """The ``absl.app.run`` flags parser of every entry point.

    ``--help``, ``-h`` and ``--helpfull`` print the usage (the entry module's docstring and its
    flags) on stdout and exit 0. A bad command line (missing or broken config file, unknown key,
    a value of the wrong type, a flag out of its bounds) prints one line and exits with status 2.
    """
    shorthelp = help_request(argv[1:])
    if shorthelp is not None:
        app.usage(shorthelp=shorthelp, writeto_stdout=True)
        sys.exit(0)
    with_config = CONFIG_FLAG in flags.FLAGS
    try:
        original = check_overrides(argv[1:]) if with_config else None
        remaining = flags.FLAGS(argv)
        if with_config:
            keys = config_overrides(argv[1:])[1]
            check_override_types(original, flags.FLAGS[CONFIG_FLAG].value, keys)
        return remaining
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        print(f"error: bad command line: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def first_existing(path: Path) -> Path:
    """``path`` (absolute) or its nearest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_dir(path: str | os.PathLike, flag: str, *, writable: bool = True) -> None:
    """A UsageError unless ``path`` is a directory or can be made one (and, with ``writable``, one
    this process can write in). ``flag`` names the option in the message; ``path`` is taken as
    given (``~`` is the caller's to expand, as it will use the path)."""
    path = Path(path)
    existing = first_existing(path)
    if not existing.is_dir():
        if existing == Path(os.path.abspath(path)):
            raise UsageError(f"{flag}={path} is a file; expected a directory")
        raise UsageError(f"{flag}={path}: {existing} is a file, not a directory")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}={path}: {existing} is not writable")


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """A UsageError unless ``path`` can be written as a file (its missing folders made)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag}={path} is a directory; expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag}={path} is not writable")
    parent = first_existing(path.parent)
    if not parent.is_dir():
        raise UsageError(f"{flag}={path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}={path}: {parent} is not writable")
