"""The learner contract, for every learner in `ecomrl_jax.learners.LEARNERS`: a tiny config
compiles once, trains with finite metrics, is deterministic, and resumes from a checkpoint
bit-identically. A newly registered learner gets these tests by registering.

Each learner runs on `EXAMPLE_ENVS[name]` (default ShopperRec-v0); its config is the default
with every size field that exists on it shrunk to `TINY`.
"""

import dataclasses
import functools

import jax
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax import checkpoint
from ecomrl_jax.learners import LEARNERS
from ecomrl_jax.learners.loop import run_updates
from tests.helpers import assert_identical

EXAMPLE_ENVS = {"q_learning": ("ToyRec-v0", {"obs_type": "index"}),
                "sarsa": ("ToyRec-v0", {"obs_type": "index"}),
                "slateq": ("InterestEvolution-v0", {})}
DEFAULT_ENV = ("ShopperRec-v0", {})
TINY = dict(num_envs=4, num_steps=8, hidden_size=8, num_minibatches=2, update_epochs=1,
            buffer_size=64, batch_size=8, learning_starts=0, target_update_interval=1,
            total_timesteps=10_000)


def example_env(name: str):
    env_id, kwargs = EXAMPLE_ENVS.get(name, DEFAULT_ENV)
    return ecomrl_jax.make(env_id, **kwargs)


@functools.cache
def tiny_learner(name: str):
    """`(learner, chunk)`: the learner of a tiny config and its one-update step, compiled once."""
    config_cls, module = LEARNERS[name]
    env, params = example_env(name)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    config = config_cls(**{k: v for k, v in TINY.items() if k in fields})
    learner = module.make_learner(config, env, params)
    chunk = jax.jit(lambda s: run_updates(learner, s, 1))
    return learner, chunk


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_tiny_config_trains_with_finite_metrics(name):
    learner, chunk = tiny_learner(name)
    state, metrics = chunk(learner.init(jax.random.key(0)))
    state, metrics = chunk(state)
    assert metrics["env_steps"].tolist() == [2 * learner.steps_per_update]
    for metric, value in metrics.items():
        assert value.shape[0] == 1, metric
        assert np.all(np.isfinite(np.asarray(value, np.float64))), metric


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_same_key_same_run_and_other_key_other_run(name):
    learner, chunk = tiny_learner(name)
    run = [chunk(chunk(learner.init(jax.random.key(k)))[0]) for k in (1, 1, 2)]
    assert_identical(run[0], run[1])
    with pytest.raises(AssertionError):
        assert_identical(run[0][0], run[2][0])


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_resume_from_checkpoint_is_bit_identical(name, tmp_path):
    learner, chunk = tiny_learner(name)
    first, _ = chunk(learner.init(jax.random.key(3)))
    expected = chunk(first)
    checkpoint.save(tmp_path, 1, first, {"learner": name})
    restored, config, step = checkpoint.restore(tmp_path, learner.init(jax.random.key(4)))
    assert (config, step) == ({"learner": name}, 1)
    assert_identical(chunk(restored), expected)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_config_validation_refuses_a_non_positive_total_timesteps(name):
    config_cls, module = LEARNERS[name]
    env, params = example_env(name)
    with pytest.raises(ValueError, match="total_timesteps"):
        module.make_learner(config_cls(total_timesteps=0), env, params)
