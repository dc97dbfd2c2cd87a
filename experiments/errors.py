"""Errors that mean "the input is wrong", reported to the user as one line rather than a traceback."""


class ConfigError(ValueError):
    """A config value that cannot work (e.g. a batch size the mesh cannot split)."""
