"""Logged ShopperRec-v0 trajectories for pre-training (`learners.pretrain`).

`collect_logs` rolls out a logging (behaviour) policy, e.g. `epsilon_policy` around the myopic
oracle, in `num_envs` vmapped envs for `num_steps` scanned steps and keeps each step's
observation, shown action and clicked candidate slot: reading the click needs ShopperRec's
state, so it lives with the env rather than with the generic learner.
"""

import jax
import jax.numpy as jnp

from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec
from ecomrl_jax.learners.pretrain import Logs


def epsilon_policy(policy_fn, env, env_params, epsilon: float):
    """`policy_fn`'s action, or with probability `epsilon` a uniformly random one: logs whose
    actions vary around a good policy, as a deployed recommender's exploration gives."""
    space = env.action_space(env_params)

    def noisy_fn(key, obs, env_state, params):
        k_coin, k_random, k_policy = jax.random.split(key, 3)
        action = policy_fn(k_policy, obs, env_state, params)
        return jnp.where(jax.random.uniform(k_coin) < epsilon, space.sample(k_random), action)

    return noisy_fn


def collect_logs(env, env_params, policy_fn, key, num_envs: int, num_steps: int) -> Logs:
    """`num_steps` steps of `num_envs` auto-resetting ShopperRec envs under `policy_fn(key, obs,
    env_state, env_params)`, flattened to `num_steps * num_envs` logged steps. The clicked
    slot is the shown slot whose item heads the next state's history; on a step that ends the
    episode the history is reset, so such clicks are left out (`clicked` 0)."""
    if not isinstance(env, ShopperRec):
        raise ValueError(f"collect_logs needs an unwrapped ShopperRec env, got {type(env).__name__}")

    def env_step(key, obs, state):
        k_act, k_step = jax.random.split(key)
        action = policy_fn(k_act, obs, state, env_params)
        next_obs, next_state, _, terminated, truncated, info = env.step(k_step, state, action,
                                                                          env_params)
        slots = jnp.atleast_1d(action)
        click_slot = slots[jnp.argmax(state.candidates[slots] == next_state.history_items[0])]
        clicked = (info["clicks"] > 0) & ~(terminated | truncated)
        log = Logs(obs, action.astype(jnp.int32), jnp.where(clicked, click_slot, 0),
                   clicked.astype(jnp.float32))
        return next_obs, next_state, log

    def body(carry, key):
        obs, state, log = jax.vmap(env_step)(jax.random.split(key, num_envs), *carry)
        return (obs, state), log

    k_reset, k_run = jax.random.split(key)
    carry = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), env_params)
    _, logs = jax.lax.scan(body, carry, jax.random.split(k_run, num_steps))
    return jax.tree.map(lambda x: x.reshape((num_steps * num_envs,) + x.shape[2:]), logs)
