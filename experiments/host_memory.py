"""How the host's C allocator treats large blocks, chosen by ``config.host_memory``.

XLA:CPU allocates each execution's temporary buffer (56 MB for the DCGAN benchmark step) with
``malloc`` and frees it at the end. glibc serves blocks over its mmap threshold (at most 32 MB)
with a fresh ``mmap`` and returns them with ``munmap``, so every step faulted its 14 000 pages in
again and the kernel zeroed them: 28-33 ms of system time per step on the 2-core machine, a
quarter of the step's CPU time (README, performance). ``'reuse'`` makes glibc serve every block
from its heap (``M_MMAP_MAX = 0``) and keep freed memory in the process (``M_TRIM_THRESHOLD``),
so the buffer is reused warm: the process keeps its peak resident memory until it exits.
``'default'`` leaves the allocator as it is. The setting belongs to the whole process (it is the C
library's); only XLA:CPU gains from it, so it is applied only on that backend, and only with glibc.
"""

from __future__ import annotations

import ctypes
import platform

import jax

from experiments.errors import ConfigError

HOST_MEMORY = ("reuse", "default")
# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # an int: mallopt takes one


def configure(host_memory: str) -> bool:
    """Applies ``host_memory`` to this process's allocator; returns whether anything changed.

    Raises:
      ConfigError: ``host_memory`` is not one of ``HOST_MEMORY``.
    """
    if host_memory not in HOST_MEMORY:
        raise ConfigError(f"config.host_memory={host_memory!r}; expected one of {HOST_MEMORY}")
    if host_memory == "default" or jax.default_backend() != "cpu":
        return False
    return keep_freed_memory()


def keep_freed_memory() -> bool:
    """Makes glibc's ``malloc`` serve large blocks from its heap and never trim it.

    Returns False (and changes nothing) where the C library is not glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # Trim first: with mmap off and trimming on, each free of a large top block would shrink the heap.
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)) and bool(libc.mallopt(_M_MMAP_MAX, 0))
