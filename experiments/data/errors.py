"""The one exception type of the data layer."""


class DataError(Exception):
    """A dataset cannot be found, read or used as configured.

    The message always names the file, folder or dataset concerned and, where there is one, the fix
    (usually: where to point `--config.data.dir`).
    """
