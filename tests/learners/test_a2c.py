"""A2C (ecomrl_jax/learners/a2c.py): config validation, metrics, vmap over
seeds with a Gaussian policy, the policy of trained weights, and learning on ShopperRec-v0.

As in test_ppo.py, tiny runs are shared between tests.
"""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from gymnax.environments.classic_control import Pendulum

import ecomrl_jax
from ecomrl_jax.learners import a2c
from ecomrl_jax.learners.networks import make_actor_critic
from tests.helpers import train_once

TINY = dict(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 4, hidden_size=16)
# Sessions that always last exactly 24 steps, so with 16-step rollouts episodes finish
# during updates 1 and 2 only.
FIXED_LENGTH = dict(max_steps_in_episode=24, patience_init=10.0)
EPISODE_METRICS = {"episode_return", "episode_length", "clicks", "purchases", "revenue",
                   "invalid_actions"}
LOSS_METRICS = {"loss_total", "loss_actor", "loss_value", "entropy"}


@pytest.fixture(scope="module")
def fixed_length():
    return ecomrl_jax.make("ShopperRec-v0", **FIXED_LENGTH)


@pytest.fixture(scope="module")
def tiny_run(fixed_length):
    """One tiny run on fixed-length sessions; tests check its outputs."""
    return train_once(a2c, a2c.A2CConfig(**TINY), *fixed_length)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_envs=0), "A2CConfig.num_envs must be an int >= 1"),
    (dict(num_steps=2.5), "num_steps must be an int >= 1"),
    (dict(hidden_size=True), "hidden_size must be an int >= 1"),
    (dict(total_timesteps=100), "less than one update"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(gamma=1.5), r"gamma must be in \(0, 1\]"),
    (dict(gae_lambda=1.1), r"gae_lambda must be in \[0, 1\]"),
    (dict(ent_coef=-0.01), "ent_coef must be >= 0"),
    (dict(vf_coef=-1.0), "vf_coef must be >= 0"),
    (dict(max_grad_norm=0.0), "max_grad_norm must be > 0"),
])
def test_invalid_config_is_refused(fixed_length, overrides, message):
    config = a2c.A2CConfig(**{**TINY, **overrides})
    with pytest.raises(ValueError, match=message):
        a2c.make_learner(config, *fixed_length)


def test_unsupported_action_space_is_refused():
    class DictActionPendulum(Pendulum):
        def action_space(self, params=None):
            return spaces.Dict({"torque": super().action_space(params)})

    env = DictActionPendulum()
    with pytest.raises(ValueError, match="A2C needs a Discrete, Slate or float Box action space"):
        a2c.make_learner(a2c.A2CConfig(**TINY), env, env.default_params)


def test_metrics_shapes_dtypes_and_finite(tiny_run):
    config, (state, metrics) = tiny_run
    assert set(metrics) == EPISODE_METRICS | LOSS_METRICS | {"episodes_finished", "env_steps"}
    for name, value in metrics.items():
        assert value.shape == (config.num_updates,), name
        assert np.all(np.isfinite(value)), name
        expected = jnp.int32 if name in ("episodes_finished", "env_steps") else jnp.float32
        assert value.dtype == expected, name
    np.testing.assert_array_equal(metrics["env_steps"], config.batch_size * np.arange(1, 5))
    np.testing.assert_array_equal(metrics["episodes_finished"], [0, 8, 8, 0])
    np.testing.assert_array_equal(metrics["episode_length"], [0.0, 24.0, 24.0, 24.0])
    assert int(state.loop.update_step) == config.num_updates
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(a2c.network_params(state)))


def test_vmap_over_seeds_with_a_gaussian_policy_and_its_clipped_actions():
    """`vmap(train)` over two seeds on Pendulum-v1; the learned policy's torques lie in the
    action bounds even when the Gaussian's samples do not."""
    env, params = gymnax.make("Pendulum-v1")
    config = a2c.A2CConfig(**TINY)
    keys = jax.random.split(jax.random.key(1), 2)
    state, metrics = jax.jit(jax.vmap(a2c.make_train(config, env, params)))(keys)
    assert set(metrics) == {"episode_return", "episode_length"} | LOSS_METRICS | {
        "episodes_finished", "env_steps"}
    assert all(v.shape == (2, config.num_updates) for v in metrics.values())
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert not np.array_equal(metrics["loss_total"][0], metrics["loss_total"][1])

    net = jax.tree.map(lambda x: x[0], a2c.network_params(state))
    # A wide Gaussian (std e^2) around the trained mean: most samples fall outside [-1, 1].
    wide = {"params": {**net["params"], "log_std": jnp.full_like(net["params"]["log_std"], 2.0)}}
    sample = a2c.make_policy(config, env, wide)
    greedy = a2c.make_policy(config, env, net, deterministic=True)
    obs, env_state = env.reset(jax.random.key(0), params)
    torques = jax.jit(jax.vmap(lambda k: sample(k, obs, env_state, params)))(
        jax.random.split(jax.random.key(2), 1000))
    assert torques.shape == (1000, 1) and torques.dtype == jnp.float32
    assert torques.min() == -params.max_torque and torques.max() == params.max_torque
    assert 0.05 < np.mean(np.abs(torques) < params.max_torque) < 0.5
    network = make_actor_critic(env.observation_space(params), 1, config.hidden_size,
                                action_space=env.action_space(params))
    mean = network.apply(net, obs)[0].mean  # in units where the bounds are -1 and 1
    np.testing.assert_allclose(greedy(jax.random.key(0), obs, env_state, params),
                               np.clip(params.max_torque * mean, -2.0, 2.0), rtol=1e-6)


@pytest.mark.slow
def test_learns_beyond_random_in_a_short_run():
    """~100k env steps (~20 s on a 2-core CPU, mostly compiling): return from random's ~7.3
    to well above the myopic oracle's ~9.4 (18-20 for seeds 0-2)."""
    env, params = ecomrl_jax.make("ShopperRec-v0")
    config = a2c.A2CConfig(total_timesteps=64 * 8 * 200)
    _, metrics = jax.jit(a2c.make_train(config, env, params))(jax.random.key(0))
    returns = metrics["episode_return"][metrics["episodes_finished"].cumsum() > 0]
    first, last = returns[:5].mean(), returns[-20:].mean()
    assert first < 8.5
    assert last > 14.0, f"mean episode return after training {last:.2f}"
