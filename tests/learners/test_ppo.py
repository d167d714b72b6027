"""PPO (ecomrl_jax/learners/ppo.py): config validation, metrics, vmap, slates,
and learning on ShopperRec-v0 (and, slow, on continuous-action Pendulum-v1). The action
distributions are tested in test_distributions.py.
Determinism and checkpoint resume of every learner are tests/contract/test_learners.py's;
the one-shot `train` equals chunked `run_updates` (every learner's `loop.train_fn`) in test_dqn.py.

Compiling `train` takes seconds even for tiny configs (the fast suite compiles quickly,
tests/conftest.py), so tests share compiled runs.
"""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from gymnax.environments.classic_control import Pendulum

import ecomrl_jax
from ecomrl_jax.learners import ppo
from ecomrl_jax.envs.recommendation.policies import myopic_oracle
from ecomrl_jax.evaluation import evaluate
from ecomrl_jax.learners.networks import make_actor_critic
from tests.helpers import train_once

TINY = dict(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 4, update_epochs=2,
            num_minibatches=2, hidden_size=16)
# Sessions that always last exactly 24 steps (patience cannot run out), so with 16-step
# rollouts episodes finish during updates 1 and 2 only.
FIXED_LENGTH = dict(max_steps_in_episode=24, patience_init=10.0)
EPISODE_METRICS = {"episode_return", "episode_length", "clicks", "purchases", "revenue",
                   "invalid_actions"}
LOSS_METRICS = {"loss_total", "loss_actor", "loss_value", "entropy", "approx_kl"}


@pytest.fixture(scope="module")
def rec():
    return ecomrl_jax.make("ShopperRec-v0")


@pytest.fixture(scope="module")
def fixed_length():
    return ecomrl_jax.make("ShopperRec-v0", **FIXED_LENGTH)


@pytest.fixture(scope="module")
def tiny_run(fixed_length):
    """One tiny run on fixed-length sessions; tests check its outputs."""
    return train_once(ppo, ppo.PPOConfig(**TINY), *fixed_length)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_envs=0), "num_envs must be an int >= 1"),
    (dict(num_steps=2.5), "num_steps must be an int >= 1"),
    (dict(num_envs=3, num_steps=5, num_minibatches=2), r"\(15\) must be divisible by num_minibatches \(2\)"),
    (dict(total_timesteps=100), "less than one update"),
    (dict(gamma=0.0), r"gamma must be in \(0, 1\]"),
    (dict(gamma=1.5), r"gamma must be in \(0, 1\]"),
    (dict(gae_lambda=-0.1), r"gae_lambda must be in \[0, 1\]"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(ent_coef=-0.01), "ent_coef must be >= 0"),
    (dict(vf_coef=-1.0), "vf_coef must be >= 0"),
    (dict(clip_eps=0.0), "clip_eps must be > 0"),
    (dict(max_grad_norm=-1.0), "max_grad_norm must be > 0"),
])
def test_invalid_config_is_refused(rec, overrides, message):
    config = ppo.PPOConfig(**{**TINY, **overrides})
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):
        ppo.make_learner(config, *rec)


def test_stacked_config_grid_is_validated():
    configs = [ppo.PPOConfig(lr=lr, **TINY) for lr in (1e-3, -1e-3)]
    with pytest.raises(ValueError, match="lr must be > 0"):
        ppo.validate_config(jax.tree.map(lambda *x: jnp.stack(x), *configs))


class DictActionPendulum(Pendulum):
    """Pendulum with its torque wrapped in a Dict action space, which no policy here supports."""

    def action_space(self, params=None):
        return spaces.Dict({"torque": super().action_space(params)})


def test_unsupported_action_space_is_refused():
    env = DictActionPendulum()
    with pytest.raises(ValueError, match="PPO needs a Discrete, Slate or float Box action space"):
        ppo.make_learner(ppo.PPOConfig(**TINY), env, env.default_params)


def test_metrics_shapes_dtypes_and_finite(tiny_run):
    config, (state, metrics) = tiny_run
    assert set(metrics) == EPISODE_METRICS | LOSS_METRICS | {"episodes_finished", "env_steps"}
    num_updates = config.num_updates
    for name, value in metrics.items():
        assert value.shape == (num_updates,), name
        assert np.all(np.isfinite(value)), name
        expected = jnp.int32 if name in ("episodes_finished", "env_steps") else jnp.float32
        assert value.dtype == expected, name
    np.testing.assert_array_equal(metrics["env_steps"], config.batch_size * np.arange(1, 5))
    assert int(state.loop.update_step) == num_updates
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(ppo.network_params(state)))


def test_episode_metrics_average_finished_episodes_and_carry_when_none_finish(tiny_run):
    _, (_, metrics) = tiny_run
    np.testing.assert_array_equal(metrics["episodes_finished"], [0, 8, 8, 0])
    np.testing.assert_array_equal(metrics["episode_length"], [0.0, 24.0, 24.0, 24.0])
    for name in EPISODE_METRICS:
        assert metrics[name][0] == 0.0 and metrics[name][3] == metrics[name][2], name
    assert 0.0 < metrics["clicks"][1] <= 24.0


def test_vmap_over_seeds_on_a_box_observation_env():
    """`vmap(train)` over two seeds; CartPole also exercises the MLP network for Box observations."""
    env, params = gymnax.make("CartPole-v1")
    config = ppo.PPOConfig(**TINY)
    keys = jax.random.split(jax.random.key(1), 2)
    state, metrics = jax.jit(jax.vmap(ppo.make_train(config, env, params)))(keys)
    assert {"episode_return", "episode_length", "loss_total", "env_steps"} <= set(metrics)
    assert all(v.shape == (2, config.num_updates) for v in metrics.values())
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert metrics["episode_return"].dtype == jnp.float32 and metrics["env_steps"].dtype == jnp.int32
    assert state.loop.update_step.shape == (2,)
    assert not np.array_equal(metrics["loss_total"][0], metrics["loss_total"][1])


@pytest.mark.slow
def test_vmap_over_learning_rate_grid_on_slates():
    """A grid of configs vmaps with one compile; also runs the Plackett-Luce slate policy."""
    env, params = ecomrl_jax.make("ShopperRec-v0", slate_size=3)
    configs = [ppo.PPOConfig(lr=lr, **TINY) for lr in (1e-4, 1e-2)]
    grid = jax.tree.map(lambda *x: jnp.stack(x), *configs)
    keys = jnp.stack([jax.random.key(0)] * 2)
    train = jax.vmap(lambda c, k: ppo.make_train(c, env, params)(k))
    state, metrics = jax.jit(train)(grid, keys)
    assert all(v.shape == (2, configs[0].num_updates) for v in metrics.values())
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert metrics["invalid_actions"].max() == 0.0
    # Same key, different lr: identical first rollout, different parameters after it.
    np.testing.assert_array_equal(metrics["clicks"][0, 0], metrics["clicks"][1, 0])
    assert not np.array_equal(metrics["loss_total"][0, -1], metrics["loss_total"][1, -1])


def test_policy_for_a_single_env(fixed_length, tiny_run):
    env, params = fixed_length
    config, (state, _) = tiny_run
    net = ppo.network_params(state)
    sample = ppo.make_policy(config, env, net)
    greedy = ppo.make_policy(config, env, net, deterministic=True)
    network = make_actor_critic(env.observation_space(params), env.num_actions, config.hidden_size)

    @jax.jit
    def act(key):
        obs, env_state = env.reset(key, params)
        greedy_actions = [greedy(jax.random.key(i), obs, env_state, params) for i in range(2)]
        return sample(key, obs, env_state, params), greedy_actions, jnp.argmax(network.apply(net, obs)[0])

    action, greedy_actions, best = act(jax.random.key(3))
    assert action.shape == () and action.dtype == jnp.int32 and 0 <= int(action) < env.num_candidates
    assert [int(a) for a in greedy_actions] == [int(best)] * 2
    # Policies for other weights share one tree structure, so jit keyed on them compiles once.
    other = ppo.make_policy(config, env, jax.tree.map(jnp.zeros_like, net))
    assert jax.tree.structure(other) == jax.tree.structure(sample)


@pytest.mark.slow
def test_learns_beyond_random_in_a_short_run(rec):
    """~100k env steps (~2 s): return from random's ~7.1 to well above the myopic oracle's ~9.4
    (about 21 for seeds 0-2)."""
    env, params = rec
    config = ppo.PPOConfig(num_envs=64, num_steps=16, total_timesteps=64 * 16 * 100, lr=3e-3)
    _, metrics = jax.jit(ppo.make_train(config, env, params))(jax.random.key(0))
    first, last = metrics["episode_return"][:5].mean(), metrics["episode_return"][-10:].mean()
    assert first < 8.5
    assert last > 14.0, f"mean episode return after training {last:.2f}"


@pytest.mark.slow
def test_default_config_beats_myopic_oracle_by_ten_percent(rec):
    """Default budget (~1.5 min on a 2-core CPU); greedy PPO and the myopic oracle are
    evaluated on the same 1000 episodes."""
    env, params = rec
    state, metrics = jax.jit(ppo.make_train(ppo.PPOConfig(), env, params))(jax.random.key(0))
    assert metrics["episode_return"][-20:].mean() > 1.1 * 9.4
    policy = ppo.make_policy(ppo.PPOConfig(), env, ppo.network_params(state), deterministic=True)
    learned = evaluate(env, params, policy, jax.random.key(1), 1000)["return"].mean()
    oracle = evaluate(env, params, myopic_oracle(env, params), jax.random.key(1), 1000)["return"].mean()
    assert learned > 1.1 * oracle, f"PPO {learned:.2f} vs myopic oracle {oracle:.2f}"


@pytest.mark.slow
def test_improves_on_continuous_control():
    """Gaussian policy on Pendulum-v1 (torque in [-2, 2]): 200k env steps (~40 s) lift the
    episode return from about -1250 (near random) by 300 or more (-790 to -490, seeds 0-2)."""
    env, params = gymnax.make("Pendulum-v1")
    config = ppo.PPOConfig(num_envs=16, num_steps=128, total_timesteps=200 * 1024, update_epochs=4,
                           num_minibatches=4, hidden_size=64, ent_coef=0.0)
    _, metrics = jax.jit(ppo.make_train(config, env, params))(jax.random.key(0))
    returns = metrics["episode_return"][metrics["episodes_finished"].cumsum() > 0]
    first, last = returns[:10].mean(), returns[-10:].mean()
    assert first < -1000.0
    assert last > first + 300.0, f"mean episode return {first:.0f} -> {last:.0f}"
