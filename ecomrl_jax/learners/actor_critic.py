"""Parts shared by the on-policy actor-critic learners (PPO, A2C, REINFORCE).

`make_rollout` builds an env's actor-critic and the env loop every one of them runs: `init` a
runner state, `collect` `num_steps` steps of `num_envs` auto-resetting envs, and `finish` an
update with its metrics (mean totals of the episodes that finished during it, carried over
when none did). Also here: GAE, the optimiser, config checks and the learned policy.

The network is the env's default actor-critic (`networks.make_actor_critic`) or, with a
config's `network` field set to "transformer-<preset>", a `networks.TransformerActorCritic`.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ecomrl_jax.learners.distributions import action_spec, log_prob_entropy, sample_action, to_env_action
from ecomrl_jax.learners.networks import NETWORKS, make_actor_critic, make_transformer_actor_critic
from ecomrl_jax.wrappers import EpisodeStatistics


class TrainState(NamedTuple):
    params: Any  # network parameters
    opt_state: Any  # optax state (holds the step count that anneals the learning rate)


class RunnerState(NamedTuple):
    train_state: TrainState  # network params and optimiser state
    env_state: Any  # batched EpisodeStatistics state
    obs: Any  # batched last observation
    key: jax.Array
    update_step: jax.Array  # updates done so far (int32)
    episode_metrics: dict  # last reported episode means, carried when no episode finishes


class Transition(NamedTuple):
    obs: Any
    action: jax.Array  # as sampled: a Gaussian sample before `to_env_action` clips it
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array  # terminated or truncated; truncation counts as terminal


class Episodes(NamedTuple):
    totals: dict  # EpisodeStatistics totals per step and env, valid where `done`
    done: jax.Array  # (num_steps, num_envs) an episode finished at this step


class Rollout(NamedTuple):
    network: nn.Module
    init: Callable  # (key, tx) -> RunnerState
    collect: Callable  # RunnerState -> (RunnerState, Transition, last_value, Episodes)
    finish: Callable  # (RunnerState, Episodes, losses) -> (RunnerState, metrics)


class RolloutSizes:
    """`batch_size` and `num_updates` of a config with `num_envs`, `num_steps`, `total_timesteps`."""

    @property
    def batch_size(self) -> int:
        """Env steps per update (all envs together)."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Updates in a full run (total_timesteps rounded down to whole updates)."""
        return self.total_timesteps // self.batch_size


# Rules for `check_config`: (predicate on a float64 array, what it demands).
POSITIVE = (lambda x: x > 0, "> 0")
NON_NEGATIVE = (lambda x: x >= 0, ">= 0")
DISCOUNT = (lambda x: (x > 0) & (x <= 1), "in (0, 1]")
UNIT_INTERVAL = (lambda x: (x >= 0) & (x <= 1), "in [0, 1]")

def check_config(config, positive_ints: tuple[str, ...], rules: dict) -> None:
    """Raise ValueError naming the first invalid field: `positive_ints` must be positive ints,
    `total_timesteps` at least one update, `network` (where the config has one) in `NETWORKS`,
    and `rules[name]` must hold (traced values skipped)."""
    name_of = type(config).__name__
    if getattr(config, "network", "default") not in NETWORKS:
        raise ValueError(f"{name_of}.network must be one of {list(NETWORKS)}, got {config.network!r}")
    for name in positive_ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name_of}.{name} must be a positive int, got {value!r}")
    if config.total_timesteps < config.batch_size:
        raise ValueError(f"total_timesteps ({config.total_timesteps}) is less than one update "
                         f"(num_envs * num_steps = {config.batch_size})")
    for name, (ok, rule) in rules.items():
        value = getattr(config, name)
        if isinstance(value, jax.core.Tracer):
            continue
        if not np.all(ok(np.asarray(value, np.float64))):
            raise ValueError(f"{name_of}.{name} must be {rule}, got {value!r}")


def make_optimizer(config, num_updates: int, steps_per_update: int = 1):
    """Adam after global-norm clipping; with `config.anneal_lr` the learning rate decays
    linearly to 0 over `num_updates` updates of `steps_per_update` gradient steps each.
    Flattened: one vector for clipping and Adam instead of one op per parameter leaf (same
    arithmetic, noticeably faster to compile)."""

    def annealed_lr(count):
        return config.lr * jnp.maximum(0.0, 1.0 - (count // steps_per_update) / num_updates)

    lr = annealed_lr if config.anneal_lr else config.lr
    return optax.flatten(optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                                     optax.adam(lr, eps=1e-5)))


def make_network(env, env_params, hidden_size: int, learner: str, network: str = "default"):
    """`(actor-critic, slate_size)` for the env's observation and action spaces; `network`
    is one of `NETWORKS` (`hidden_size` sizes only the default one)."""
    num_actions, slate_size = action_spec(env, env_params, learner)
    observation_space = env.observation_space(env_params)
    if network != "default":
        preset = network.removeprefix("transformer-")
        return make_transformer_actor_critic(observation_space, preset), slate_size
    return make_actor_critic(observation_space, num_actions, hidden_size,
                             action_space=env.action_space(env_params)), slate_size


def _metric_name(key: str) -> str:
    """EpisodeStatistics total -> metric name: `episode_return`, `episode_length`, `clicks`, ..."""
    return f"episode_{key}" if key in ("return", "length") else key


def make_rollout(env, env_params, learner: str, hidden_size: int, num_envs: int,
                 num_steps: int, network: str = "default") -> Rollout:
    """The actor-critic (one of `NETWORKS`) and env loop for `env`; `learner` names the
    algorithm in errors. `init(key, tx, params)` starts from given network `params` (e.g.
    pre-trained, `learners.pretrain`) instead of fresh ones where `params` is not None."""
    network, slate_size = make_network(env, env_params, hidden_size, learner, network)
    action_space = env.action_space(env_params)
    env = EpisodeStatistics(env)
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key, tx, params=None) -> RunnerState:
        key, k_net, k_env = jax.random.split(key, 3)
        obs, env_state = reset(jax.random.split(k_env, num_envs), env_params)
        one_obs = jax.tree.map(lambda x: x[0], obs)
        if params is None:
            params = network.init(k_net, one_obs)
        else:
            _check_params(params, jax.eval_shape(network.init, k_net, one_obs), learner)
        episode_metrics = {_metric_name(k): jnp.zeros((), jnp.float32) for k in env_state.last}
        return RunnerState(TrainState(params, tx.init(params)), env_state, obs, key, jnp.int32(0),
                           episode_metrics)

    def env_step(carry, _):
        params, env_state, obs, key = carry
        key, k_act, k_env = jax.random.split(key, 3)
        dist, value = network.apply(params, obs)
        action = sample_action(k_act, dist, slate_size)
        log_prob, _ = log_prob_entropy(dist, action)
        next_obs, env_state, reward, terminated, truncated, info = step(
            jax.random.split(k_env, num_envs), env_state, to_env_action(action_space, action),
            env_params)
        transition = Transition(obs, action, log_prob, value, reward, terminated | truncated)
        return (params, env_state, next_obs, key), (transition, Episodes(info["episode"],
                                                                         info["episode_done"]))

    def collect(runner: RunnerState):
        params = runner.train_state.params
        (_, env_state, obs, key), (transitions, episodes) = jax.lax.scan(
            env_step, (params, runner.env_state, runner.obs, runner.key), None, num_steps)
        _, last_value = network.apply(params, obs)
        runner = runner._replace(env_state=env_state, obs=obs, key=key)
        return runner, transitions, last_value, episodes

    def finish(runner: RunnerState, episodes: Episodes, losses: dict):
        finished = jnp.sum(episodes.done)
        episode_metrics = {
            _metric_name(k): jnp.where(
                finished > 0, jnp.sum(jnp.where(episodes.done, v, 0.0)) / jnp.maximum(finished, 1),
                runner.episode_metrics[_metric_name(k)])
            for k, v in episodes.totals.items()}
        update_step = runner.update_step + 1
        metrics = {**episode_metrics, **jax.tree.map(jnp.mean, losses),
                   "episodes_finished": finished.astype(jnp.int32),
                   "env_steps": update_step * num_envs * num_steps}
        return runner._replace(update_step=update_step, episode_metrics=episode_metrics), metrics

    return Rollout(network, init, collect, finish)


def _check_params(params, expected, learner: str) -> None:
    """ValueError unless `params` has the structure, shapes and dtypes of `expected`."""
    def spec(tree):
        return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]

    if spec(params) != spec(expected):
        raise ValueError(f"{learner}: the initial network params do not fit the network of this "
                         "config and env (different structure, shapes or dtypes)")


def gae(transitions: Transition, last_value, gamma, gae_lambda):
    """`(advantages, value targets)` by generalised advantage estimation over a rollout
    (time-major); `last_value` bootstraps episodes that the rollout cuts off. With
    `gae_lambda` 1 the targets are Monte Carlo returns within the rollout."""

    def body(carry, t):
        advantage, next_value = carry
        not_done = 1.0 - t.done
        delta = t.reward + gamma * next_value * not_done - t.value
        advantage = delta + gamma * gae_lambda * not_done * advantage
        return (advantage, t.value), advantage

    _, advantages = jax.lax.scan(body, (jnp.zeros_like(last_value), last_value), transitions,
                                 reverse=True)
    return advantages, advantages + transitions.value


def network_params(runner_state: RunnerState):
    """The network parameters of a runner state (batched if the state is)."""
    return runner_state.train_state.params


def make_policy(config, env, network_params, deterministic: bool = False):
    """`policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env;
    deterministic takes the argmax (top-k slate, Gaussian mean) instead of sampling.

    The result is a `jax.tree_util.Partial` whose only leaves are `network_params`, so a jit
    keyed on the policy (e.g. `evaluation.evaluate`) compiles once for many weight sets.
    """
    network = getattr(config, "network", "default")
    return jax.tree_util.Partial(_policy_fn(env, config.hidden_size, network, deterministic),
                                 network_params)


@functools.cache
def _policy_fn(env, hidden_size: int, network: str, deterministic: bool):
    """One function object per env, network and mode (see `make_policy`)."""
    network, slate_size = make_network(env, env.default_params, hidden_size, "a policy", network)

    def policy_fn(network_params, key, obs, env_state, env_params):
        dist, _ = network.apply(network_params, obs)
        action = sample_action(key, dist, slate_size, deterministic)
        return to_env_action(env.action_space(env_params), action)

    return policy_fn
