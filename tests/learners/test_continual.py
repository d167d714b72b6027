"""Continual learning (ecomrl_jax/learners/continual.py) and what it needs from the learners: the
lr floor `min_lr`, DQN from given weights, the deployed reward per step, restarted schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ecomrl_jax
from ecomrl_jax.learners import continual, dqn, ppo
from ecomrl_jax.learners.config import make_optimizer
from ecomrl_jax.learners.loop import run_updates
from ecomrl_jax.wrappers import ScaleReward
from tests.helpers import assert_identical

# 3-day pricing episodes under 4-step rollouts: episodes end inside updates and across them.
PPO_TINY = dict(num_envs=2, num_steps=4, total_timesteps=2 * 4 * 3, num_minibatches=2,
                update_epochs=1, hidden_size=8)
DQN_TINY = dict(num_envs=2, train_frequency=2, total_timesteps=2 * 2 * 4, buffer_size=2 * 8,
                batch_size=4, learning_starts=0, n_step=1, hidden_size=8)


@pytest.fixture(scope="module")
def pricing():
    return ecomrl_jax.make("DynamicPricing-v0", max_steps_in_episode=3)


def test_annealed_lr_decays_linearly_to_min_lr_and_stays_there():
    # Adam on a constant gradient steps by the learning rate itself (m / sqrt(v) = 1)
    tx = make_optimizer(1.0, max_grad_norm=1e6, anneal_lr=True, num_updates=4, min_lr=0.25)
    params = jnp.zeros(1)
    state = tx.init(params)
    steps = []
    for _ in range(6):
        update, state = tx.update(jnp.ones(1), state, params)
        steps.append(-float(update[0]))
    np.testing.assert_allclose(steps, [1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25], rtol=1e-4)


@pytest.mark.parametrize("config", [ppo.PPOConfig(lr=1e-3, min_lr=2e-3),
                                    dqn.DQNConfig(lr=1e-3, min_lr=2e-3)])
def test_min_lr_above_lr_is_refused(config):
    with pytest.raises(ValueError, match="min_lr .* must be <= lr"):
        config.validate()


def test_dqn_starts_from_given_weights_and_refuses_misfits(pricing):
    env, params = pricing
    config = dqn.DQNConfig(**DQN_TINY)
    trained = dqn.make_learner(config, env, params).init(jax.random.key(1)).train_state.params
    learner = dqn.make_learner(config, env, params, init_network_params=trained)
    state = learner.init(jax.random.key(2))
    assert_identical(state.train_state.params, trained)
    assert_identical(state.train_state.target_params, trained)
    wider = dqn.make_learner(dqn.DQNConfig(**{**DQN_TINY, "hidden_size": 16}), env, params)
    with pytest.raises(ValueError, match="DQN: the initial network params do not fit"):
        dqn.make_learner(config, env, params,
                         init_network_params=wider.init(jax.random.key(0)).train_state.params
                         ).init(jax.random.key(0))


@pytest.mark.parametrize("module, config", [(ppo, ppo.PPOConfig(**PPO_TINY)),
                                            (dqn, dqn.DQNConfig(**DQN_TINY))])
def test_step_reward_is_the_reward_per_env_step_across_episode_ends(pricing, module, config):
    env, params = pricing
    # no demand: revenue 0 every day, so the shifted reward is exactly 1 per step
    env = ScaleReward(env, 1.0, shift=-1.0)
    learner = continual.track_reward(module.make_learner(config, env, params.replace(
        linear_intercept=0.0)))
    _, metrics = jax.jit(lambda k: run_updates(learner, learner.init(k), 3))(jax.random.key(0))
    np.testing.assert_array_equal(metrics["step_reward"], 1.0)
    assert metrics["episodes_finished"].sum() > 0  # episodes ended inside the updates


@pytest.mark.slow
def test_ppo_restart_keeps_weights_and_envs_and_starts_a_fresh_optimiser(pricing):
    env, params = pricing
    deployed_learner = ppo.make_learner(ppo.PPOConfig(**PPO_TINY), env, params)
    deployed = run_updates(deployed_learner, deployed_learner.init(jax.random.key(0)), 2)[0]
    restart_learner = ppo.make_learner(ppo.PPOConfig(**{**PPO_TINY, "lr": 1e-2}), env, params,
                                       init_network_params=ppo.network_params(deployed))
    fresh = restart_learner.init(jax.random.key(5))
    restarted = continual.restart_schedules(fresh, deployed)
    assert_identical(restarted.train_state, fresh.train_state)
    assert_identical(restarted.train_state.params, deployed.train_state.params)
    unclocked = dict(update_step=None)
    assert_identical(restarted.loop._replace(**unclocked), deployed.loop._replace(**unclocked))
    assert int(restarted.loop.update_step) == 0 and int(deployed.loop.update_step) == 2
    # Adam's step count is 0 again, so the lr schedule starts from the top
    counts = [x for x in jax.tree.leaves(restarted.train_state.opt_state) if x.dtype == jnp.int32]
    assert counts and all(int(c) == 0 for c in counts)
    restart_learner.update(restarted)  # runs


@pytest.mark.slow
def test_dqn_restart_keeps_the_buffer_and_starts_epsilon_again(pricing):
    env, params = pricing
    hold = dqn.DQNConfig(**DQN_TINY, epsilon_schedule="constant", epsilon_start=0.05)
    deployed_learner = dqn.make_learner(hold, env, params)
    deployed = run_updates(deployed_learner, deployed_learner.init(jax.random.key(0)), 3)[0]
    restart = dqn.DQNConfig(**DQN_TINY, epsilon_start=0.5, epsilon_end=0.05)
    restart_learner = dqn.make_learner(restart, env, params,
                                       init_network_params=dqn.network_params(deployed))
    restarted = continual.restart_schedules(restart_learner.init(jax.random.key(1)), deployed)
    assert_identical(restarted.buffer, deployed.buffer)
    assert_identical(restarted.train_state.params, deployed.train_state.params)
    _, metrics = run_updates(restart_learner, restarted, 2)
    np.testing.assert_allclose(metrics["epsilon"][0], 0.5)
    assert metrics["epsilon"][1] < 0.5
    assert np.all(np.asarray(metrics["loss"]) > 0)  # it learns from the kept buffer
