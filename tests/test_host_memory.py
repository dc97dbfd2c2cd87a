"""``config.host_memory``: 'reuse' stops XLA:CPU's large temporary buffers from being faulted in
anew at every call; anything but 'reuse' or 'default' is a one-line config error.

The fault counts are measured in a fresh interpreter each: the setting belongs to the process, and
this one may have applied it already.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import jax
import pytest

from conftest import REPO_ROOT
from experiments import host_memory, train
from experiments.errors import ConfigError

# A program with a 48 MB temporary (sin(x) is materialised for the product): over glibc's largest
# mmap threshold (32 MB), so by default every call maps it afresh, and under the 64 MB of a
# worker thread's heap, so 'reuse' can keep it.
_FAULTS_PER_CALL = """
import json, resource, sys
import jax, jax.numpy as jnp
from experiments import host_memory
applied = host_memory.configure(sys.argv[1])
x = jnp.ones((3 << 22,), jnp.float32)
product = jax.jit(lambda x: jnp.sin(x).reshape(3072, 4096) @ jnp.cos(x[:4096]))
assert product.lower(x).compile().memory_analysis().temp_size_in_bytes >= 3 << 24
faults = []
for _ in range(24):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    product(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([applied, faults]))
"""
_PAGES_OF_THE_TEMPORARY = (3 << 24) // 4096
glibc_on_cpu = pytest.mark.skipif(
    jax.default_backend() != "cpu" or platform.libc_ver()[0] != "glibc",
    reason="an XLA:CPU setting of glibc's allocator",
)


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def faults_per_call(setting: str) -> tuple[bool, list[int]]:
    """(what ``configure`` returned, minor page faults of each of 24 calls), in a new process."""
    process = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_CALL, setting],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return tuple(json.loads(process.stdout))


@glibc_on_cpu
def test_reuse_stops_the_temporary_being_faulted_in_at_every_call():
    if "[always]" in _read("/sys/kernel/mm/transparent_hugepage/enabled"):
        pytest.skip("transparent huge pages 'always': a fresh mapping faults in 2 MB pages")
    applied, faults = faults_per_call("default")
    assert not applied
    assert min(faults[1:]) > 0.9 * _PAGES_OF_THE_TEMPORARY, faults  # every call maps it afresh
    applied, faults = faults_per_call("reuse")
    assert applied
    # The buffer is mapped once per worker thread of XLA's, the first time that thread runs the
    # program (which thread does is the scheduler's choice), then reused warm: measured 2-3 such
    # calls among the last 20 of 24 (and 2-3 among the last 77 of 80), against all 20 by default.
    mapped_afresh = [count for count in faults[4:] if count > _PAGES_OF_THE_TEMPORARY // 2]
    assert len(mapped_afresh) < len(faults[4:]) // 2, faults


@pytest.mark.parametrize("value", ["keep", "Reuse", ""])
def test_unknown_host_memory_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"config.host_memory=.*expected one of \('reuse'"):
        host_memory.configure(value)


@glibc_on_cpu
@pytest.mark.parametrize(
    "temp_mb, tunables, advised",
    [
        (63.4, "", False),  # hinge_sn_mnist's step: 'reuse' keeps it
        (64.2, "", True),  # cgan_mnist's
        (124.0, "glibc.malloc.arena_max=4", True),
        (124.0, "glibc.malloc.hugetlb=1", False),  # already started with 2 MB pages
        (124.0, "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1", False),
    ],
)
def test_huge_pages_advice_only_for_temporaries_reuse_cannot_keep(
    temp_mb, tunables, advised, monkeypatch
):
    monkeypatch.setenv("GLIBC_TUNABLES", tunables)
    advice = host_memory.huge_pages_advice(int(temp_mb * 2**20))
    if advised:
        assert f"{temp_mb:.1f} MB" in advice and "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in advice
    else:
        assert advice is None


@glibc_on_cpu
def test_a_run_notes_temporaries_too_large_and_still_compiles_its_step_once(
    tmp_path, monkeypatch, capsys
):
    """The loop compiles the step ahead of time to read its temporaries; its first call reuses it."""
    from test_train import tiny_config

    step_compiles = []

    def count(event, duration, fun_name="", **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and "_train_step" in fun_name:
            step_compiles.append(fun_name)

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(host_memory, "_HEAP_SIZE", 8192)  # as if its temporaries were too large
    # Shapes no other test compiles; 2 steps (the last one checkpoints and evaluates) are enough.
    experiment = train.Experiment(tiny_config(batch_size=24, num_train_steps=2), tmp_path)
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        experiment.run()
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in capsys.readouterr().out
    assert len(step_compiles) == 1, step_compiles
    assert experiment.train_step._cache_size() == 1
