"""Tabular Q-learning and SARSA.

Needs an env with a small discrete state space whose observation is the state index
(`observation_space` `Discrete(num_states)`, e.g. ToyRec-v0 with `obs_type="index"`) and a
`Discrete` action space. `num_envs` envs step in parallel and update one shared table per
seed; `vmap` over seeds gives independent tables. When several envs visit the same (s, a)
in one step, Q(s, a) moves `alpha` toward the mean of their targets.

Truncation (time limit) is not terminal: the target bootstraps from the pre-reset state in
`info["final_observation"]`, so the fixed point is the discounted Q* of the infinite-horizon
MDP that `ecomrl_jax.mdp.value_iteration` computes. Metrics per update: the episode means of EpisodeStatistics
(`episode_return`, `episode_length` and the env's business metrics; carried over when no
episode ends), `td_error` (mean absolute TD error), `epsilon` (at the update's end),
`episodes_finished` and `env_steps` (int32). Traceable hyperparameters are pytree fields, so
a grid vmaps with one compile:

    grid = jax.tree.map(lambda *x: jnp.stack(x), *[QLearningConfig(alpha=a) for a in (0.05, 0.2)])
    jax.vmap(lambda c, k: make_train(c, env, params)(k))(grid, keys)
"""

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from ecomrl_jax.learners.config import (EPSILON_SCHEDULES, RolloutSizes, check_choice, check_config,
                                        check_one_update, epsilon_rules, epsilon_schedule)
from ecomrl_jax.learners.loop import Learner, LoopState, make_env_loop, train_fn
from ecomrl_jax.rules import POSITIVE_INT, UNIT_INTERVAL, in_range


@struct.dataclass
class QLearningConfig(RolloutSizes):
    """Q-learning: target `r + gamma * max_a' Q(s', a')`. Epsilon goes from `epsilon` to
    `epsilon_final` over the run by `epsilon_schedule` (constant: stays at `epsilon`)."""

    alpha: float = 0.1
    gamma: float = 0.9
    epsilon: float = 0.2
    epsilon_final: float = 0.01
    epsilon_schedule: str = struct.field(pytree_node=False, default="constant")
    num_envs: int = struct.field(pytree_node=False, default=16)
    num_steps: int = struct.field(pytree_node=False, default=100)
    total_timesteps: int = struct.field(pytree_node=False, default=1_000_000)
    update_rule: ClassVar[str] = "q_learning"

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        check_choice(self, "epsilon_schedule", EPSILON_SCHEDULES)
        check_config(self, epsilon_rules(self, TABULAR_RULES, "epsilon", "epsilon_final"))
        check_one_update(self, self.batch_size, "num_envs * num_steps")


TABULAR_RULES = {"num_envs": POSITIVE_INT, "num_steps": POSITIVE_INT, "total_timesteps": POSITIVE_INT,
                 "alpha": in_range(0, 1, low_open=True), "gamma": UNIT_INTERVAL,
                 "epsilon": UNIT_INTERVAL, "epsilon_final": UNIT_INTERVAL}


@struct.dataclass
class SARSAConfig(QLearningConfig):
    """SARSA: on-policy target `r + gamma * Q(s', a')`, `a'` the next epsilon-greedy action."""

    update_rule: ClassVar[str] = "sarsa"


class RunnerState(NamedTuple):
    q_table: jax.Array  # (num_states, num_actions) float32, shared by the envs of one seed
    action: jax.Array  # (num_envs,) int32 action each env takes next
    loop: LoopState  # envs, state indices (obs), key, update count, episode metrics


def table_shape(env, env_params) -> tuple[int, int]:
    """`(num_states, num_actions)`; ValueError unless observations are state indices and
    actions are Discrete."""
    obs_space, act_space = env.observation_space(env_params), env.action_space(env_params)
    if not isinstance(obs_space, spaces.Discrete):
        raise ValueError(f"tabular learners need integer state-index observations (observation "
                         f"space Discrete(num_states)); {env.name} has {obs_space!r} (ToyRec-v0: "
                         f"use obs_type='index')")
    num_states = getattr(env, "num_states", obs_space.n)
    if num_states != obs_space.n:
        raise ValueError(f"{env.name}.num_states ({num_states}) differs from its observation "
                         f"space Discrete({obs_space.n})")
    if not isinstance(act_space, spaces.Discrete):
        raise ValueError(f"tabular learners need a Discrete action space; {env.name} has "
                         f"{act_space!r}")
    return num_states, act_space.n


def epsilon_at(config: QLearningConfig, progress: jax.Array) -> jax.Array:
    """Exploration rate at `progress` in [0, 1] (fraction of the run's env steps done)."""
    return epsilon_schedule(config.epsilon_schedule, config.epsilon, config.epsilon_final, progress)


def exploration_draws(key: jax.Array, batch_shape: tuple, num_actions: int):
    """`(uniform (*batch_shape), gumbel (*batch_shape, num_actions))` for `epsilon_greedy`, from
    one uniform draw (one PRNG call per step keeps the compiled program small)."""
    u = jax.random.uniform(key, (*batch_shape, num_actions + 1), minval=jnp.finfo(jnp.float32).tiny)
    return u[..., 0], -jnp.log(-jnp.log(u[..., 1:]))


def epsilon_greedy(values: jax.Array, epsilon, uniform: jax.Array, gumbel: jax.Array) -> jax.Array:
    """Action per row of `values` (..., A): uniformly random where `uniform < epsilon`, else
    greedy with ties broken uniformly. `uniform` (...) and `gumbel` (..., A) are the draws."""
    best = values == values.max(-1, keepdims=True)
    greedy = jnp.argmax(jnp.where(best, gumbel, -jnp.inf), -1)
    return jnp.where(uniform < epsilon, jnp.argmax(gumbel, -1), greedy).astype(jnp.int32)


def td_update(q_table, obs, action, reward, terminated, final_obs, boot_action, alpha, gamma,
              rule: str):
    """One batched Q-learning or SARSA update; returns `(new table, TD errors)`. SARSA
    bootstraps from `Q(final_obs, boot_action)`, Q-learning from `max_a Q(final_obs, a)`
    (`boot_action` unused); no bootstrap where `terminated`. Envs that share an (s, a)
    contribute the mean of their TD errors. `rule` is "q_learning" or "sarsa"."""
    next_values = q_table[final_obs]
    if rule == "sarsa":
        boot = jnp.take_along_axis(next_values, boot_action[:, None], -1)[:, 0]
    else:
        boot = next_values.max(-1)
    td = reward + gamma * jnp.where(terminated, 0.0, boot) - q_table[obs, action]
    same = (obs[:, None] == obs[None, :]) & (action[:, None] == action[None, :])
    q_table = q_table.at[obs, action].add(alpha * td / jnp.sum(same, axis=1))
    return q_table, td


def epsilon_greedy_probs(q_table: jax.Array, epsilon) -> jax.Array:
    """`pi[s, a]` of epsilon-greedy on `q_table` with greedy ties broken uniformly."""
    best = q_table == q_table.max(-1, keepdims=True)
    greedy = best / best.sum(-1, keepdims=True)
    return epsilon / q_table.shape[-1] + (1.0 - epsilon) * greedy


def network_params(runner_state: RunnerState) -> jax.Array:
    """The Q-table of a runner state (batched if the state is)."""
    return runner_state.q_table


def make_policy(config: QLearningConfig, env, q_table, deterministic: bool = False):
    """`policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env: greedy
    (first best action) if deterministic, else epsilon-greedy at the schedule's final epsilon.

    A `jax.tree_util.Partial` whose leaves are the table (and epsilon), so a jit keyed on the
    policy compiles once for many tables.
    """
    table_shape(env, env.default_params)
    if deterministic:
        return jax.tree_util.Partial(_greedy, q_table)
    epsilon = epsilon_at(config, jnp.float32(1.0))
    return jax.tree_util.Partial(_epsilon_greedy_policy, q_table, epsilon)


def _greedy(q_table, key, obs, env_state, env_params):
    return jnp.argmax(q_table[obs]).astype(jnp.int32)


def _epsilon_greedy_policy(q_table, epsilon, key, obs, env_state, env_params):
    values = q_table[obs]
    return epsilon_greedy(values, epsilon, *exploration_draws(key, (), values.shape[-1]))


def make_learner(config: QLearningConfig, env, env_params) -> Learner:
    """Q-learning or SARSA (by the config's class) as a `Learner`."""
    config.validate()
    num_states, num_actions = table_shape(env, env_params)
    rule = config.update_rule
    num_envs, num_steps, num_updates = config.num_envs, config.num_steps, config.num_updates
    run_steps = num_updates * num_steps  # actions each env takes over the run
    env_loop = make_env_loop(env, env_params, num_envs)

    def draws(key):
        return exploration_draws(key, (num_envs,), num_actions)

    def init(key):
        k_loop, k_act = jax.random.split(key)
        loop = env_loop.init(k_loop)
        q_table = jnp.zeros((num_states, num_actions), jnp.float32)
        action = epsilon_greedy(q_table[loop.obs], epsilon_at(config, 0.0), *draws(k_act))
        return RunnerState(q_table, action, loop)

    def act(carry, key, obs, t):
        """The action chosen at the previous step (SARSA needs it before the update)."""
        q_table, action = carry
        return action, carry, key

    def observe(carry, key, step, t):
        q_table, action = carry
        epsilon = epsilon_at(config, (t + 1) / run_steps)
        uniform, gumbel = draws(key)
        # SARSA: a' from the pre-update table; it is the bootstrap action, and the next action
        # too unless the episode ended (same draws, so they agree when final_obs == next_obs).
        boot_action = (epsilon_greedy(q_table[step.final_obs], epsilon, uniform, gumbel)
                       if rule == "sarsa" else None)
        new_table, td = td_update(q_table, step.obs, action, step.reward, step.terminated,
                                  step.final_obs, boot_action, config.alpha, config.gamma, rule)
        policy_table = q_table if rule == "sarsa" else new_table
        next_action = epsilon_greedy(policy_table[step.next_obs], epsilon, uniform, gumbel)
        return (new_table, next_action), (jnp.mean(jnp.abs(td)), epsilon)

    def update(runner: RunnerState):
        steps = runner.loop.update_step * num_steps + jnp.arange(num_steps)
        (q_table, action), loop, (td, epsilon), episodes = env_loop.collect(
            act, observe, (runner.q_table, runner.action), runner.loop, num_steps, steps)
        loop, metrics = env_loop.finish(loop, episodes)
        metrics = {**metrics, "td_error": jnp.mean(td), "epsilon": epsilon[-1]}
        return RunnerState(q_table, action, loop), metrics

    return Learner(init=init, update=update, num_updates=num_updates,
                   steps_per_update=config.batch_size)


def make_train(config: QLearningConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
