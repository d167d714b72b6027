"""Tabular Q-learning and SARSA, and value iteration for a known model.

Needs an env with a small discrete state space whose observation is the state index
(`observation_space` `Discrete(num_states)`, e.g. ToyRec-v0 with `obs_type="index"`) and a
`Discrete` action space. `num_envs` envs step in parallel and update one shared table per
seed; `vmap` over seeds gives independent tables. When several envs visit the same (s, a)
in one step, Q(s, a) moves `alpha` toward the mean of their targets.

Truncation (time limit) is not terminal: the target bootstraps from the pre-reset state in
`info["final_observation"]`, so the fixed point is the discounted Q* of the infinite-horizon
MDP that `value_iteration` computes. Metrics per update: the episode means of EpisodeStatistics
(`episode_return`, `episode_length` and the env's business metrics; carried over when no
episode ends), `td_error` (mean absolute TD error), `epsilon` (at the update's end),
`episodes_finished` and `env_steps` (int32). Traceable hyperparameters are pytree fields, so
a grid vmaps with one compile:

    grid = jax.tree.map(lambda *x: jnp.stack(x), *[QLearningConfig(alpha=a) for a in (0.05, 0.2)])
    jax.vmap(lambda c, k: make_train(c, env, params)(k))(grid, keys)
"""

import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from ecomrl_jax.learners.loop import EPSILON_SCHEDULES, Learner, epsilon_schedule, train_fn
from ecomrl_jax.wrappers import EpisodeStatistics



@struct.dataclass
class QLearningConfig:
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

    @property
    def batch_size(self) -> int:
        """Env steps per update (all envs together)."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Updates in a full run (total_timesteps rounded down to whole updates)."""
        return self.total_timesteps // self.batch_size

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        cls = type(self).__name__
        for name in ("num_envs", "num_steps", "total_timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{cls}.{name} must be a positive int, got {value!r}")
        if self.total_timesteps < self.batch_size:
            raise ValueError(f"{cls}.total_timesteps ({self.total_timesteps}) is less than one "
                             f"update (num_envs * num_steps = {self.batch_size})")
        if self.epsilon_schedule not in EPSILON_SCHEDULES:
            raise ValueError(f"{cls}.epsilon_schedule must be one of {EPSILON_SCHEDULES}, "
                             f"got {self.epsilon_schedule!r}")
        unit = (lambda x: (x >= 0) & (x <= 1), "in [0, 1]")
        checks = {"alpha": (lambda x: (x > 0) & (x <= 1), "in (0, 1]"), "gamma": unit,
                  "epsilon": unit, "epsilon_final": unit}
        if self.epsilon_schedule == "exponential":
            checks["epsilon"] = checks["epsilon_final"] = (
                lambda x: (x > 0) & (x <= 1), "in (0, 1] for the exponential schedule")
        for name, (ok, rule) in checks.items():
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            if not np.all(ok(np.asarray(value, np.float64))):
                raise ValueError(f"{cls}.{name} must be {rule}, got {value!r}")


@struct.dataclass
class SARSAConfig(QLearningConfig):
    """SARSA: on-policy target `r + gamma * Q(s', a')`, `a'` the next epsilon-greedy action."""

    update_rule: ClassVar[str] = "sarsa"


class RunnerState(NamedTuple):
    q_table: jax.Array  # (num_states, num_actions) float32, shared by the envs of one seed
    env_state: Any  # batched EpisodeStatistics state
    obs: jax.Array  # (num_envs,) int32 current state index
    action: jax.Array  # (num_envs,) int32 action each env takes next
    key: jax.Array
    update_step: jax.Array  # updates done so far (int32)
    episode_metrics: dict  # last reported episode means, carried when no episode finishes


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


def expected_next(transitions, values: jax.Array) -> jax.Array:
    """`E[values[s'] | s, a]` for each (s, a). `transitions` is a dense `P[s, a, s']` or the
    sparse pair `(next_state[s, a, k], prob[s, a, k])` (e.g. `ToyRec.successors`), which costs
    `k` instead of `num_states` per pair."""
    if isinstance(transitions, tuple):
        next_state, prob = transitions
        return jnp.sum(prob * values[next_state], -1)
    return jnp.einsum("sat,t->sa", transitions, values)


def _policy_transitions(transitions, policy: jax.Array):
    """`transitions` restricted to the action `policy[s]` of each state, keeping an action axis."""
    states = jnp.arange(policy.shape[0])
    if isinstance(transitions, tuple):
        return tuple(x[states, policy][:, None] for x in transitions)
    return transitions[states, policy][:, None]


def _fixed_point(update, init, gamma, tol: float, max_iters: int):
    """Iterate the gamma-contraction `update` until the sup-norm change is at most
    `tol * (1 - gamma) / gamma`, which bounds the distance to the fixed point by `tol`."""
    threshold = tol * (1.0 - gamma) / jnp.maximum(gamma, 1e-12)

    def body(carry):
        x, _, i = carry
        new = update(x)
        return new, jnp.max(jnp.abs(new - x)), i + 1

    return jax.lax.while_loop(lambda c: (c[1] > threshold) & (c[2] < max_iters), body,
                              (init, jnp.float32(jnp.inf), 0))[0]


def _check_gamma(gamma) -> None:
    if not isinstance(gamma, jax.core.Tracer) and not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"gamma must be in [0, 1) for a discounted fixed point, got {gamma}")


def value_iteration(transitions, rewards, gamma, tol: float = 1e-5, max_iters: int = 10_000):
    """Optimal `Q[s, a]` of the MDP `(transitions, R[s, a])` (see `expected_next` for the two
    forms of `transitions`) by `Q <- R + gamma * E[max_a' Q(s', a')]`, to within `tol`
    (float32 rounding aside)."""
    _check_gamma(gamma)
    return _value_iteration(transitions, jnp.asarray(rewards, jnp.float32), gamma, tol, max_iters)


@functools.partial(jax.jit, static_argnames=("tol", "max_iters"))
def _value_iteration(transitions, rewards, gamma, tol, max_iters):
    return _fixed_point(lambda q: rewards + gamma * expected_next(transitions, q.max(-1)),
                        rewards, gamma, tol, max_iters)


def policy_value(transitions, rewards, gamma, policy, tol: float = 1e-5, max_iters: int = 10_000):
    """`V[s]` of the deterministic policy `policy[s]` (int actions), to within `tol`."""
    _check_gamma(gamma)
    return _policy_value(transitions, jnp.asarray(rewards, jnp.float32), gamma,
                         jnp.asarray(policy, jnp.int32), tol, max_iters)


@functools.partial(jax.jit, static_argnames=("tol", "max_iters"))
def _policy_value(transitions, rewards, gamma, policy, tol, max_iters):
    r_pi = rewards[jnp.arange(policy.shape[0]), policy]
    p_pi = _policy_transitions(transitions, policy)
    return _fixed_point(lambda v: r_pi + gamma * expected_next(p_pi, v)[:, 0], r_pi, gamma, tol,
                        max_iters)


@functools.partial(jax.jit, static_argnames=("horizon",))
def expected_visits(transitions, initial: jax.Array, policy_probs: jax.Array, horizon: int):
    """Expected number of visits to each (s, a) in the first `horizon` steps of an episode that
    starts from `initial[s]` and acts by `policy_probs[s, a]`. Absorbing terminal states keep
    collecting visits that a real (reset) episode would not make."""
    num_states = initial.shape[0]

    def step(d, _):
        flow = d[:, None] * policy_probs  # (S, A) probability of taking a in s now
        if isinstance(transitions, tuple):
            next_state, prob = transitions
            d_next = jnp.zeros(num_states, jnp.float32).at[next_state].add(flow[..., None] * prob)
        else:
            d_next = jnp.einsum("sa,sat->t", flow, transitions)
        return d_next, flow

    return jax.lax.scan(step, jnp.asarray(initial, jnp.float32), None, horizon)[1].sum(0)


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


def _metric_name(key: str) -> str:
    """EpisodeStatistics total -> metric name: `episode_return`, `episode_length`, `clicks`, ..."""
    return f"episode_{key}" if key in ("return", "length") else key


def make_learner(config: QLearningConfig, env, env_params) -> Learner:
    """Q-learning or SARSA (by the config's class) as a `Learner`."""
    config.validate()
    num_states, num_actions = table_shape(env, env_params)
    rule = config.update_rule
    env = EpisodeStatistics(env)
    num_envs, num_steps, num_updates = config.num_envs, config.num_steps, config.num_updates
    run_steps = num_updates * num_steps  # actions each env takes over the run
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def draws(key):
        return exploration_draws(key, (num_envs,), num_actions)

    def init(key):
        key, k_env, k_act = jax.random.split(key, 3)
        obs, env_state = reset(jax.random.split(k_env, num_envs), env_params)
        q_table = jnp.zeros((num_states, num_actions), jnp.float32)
        action = epsilon_greedy(q_table[obs], epsilon_at(config, 0.0), *draws(k_act))
        episode_metrics = {_metric_name(k): jnp.zeros((), jnp.float32) for k in env_state.last}
        return RunnerState(q_table, env_state, obs, action, key, jnp.int32(0), episode_metrics)

    def env_step(carry, t):
        q_table, env_state, obs, action, key = carry
        keys = jax.random.split(key, num_envs + 2)  # next carry key, exploration, one per env
        key, k_act = keys[0], keys[1]
        next_obs, env_state, reward, terminated, _, info = step(
            keys[2:], env_state, action, env_params)
        final_obs = info["final_observation"]
        epsilon = epsilon_at(config, (t + 1) / run_steps)
        uniform, gumbel = draws(k_act)
        # SARSA: a' from the pre-update table; it is the bootstrap action, and the next action
        # too unless the episode ended (same draws, so they agree when final_obs == next_obs).
        boot_action = (epsilon_greedy(q_table[final_obs], epsilon, uniform, gumbel)
                       if rule == "sarsa" else None)
        new_table, td = td_update(q_table, obs, action, reward, terminated, final_obs,
                                  boot_action, config.alpha, config.gamma, rule)
        policy_table = q_table if rule == "sarsa" else new_table
        next_action = epsilon_greedy(policy_table[next_obs], epsilon, uniform, gumbel)
        outputs = (jnp.mean(jnp.abs(td)), info["episode"], info["episode_done"], epsilon)
        return (new_table, env_state, next_obs, next_action, key), outputs

    def update(runner: RunnerState):
        steps = runner.update_step * num_steps + jnp.arange(num_steps)
        carry = (runner.q_table, runner.env_state, runner.obs, runner.action, runner.key)
        (q_table, env_state, obs, action, key), (td, episode, episode_done, epsilon) = (
            jax.lax.scan(env_step, carry, steps))
        finished = jnp.sum(episode_done)
        episode_metrics = {
            _metric_name(k): jnp.where(
                finished > 0, jnp.sum(jnp.where(episode_done, v, 0.0)) / jnp.maximum(finished, 1),
                runner.episode_metrics[_metric_name(k)])
            for k, v in episode.items()}
        update_step = runner.update_step + 1
        metrics = {**episode_metrics, "td_error": jnp.mean(td), "epsilon": epsilon[-1],
                   "episodes_finished": finished.astype(jnp.int32),
                   "env_steps": update_step * config.batch_size}
        runner = RunnerState(q_table, env_state, obs, action, key, update_step, episode_metrics)
        return runner, metrics

    return Learner(init=init, update=update, num_updates=num_updates,
                   steps_per_update=config.batch_size)


def make_train(config: QLearningConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
