"""How the host's C allocator treats large blocks, chosen by ``config.host_memory``.

XLA:CPU allocates each execution's temporary buffer (54 MB for the DCGAN benchmark step) with
``malloc`` on a worker thread and frees it at the end. glibc serves blocks over its mmap threshold
(at most 32 MB) with a fresh ``mmap`` and returns them with ``munmap``, so every step faulted its
14 000 pages in again and the kernel zeroed them: 27-37 ms of kernel time per step on the 2-core
machine, a fifth of the step's CPU time (docs/performance.md). ``'reuse'`` makes glibc serve
blocks from its heaps (``M_MMAP_MAX = 0``), never trim them (``M_TRIM_THRESHOLD``) and never
delete a thread's heap whose only block was freed (``M_TOP_PAD`` = 64 MB, which also reserves that
much more address space, not memory, whenever a heap grows). So the buffer is reused warm, and
the process keeps its peak resident memory until it exits. ``'default'`` leaves the allocator as
it is.

A worker thread's glibc heap holds at most 64 MB, so a larger temporary (``wgan_gp_mnist``'s
124 MB) is still mapped afresh each step under ``'reuse'``; for those, start Python with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (2 MB pages: 32 000 → 160 faults, 448 → 363-379 ms per
step); ``huge_pages_advice`` says so at the start of a training run and in the benchmark. The
setting belongs to the whole process (it is the C library's); only XLA:CPU gains from it, so it
is applied only on that backend, and only with glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

import jax

from experiments.errors import ConfigError

HOST_MEMORY = ("reuse", "default")
# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # an int: mallopt takes one
_HEAP_SIZE = 64 << 20  # glibc's largest heap of a thread's arena (HEAP_MAX_SIZE, 64-bit)
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def check(host_memory: str) -> None:
    """ConfigError unless ``host_memory`` is one of ``HOST_MEMORY`` (changes nothing)."""
    if host_memory not in HOST_MEMORY:
        raise ConfigError(f"config.host_memory={host_memory!r}; expected one of {HOST_MEMORY}")


def configure(host_memory: str) -> bool:
    """Applies ``host_memory`` to this process's allocator; returns whether anything changed.

    Raises:
      ConfigError: ``host_memory`` is not one of ``HOST_MEMORY``.
    """
    check(host_memory)
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
    settings = ((_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_TOP_PAD, _HEAP_SIZE), (_M_MMAP_MAX, 0))
    return all([libc.mallopt(parameter, value) for parameter, value in settings])


def temporary_bytes(compiled) -> int:
    """A compiled computation's temporary buffers in bytes (0 where the backend does not say)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return 0
    return 0 if stats is None else stats.temp_size_in_bytes


def huge_pages_could_help() -> bool:
    """Whether ``huge_pages_advice`` can say anything here: XLA:CPU, glibc, no 2 MB pages yet."""
    return (
        jax.default_backend() == "cpu"
        and platform.libc_ver()[0] == "glibc"
        and HUGE_PAGES not in os.environ.get("GLIBC_TUNABLES", "")
    )


def huge_pages_advice(temp_bytes: int) -> str | None:
    """A one-line hint to start Python with 2 MB pages when a CPU step's temporaries (``temp_bytes``,
    from the compiled step's memory analysis) are too large for ``'reuse'`` to keep; else None."""
    if temp_bytes <= _HEAP_SIZE - 4096 or not huge_pages_could_help():  # a heap has a header
        return None
    return (
        f"the step's {temp_bytes / 2**20:.1f} MB of temporaries exceed the 64 MB that "
        f"config.host_memory can keep, so each step maps them afresh: start Python with "
        f"GLIBC_TUNABLES={HUGE_PAGES} for fewer page faults (docs/performance.md)"
    )
