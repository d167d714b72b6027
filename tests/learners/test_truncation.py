"""Time limits are not terminations (DESIGN §4): shown on an env whose observation lacks the time.

`Endless`: one state, reward 1 every step, never terminates, truncated after T = 10 steps, and
the observation is constant, so nothing tells a learner how close the time limit is. The value
of the (infinite-horizon) MDP is 1 / (1 - gamma) = 10 at gamma 0.9. With the truncation rule
(cut traces at `done`, bootstrap from the final observation unless `terminated`) the targets
are exactly that value and the learners' estimates converge to it; the old rule (a time limit
treated as a termination) gives targets that average well below it.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.learners import a2c, dqn, tabular, targets
from ecomrl_jax.learners.actor_critic import make_network
from ecomrl_jax.learners.networks import make_q_network

GAMMA, T = 0.9, 10
VALUE = 1.0 / (1.0 - GAMMA)


@struct.dataclass
class State(environment.EnvState):
    time: Any


@struct.dataclass
class Params(environment.EnvParams):
    max_steps_in_episode: int = T


class Endless(environment.Environment):
    """Reward 1 per step, truncated at T, constant observation; `index_obs` for tabular."""

    def __init__(self, index_obs: bool = False):
        super().__init__()
        self.index_obs = index_obs

    @property
    def default_params(self) -> Params:
        return Params()

    def step_env(self, key, state, action, params):
        state = State(time=state.time + 1)
        return self.get_obs(state), state, jnp.float32(1.0), jnp.bool_(False), {}

    def reset_env(self, key, params):
        state = State(time=jnp.int32(0))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.int32(0) if self.index_obs else jnp.ones(2, jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Discrete(1) if self.index_obs else spaces.Box(0.0, 1.0, (2,), jnp.float32)


# --------------------------------------------------------------------------- target functions

def _trajectory(num_steps: int = 3 * T):
    """One env's `num_steps` steps of Endless under a perfect critic (V = 1 / (1 - gamma))."""
    truncated = (jnp.arange(num_steps) % T) == T - 1
    ones = jnp.ones(num_steps)
    return ones, VALUE * ones, VALUE * ones, jnp.zeros(num_steps, bool), truncated


@pytest.mark.parametrize("gae_lambda", [0.0, 0.95, 1.0])
def test_gae_bootstraps_truncation_and_the_old_rule_is_biased(gae_lambda):
    rewards, values, next_values, terminated, truncated = _trajectory()
    advantages, fixed = targets.gae(rewards, values, next_values, terminated, truncated, GAMMA,
                                    gae_lambda)
    np.testing.assert_allclose(fixed, VALUE, rtol=1e-5)  # the true value: no advantage anywhere
    np.testing.assert_allclose(advantages, 0.0, atol=1e-5)
    _, old = targets.gae(rewards, values, next_values, truncated, truncated, GAMMA, gae_lambda)
    assert float(old[T - 1]) == pytest.approx(1.0)  # the last step before the limit: reward only
    assert float(VALUE - old.mean()) > 0.5  # biased low on average (0.9 at lambda 0)


def test_n_step_return_bootstraps_truncation_and_the_old_rule_is_biased():
    rewards, _, _, terminated, _ = (x[:3] for x in _trajectory())
    truncated = jnp.array([False, True, False])
    total, discount = targets.n_step_return(rewards, terminated, truncated, GAMMA)
    assert float(total + discount * VALUE) == pytest.approx(VALUE)
    total, discount = targets.n_step_return(rewards, truncated, truncated, GAMMA)  # old rule
    assert float(total + discount * VALUE) == pytest.approx(1.0 + GAMMA)


# --------------------------------------------------------------------------- learners

def test_a2c_critic_learns_the_infinite_horizon_value():
    env = Endless()
    config = a2c.A2CConfig(lr=3e-2, gamma=GAMMA, gae_lambda=0.95, num_envs=8, num_steps=16,
                           total_timesteps=8 * 16 * 150, hidden_size=8, anneal_lr=False)
    train = a2c.make_train(config, env, env.default_params)
    state, _ = jax.jit(train)(jax.random.key(0))
    network, _ = make_network(env, env.default_params, config.hidden_size, "A2C")
    _, value = network.apply(a2c.network_params(state), env.get_obs(None))
    assert abs(float(value) - VALUE) < 0.5, float(value)


def test_dqn_q_values_learn_the_infinite_horizon_value():
    env = Endless()
    config = dqn.DQNConfig(lr=1e-2, gamma=GAMMA, num_envs=8, total_timesteps=8 * 400,
                           buffer_size=8 * 64, batch_size=32, learning_starts=64, n_step=3,
                           target_update_interval=10, hidden_size=8, anneal_lr=False)
    state, _ = jax.jit(dqn.make_train(config, env, env.default_params))(
        jax.random.key(0))
    network = make_q_network(env.observation_space(), 2, config.hidden_size, config.dueling)
    q = network.apply(dqn.network_params(state), env.get_obs(None))
    np.testing.assert_allclose(q, VALUE, atol=0.5)


def test_tabular_q_learning_learns_the_infinite_horizon_value():
    env = Endless(index_obs=True)
    config = tabular.QLearningConfig(alpha=0.5, gamma=GAMMA, num_envs=4, num_steps=50,
                                     total_timesteps=4 * 50 * 4)
    state, _ = jax.jit(tabular.make_train(config, env, env.default_params))(
        jax.random.key(0))
    np.testing.assert_allclose(state.q_table, VALUE, atol=0.05)
