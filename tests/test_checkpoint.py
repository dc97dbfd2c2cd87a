"""Checkpoints: exact round trip, incomplete saves skipped, damaged ones reported clearly."""

import gc
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import checkpoint

# A failed tensorstore read (the damaged checkpoint, the wrong model) leaves a callback for orbax's
# closed event loop; it is reported whenever it is collected, often in the next test's setup, which
# is harmless. Every test of this module ignores it (two suites failed on it in the test after).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def make_state(value: float):
    params = {"w": jnp.full((3, 2), value), "b": jnp.arange(2.0)}
    return {"step": jnp.int32(7), "params": params, "opt": optax.adam(1e-3).init(params)}


def test_round_trip_is_exact(tmp_path):
    state = make_state(0.1)
    ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=2)
    ckpt.save(7, state)
    ckpt.wait()
    restored = ckpt.restore(7, checkpoint.abstract_like(state))
    ckpt.close()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_keeps_only_the_last_n(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, make_state(step))
    ckpt.close()
    assert checkpoint.Checkpointer(tmp_path / "ck", keep=2).complete_steps() == [2, 3]


def test_a_save_cut_off_before_commit_is_skipped(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=5)
    ckpt.save(1, make_state(1.0))
    ckpt.save(2, make_state(2.0))
    ckpt.close()
    # What a kill leaves: orbax's temporary directory, or a step directory without the commit marker.
    shutil.copytree(tmp_path / "ck" / "2", tmp_path / "ck" / "3.orbax-checkpoint-tmp-1234")
    (tmp_path / "ck" / "2" / checkpoint.COMMIT_MARKER).unlink()
    reopened = checkpoint.Checkpointer(tmp_path / "ck", keep=5)
    assert reopened.latest_step() == 1
    restored = reopened.restore(1, checkpoint.abstract_like(make_state(0.0)))
    np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((3, 2), 1.0))


def test_damaged_checkpoint_gives_a_clear_error_and_is_kept(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=5)
    ckpt.save(4, make_state(1.0))
    ckpt.close()
    for path in (tmp_path / "ck" / "4").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"garbage")
    reopened = checkpoint.Checkpointer(tmp_path / "ck", keep=5)
    with pytest.raises(checkpoint.CheckpointError, match=r"cannot restore checkpoint .*ck/4"):
        reopened.restore(4, checkpoint.abstract_like(make_state(0.0)))
    reopened.close()
    gc.collect()
    assert (tmp_path / "ck" / "4").is_dir()


def test_restore_into_a_different_model_is_a_clear_error(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "ck", keep=5)
    ckpt.save(4, make_state(1.0))
    ckpt.close()
    other = {"step": jnp.int32(0), "params": {"w": jnp.zeros((5, 5))}}
    reopened = checkpoint.Checkpointer(tmp_path / "ck", keep=5)
    with pytest.raises(checkpoint.CheckpointError, match="cannot restore"):
        reopened.restore(4, checkpoint.abstract_like(other))
    reopened.close()
    gc.collect()  # the failed read's leftovers are reported here, not in another module's test
