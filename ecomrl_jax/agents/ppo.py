"""Proximal policy optimisation (PPO, clipped objective) for Discrete and Slate action spaces.

The whole run is `lax.scan`s: env steps, GAE, epochs and minibatches; `make_train(config,
env, env_params)(key)` runs it in one jit. Traceable hyperparameters are pytree fields of
`PPOConfig`, so a grid vmaps:

    configs = jax.tree.map(lambda *x: jnp.stack(x), *[PPOConfig(lr=lr) for lr in (1e-4, 3e-4)])
    jax.vmap(lambda c, k: make_train(c, env, params)(k))(configs, keys)

Slates (`ecomrl_jax.spaces.Slate`) use a Plackett-Luce policy over candidate logits: an ordered
slate is sampled by Gumbel top-k, and its log-probability is the sum over positions of the
log-softmax of the chosen candidate among those not yet placed. Truncated episodes are treated
as terminal: the observation carries the time, so the episode end is part of the state.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from gymnax.environments import spaces

from ecomrl_jax.agents.learner import Learner, train_fn
from ecomrl_jax.networks import make_actor_critic
from ecomrl_jax.spaces import Slate
from ecomrl_jax.wrappers import EpisodeStatistics


@struct.dataclass
class PPOConfig:
    """PPO hyperparameters; defaults are tuned for ShopperRec-v0 on a 2-core CPU."""

    lr: float = 3e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    num_envs: int = struct.field(pytree_node=False, default=128)
    num_steps: int = struct.field(pytree_node=False, default=32)
    total_timesteps: int = struct.field(pytree_node=False, default=4_000_000)
    update_epochs: int = struct.field(pytree_node=False, default=2)
    num_minibatches: int = struct.field(pytree_node=False, default=4)
    hidden_size: int = struct.field(pytree_node=False, default=32)
    anneal_lr: bool = struct.field(pytree_node=False, default=True)

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
        for name in ("num_envs", "num_steps", "total_timesteps", "update_epochs",
                     "num_minibatches", "hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive int, got {value!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_envs * num_steps ({self.batch_size}) must be divisible by "
                             f"num_minibatches ({self.num_minibatches})")
        if self.total_timesteps < self.batch_size:
            raise ValueError(f"total_timesteps ({self.total_timesteps}) is less than one update "
                             f"(num_envs * num_steps = {self.batch_size})")
        checks = {
            "lr": (lambda x: x > 0, "> 0"),
            "gamma": (lambda x: (x > 0) & (x <= 1), "in (0, 1]"),
            "gae_lambda": (lambda x: (x >= 0) & (x <= 1), "in [0, 1]"),
            "clip_eps": (lambda x: x > 0, "> 0"),
            "ent_coef": (lambda x: x >= 0, ">= 0"),
            "vf_coef": (lambda x: x >= 0, ">= 0"),
            "max_grad_norm": (lambda x: x > 0, "> 0"),
        }
        for name, (ok, rule) in checks.items():
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            if not np.all(ok(np.asarray(value, np.float64))):
                raise ValueError(f"PPOConfig.{name} must be {rule}, got {value!r}")


def validate_config(config: PPOConfig) -> None:
    """Function form of `PPOConfig.validate`."""
    config.validate()


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
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


def _action_spec(env, env_params) -> tuple[int, int]:
    """`(num_actions, slate_size)`: slate_size 0 for a Discrete action (a scalar index), k for
    a Slate of k; any other action space is a ValueError."""
    space = env.action_space(env_params)
    if isinstance(space, Slate):
        return space.n, space.slate_size
    if isinstance(space, spaces.Discrete):
        return space.n, 0
    raise ValueError(f"PPO here needs a Discrete or Slate action space; {env.name} has {space!r}")


def _metric_name(key: str) -> str:
    """EpisodeStatistics total -> metric name: `episode_return`, `episode_length`, `clicks`, ..."""
    return f"episode_{key}" if key in ("return", "length") else key


def sample_action(key, logits, slate_size: int, deterministic: bool = False):
    """Categorical (slate_size 0) or Plackett-Luce (Gumbel top-k) action from `logits` (..., C)."""
    scores = logits if deterministic else logits + jax.random.gumbel(key, logits.shape)
    if slate_size == 0:
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return jax.lax.top_k(scores, slate_size)[1].astype(jnp.int32)


def log_prob_entropy(logits, action):
    """Plackett-Luce log-probability of an ordered slate `action` (..., k), or categorical for
    a scalar index (...), and an entropy: the sum over positions of the entropy of the
    choice among candidates not yet placed (by the chain rule its expectation over slates is
    the slate entropy; for one position it is the categorical entropy)."""
    slate = action[..., None] if action.ndim == logits.ndim - 1 else action
    chosen = slate[..., None] == jnp.arange(logits.shape[-1])  # (..., k, C)
    placed = (jnp.cumsum(chosen, axis=-2) - chosen) > 0
    log_p = jax.nn.log_softmax(jnp.where(placed, -jnp.inf, logits[..., None, :]), axis=-1)
    log_p = jnp.where(placed, 0.0, log_p)  # no -inf left, so gradients stay finite
    log_prob = jnp.sum(jnp.where(chosen, log_p, 0.0), axis=(-2, -1))
    entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=(-2, -1))
    return log_prob, entropy


def network_params(runner_state: RunnerState):
    """The network parameters of a runner state (batched if the state is)."""
    return runner_state.train_state.params


def make_policy(config: PPOConfig, env, network_params, deterministic: bool = False):
    """`policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env;
    deterministic picks the argmax (or top-k slate) of the logits.

    The result is a `jax.tree_util.Partial` whose only leaves are `network_params`, so a jit
    keyed on the policy (e.g. `evaluation.evaluate`) compiles once for many weight sets.
    """
    num_actions, slate_size = _action_spec(env, env.default_params)
    network = make_actor_critic(env.observation_space(env.default_params), num_actions,
                                config.hidden_size)
    return jax.tree_util.Partial(_policy_fn(network, slate_size, deterministic), network_params)


@functools.cache
def _policy_fn(network, slate_size: int, deterministic: bool):
    """One function object per network and mode (see `make_policy`)."""

    def policy_fn(network_params, key, obs, env_state, env_params):
        logits, _ = network.apply(network_params, obs)
        return sample_action(key, logits, slate_size, deterministic)

    return policy_fn


def make_learner(config: PPOConfig, env, env_params) -> Learner:
    """PPO as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics)."""
    config.validate()
    num_actions, slate_size = _action_spec(env, env_params)
    network = make_actor_critic(env.observation_space(env_params), num_actions, config.hidden_size)
    env = EpisodeStatistics(env)
    num_envs, num_steps = config.num_envs, config.num_steps
    minibatch_size = config.batch_size // config.num_minibatches
    num_updates = config.num_updates
    steps_per_opt = config.num_minibatches * config.update_epochs

    def annealed_lr(count):
        """Linear decay to 0 over `num_updates` (and 0 past them)."""
        return config.lr * jnp.maximum(0.0, 1.0 - (count // steps_per_opt) / num_updates)

    lr = annealed_lr if config.anneal_lr else config.lr
    # flatten: one vector for clipping and adam instead of one op per parameter leaf
    # (same arithmetic, noticeably faster to compile)
    tx = optax.flatten(optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                                   optax.adam(lr, eps=1e-5)))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key):
        key, k_net, k_env = jax.random.split(key, 3)
        obs, env_state = reset(jax.random.split(k_env, num_envs), env_params)
        params = network.init(k_net, jax.tree.map(lambda x: x[0], obs))
        train_state = TrainState(params, tx.init(params))
        episode_metrics = {_metric_name(k): jnp.zeros((), jnp.float32) for k in env_state.last}
        return RunnerState(train_state, env_state, obs, key, jnp.int32(0), episode_metrics)

    def env_step(carry, _):
        params, env_state, obs, key = carry
        key, k_act, k_env = jax.random.split(key, 3)
        logits, value = network.apply(params, obs)
        action = sample_action(k_act, logits, slate_size)
        log_prob, _ = log_prob_entropy(logits, action)
        next_obs, env_state, reward, terminated, truncated, info = step(
            jax.random.split(k_env, num_envs), env_state, action, env_params)
        done = terminated | truncated
        transition = Transition(obs, action, log_prob, value, reward, done)
        return (params, env_state, next_obs, key), (transition, info["episode"], info["episode_done"])

    def gae(transitions, last_value):
        def body(carry, t):
            advantage, next_value = carry
            not_done = 1.0 - t.done
            delta = t.reward + config.gamma * next_value * not_done - t.value
            advantage = delta + config.gamma * config.gae_lambda * not_done * advantage
            return (advantage, t.value), advantage

        _, advantages = jax.lax.scan(body, (jnp.zeros_like(last_value), last_value),
                                     transitions, reverse=True)
        return advantages, advantages + transitions.value

    def loss_fn(params, batch, advantages, targets):
        logits, value = network.apply(params, batch.obs)
        log_prob, entropy = log_prob_entropy(logits, batch.action)
        log_ratio = log_prob - batch.log_prob
        ratio = jnp.exp(log_ratio)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        loss_actor = -jnp.mean(jnp.minimum(
            ratio * adv, jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * adv))
        loss_value = 0.5 * jnp.mean(jnp.square(value - targets))
        entropy = jnp.mean(entropy)
        total = loss_actor + config.vf_coef * loss_value - config.ent_coef * entropy
        approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
        return total, {"loss_total": total, "loss_actor": loss_actor, "loss_value": loss_value,
                       "entropy": entropy, "approx_kl": approx_kl}

    def minibatch_step(train_state, minibatch):
        params, opt_state = train_state
        grads, losses = jax.grad(loss_fn, has_aux=True)(params, *minibatch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return TrainState(optax.apply_updates(params, updates), opt_state), losses

    def epoch(carry, _):
        train_state, key, data = carry
        key, k_perm = jax.random.split(key)
        perm = jax.random.permutation(k_perm, config.batch_size)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), data)
        train_state, losses = jax.lax.scan(minibatch_step, train_state, minibatches)
        return (train_state, key, data), losses

    def update(runner: RunnerState):
        params = runner.train_state.params
        (_, env_state, obs, key), (transitions, episode, episode_done) = jax.lax.scan(
            env_step, (params, runner.env_state, runner.obs, runner.key), None, num_steps)
        _, last_value = network.apply(params, obs)
        advantages, targets = gae(transitions, last_value)
        data = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]),
                            (transitions, advantages, targets))
        (train_state, key, _), losses = jax.lax.scan(
            epoch, (runner.train_state, key, data), None, config.update_epochs)

        finished = jnp.sum(episode_done)
        episode_metrics = {
            _metric_name(k): jnp.where(
                finished > 0, jnp.sum(jnp.where(episode_done, v, 0.0)) / jnp.maximum(finished, 1),
                runner.episode_metrics[_metric_name(k)])
            for k, v in episode.items()}
        update_step = runner.update_step + 1
        metrics = {**episode_metrics, **jax.tree.map(jnp.mean, losses),
                   "episodes_finished": finished.astype(jnp.int32),
                   "env_steps": update_step * config.batch_size}
        return RunnerState(train_state, env_state, obs, key, update_step, episode_metrics), metrics

    return Learner(init=init, update=update, num_updates=num_updates,
                   steps_per_update=config.batch_size)


def make_train(config: PPOConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
