import glob
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

from ecomrl_jax import checkpoint
from ecomrl_jax.checkpoint import CheckpointError

ADAM = optax.adam(1e-3)  # one object: TrainState's static `tx` field is part of the tree structure
CONFIG = {"env": "ShopperRec-v0", "algo": "ppo", "config": {"lr": 3e-4, "hidden": 8}}


class Runner(NamedTuple):
    train_state: TrainState
    key: jax.Array  # a typed PRNG key
    env_keys: jax.Array  # a batch of typed keys
    update: jax.Array


def make_runner(seed: int, hidden: int = 8, tx=None) -> Runner:
    """A PPO-like runner state after one optimiser step, so the adam moments are non-trivial."""
    key = jax.random.key(seed)
    params = {"dense": {"kernel": jax.random.normal(key, (4, hidden)), "bias": jnp.zeros(hidden)}}
    state = TrainState.create(apply_fn=None, params=params, tx=tx or ADAM)
    state = state.apply_gradients(grads=jax.tree.map(jnp.ones_like, params))
    return Runner(state, jax.random.fold_in(key, 1), jax.random.split(key, 3), jnp.int32(seed))


def assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert type(x) is type(y) and np.shape(x) == np.shape(y)
        assert getattr(x, "dtype", None) == getattr(y, "dtype", None)
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_bit_identical_with_typed_keys(tmp_path):
    saved = make_runner(1)
    checkpoint.save(tmp_path, 10, saved, CONFIG)
    restored, config, step = checkpoint.restore(tmp_path, make_runner(2))
    assert (config, step) == (CONFIG, 10)
    assert_identical(restored, saved)
    assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.normal(restored.key, (5,)), jax.random.normal(saved.key, (5,)))
    assert isinstance(restored.train_state.opt_state[0], optax.ScaleByAdamState)


def test_keeps_latest_and_resumes_from_it(tmp_path):
    for step in range(1, 6):
        checkpoint.save(tmp_path, step, make_runner(step), CONFIG, keep=3)
    assert checkpoint.latest_step(tmp_path) == 5
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == [3, 4, 5]
    restored, _, step = checkpoint.restore(tmp_path, make_runner(0))
    assert step == 5 and int(restored.update) == 5
    assert int(checkpoint.restore(tmp_path, make_runner(0), step=4)[0].update) == 4
    with pytest.raises(CheckpointError, match=r"no checkpoint step 1 .* steps \[3, 4, 5\]"):
        checkpoint.restore(tmp_path, make_runner(0), step=1)


def test_save_refuses_a_step_that_is_not_newer(tmp_path):
    checkpoint.save(tmp_path, 5, make_runner(0), CONFIG)
    with pytest.raises(CheckpointError, match="already has step 5"):
        checkpoint.save(tmp_path, 5, make_runner(1), CONFIG)


def test_save_refuses_a_config_that_is_not_json(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.save(tmp_path, 1, make_runner(0), {"tx": optax.adam(1e-3)})


def test_missing_or_empty_directory(tmp_path):
    assert checkpoint.latest_step(tmp_path / "nope") is None
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        checkpoint.restore(tmp_path / "nope", make_runner(0))
    assert checkpoint.latest_step(tmp_path) is None
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        checkpoint.restore(tmp_path, make_runner(0))


def _truncate(path):
    os.truncate(path, os.path.getsize(path) // 2)


def _flip_byte(path):
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated array data": ("state/d/*", _truncate),
    "flipped byte in array data": ("state/d/*", _flip_byte),
    "truncated tree metadata": ("state/_METADATA", _truncate),
    "deleted tree metadata": ("state/_METADATA", os.remove),
    "truncated ocdbt manifest": ("state/manifest.ocdbt", _truncate),
    "truncated config": ("config/metadata", _truncate),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_checkpoint_raises_checkpoint_error(tmp_path, corruption):
    checkpoint.save(tmp_path, 1, make_runner(0), CONFIG)
    pattern, damage = CORRUPTIONS[corruption]
    files = glob.glob(str(tmp_path / "1" / pattern))
    assert files, f"orbax layout changed: nothing matches {pattern}"
    for path in files:
        damage(path)
    with pytest.raises(CheckpointError, match=r"checkpoint .*1 is corrupt or truncated"):
        checkpoint.restore(tmp_path, make_runner(0))


def test_shape_mismatch_names_the_leaf(tmp_path):
    checkpoint.save(tmp_path, 1, make_runner(0, hidden=8), CONFIG)
    with pytest.raises(CheckpointError, match=r"train_state\.params\.dense\.kernel: checkpoint has "
                                              r"float32\[4, 8\], expected float32\[4, 16\]"):
        checkpoint.restore(tmp_path, make_runner(0, hidden=16))


def test_structure_mismatch_lists_missing_and_unexpected(tmp_path):
    checkpoint.save(tmp_path, 1, make_runner(0), CONFIG)
    with pytest.raises(CheckpointError) as error:
        checkpoint.restore(tmp_path, make_runner(0, tx=optax.sgd(1e-3, momentum=0.9)))
    message = str(error.value)
    assert "different config" in message
    assert "opt_state.0.mu.dense.kernel: in checkpoint (float32[4, 8]) but not expected" in message
    assert "train_state.opt_state.0.trace.dense.kernel: missing from checkpoint" in message


def test_dtype_mismatch(tmp_path):
    checkpoint.save(tmp_path, 1, make_runner(0), CONFIG)
    with pytest.raises(CheckpointError, match=r"update: checkpoint has int32\[\], expected float32\[\]"):
        checkpoint.restore(tmp_path, make_runner(0)._replace(update=jnp.float32(0)))
