"""Deep Q-learning (DQN) with Double-DQN targets, a dueling head and n-step returns, for
Discrete and Slate action spaces.

The whole run is `lax.scan`s: vectorised env steps with epsilon-greedy actions go into a
replay buffer held in device memory, then gradient steps on uniformly sampled n-step windows;
`make_train(config, env, env_params)(key)` runs it in one jit. Float hyperparameters are
pytree fields of `DQNConfig` (a grid vmaps, as for `ppo.PPOConfig`); sizes and switches are static.

Replay buffer: a small circular buffer written here (no extra dependency such as flashbax;
~30 lines, jittable and vmappable). It is time-major: each row holds one step of every env,
so an n-step window is n+1 consecutive rows of one env and each observation is stored once.

Slates (`ecomrl_jax.spaces.Slate`): the network scores every candidate, Qbar(s, i), and a
slate's value is the mean of its items' scores, Q(s, A) = mean_{i in A} Qbar(s, i). The TD
target of a sampled slate is r + gamma * max_A' Q(s', A'), and that max is exactly the mean
of the top-k scores at s' (the greedy slate, best item first). This is ordinary Q-learning
over slates with an additive value class, so it is sound without knowing the choice model.
SlateQ (Ie et al. 2019) decomposes Q(s, A) = sum_i P(click i | s, A) Qbar(s, i) instead,
but needs the click model and which item was clicked, which neither the observation nor
`info` gives a model-free agent; the price of the mean is that position and competition
effects between shown items are not modelled. With one item (a Discrete action) the mean is
the item's own score and the learner is plain (Double, dueling, n-step) DQN.

Network: the env's default Q-network (`networks.make_q_network`) or, with `network` set to
"transformer-<preset>", a `networks.TransformerQNetwork` over the shopper's history.

Truncated episodes are treated as terminal, as in `ppo`: ShopperRec's observation carries the
time, so the episode end is part of the state.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from gymnax.environments import spaces

from ecomrl_jax.learners.loop import EPSILON_SCHEDULES, Learner, epsilon_schedule, train_fn
from ecomrl_jax.learners.networks import NETWORKS, make_q_network
from ecomrl_jax.spaces import Slate
from ecomrl_jax.wrappers import EpisodeStatistics

LOSSES = ("huber", "mse")


@struct.dataclass
class DQNConfig:
    """DQN hyperparameters; defaults are tuned for ShopperRec-v0 on a 2-core CPU.

    Epsilon: "constant" keeps `epsilon_start`; "linear" and "exponential" go from
    `epsilon_start` to `epsilon_end` over the first `epsilon_decay_fraction` of
    `total_timesteps` (arithmetic or geometric interpolation), then stay at `epsilon_end`.
    Target network: every `target_update_interval` gradient steps it moves to
    `tau * online + (1 - tau) * target`; tau = 1 is a hard copy, tau < 1 Polyak averaging.
    Loss "mse" by default: with "huber" Q diverged on CartPole (returns ~100), as it caps
    the pull of the few terminal transitions that anchor the scale of Q.
    """

    lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 1.0
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float = 0.25
    max_grad_norm: float = 10.0
    huber_delta: float = 1.0
    num_envs: int = struct.field(pytree_node=False, default=32)
    total_timesteps: int = struct.field(pytree_node=False, default=200_000)
    buffer_size: int = struct.field(pytree_node=False, default=100_000)  # transitions, all envs
    batch_size: int = struct.field(pytree_node=False, default=128)
    learning_starts: int = struct.field(pytree_node=False, default=5_000)  # env steps, all envs
    train_frequency: int = struct.field(pytree_node=False, default=1)  # steps per env per update
    gradient_steps: int = struct.field(pytree_node=False, default=1)  # per update
    target_update_interval: int = struct.field(pytree_node=False, default=250)  # gradient steps
    n_step: int = struct.field(pytree_node=False, default=3)
    double_dqn: bool = struct.field(pytree_node=False, default=True)
    dueling: bool = struct.field(pytree_node=False, default=True)
    loss: str = struct.field(pytree_node=False, default="mse")
    epsilon_schedule: str = struct.field(pytree_node=False, default="linear")
    hidden_size: int = struct.field(pytree_node=False, default=32)
    network: str = struct.field(pytree_node=False, default="default")  # or "transformer-<preset>"
    anneal_lr: bool = struct.field(pytree_node=False, default=True)

    @property
    def steps_per_update(self) -> int:
        """Env steps per update (all envs together)."""
        return self.num_envs * self.train_frequency

    @property
    def num_updates(self) -> int:
        """Updates in a full run (total_timesteps rounded down to whole updates)."""
        return self.total_timesteps // self.steps_per_update

    @property
    def num_gradient_steps(self) -> int:
        """Gradient steps in a full run: `gradient_steps` per update from the first update after
        which `learning_starts` env steps are done and the buffer holds an n-step window."""
        first = max(-(-self.learning_starts // self.steps_per_update),
                    self.n_step // self.train_frequency + 1)
        return self.gradient_steps * max(0, self.num_updates - first + 1)

    @property
    def buffer_rows(self) -> int:
        """Buffer capacity in rows of `num_envs` transitions."""
        return self.buffer_size // self.num_envs

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        for name in ("num_envs", "total_timesteps", "buffer_size", "batch_size", "train_frequency",
                     "gradient_steps", "target_update_interval", "n_step", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"DQNConfig.{name} must be a positive int, got {value!r}")
        if isinstance(self.learning_starts, bool) or not isinstance(
                self.learning_starts, (int, np.integer)) or self.learning_starts < 0:
            raise ValueError(f"DQNConfig.learning_starts must be an int >= 0, got {self.learning_starts!r}")
        if self.total_timesteps < self.steps_per_update:
            raise ValueError(f"total_timesteps ({self.total_timesteps}) is less than one update "
                             f"(num_envs * train_frequency = {self.steps_per_update})")
        if self.buffer_rows <= self.n_step:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold at least n_step + 1 = "
                             f"{self.n_step + 1} steps of all num_envs ({self.num_envs}) envs")
        for name, value in (("double_dqn", self.double_dqn), ("dueling", self.dueling),
                            ("anneal_lr", self.anneal_lr)):
            if not isinstance(value, bool):
                raise ValueError(f"DQNConfig.{name} must be a bool, got {value!r}")
        if self.network not in NETWORKS:
            raise ValueError(f"DQNConfig.network must be one of {list(NETWORKS)}, got {self.network!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"DQNConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epsilon_schedule not in EPSILON_SCHEDULES:
            raise ValueError(f"DQNConfig.epsilon_schedule must be one of {EPSILON_SCHEDULES}, "
                             f"got {self.epsilon_schedule!r}")
        checks = {
            "lr": (lambda x: x > 0, "> 0"),
            "gamma": (lambda x: (x > 0) & (x <= 1), "in (0, 1]"),
            "tau": (lambda x: (x > 0) & (x <= 1), "in (0, 1]"),
            "epsilon_start": (lambda x: (x >= 0) & (x <= 1), "in [0, 1]"),
            "epsilon_end": (lambda x: (x >= 0) & (x <= 1), "in [0, 1]"),
            "epsilon_decay_fraction": (lambda x: (x > 0) & (x <= 1), "in (0, 1]"),
            "max_grad_norm": (lambda x: x > 0, "> 0"),
            "huber_delta": (lambda x: x > 0, "> 0"),
        }
        if self.epsilon_schedule == "exponential":
            checks["epsilon_start"] = (lambda x: (x > 0) & (x <= 1), "in (0, 1] for an exponential schedule")
            checks["epsilon_end"] = (lambda x: (x > 0) & (x <= 1), "in (0, 1] for an exponential schedule")
        for name, (ok, rule) in checks.items():
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            if not np.all(ok(np.asarray(value, np.float64))):
                raise ValueError(f"DQNConfig.{name} must be {rule}, got {value!r}")


def validate_config(config: DQNConfig) -> None:
    """Function form of `DQNConfig.validate`."""
    config.validate()


def epsilon(config: DQNConfig, env_steps) -> jax.Array:
    """Exploration rate after `env_steps` env steps (all envs), by `config.epsilon_schedule`."""
    progress = env_steps / (config.epsilon_decay_fraction * config.total_timesteps)
    return epsilon_schedule(config.epsilon_schedule, jnp.asarray(config.epsilon_start, jnp.float32),
                            jnp.asarray(config.epsilon_end, jnp.float32), progress)


# Pure target functions (rlax style): unbatched, jittable; vmap them over a batch.

def greedy_action(q: jax.Array, slate_size: int = 0) -> jax.Array:
    """argmax of `q` (..., C) for slate_size 0 (a Discrete action), else the top-k slate, best first."""
    if slate_size == 0:
        return jnp.argmax(q, axis=-1).astype(jnp.int32)
    return jax.lax.top_k(q, slate_size)[1].astype(jnp.int32)


def action_value(q: jax.Array, action: jax.Array) -> jax.Array:
    """Q(s, a) = q[a] for a scalar action; for a slate (k,) the mean of its items' q."""
    slate = jnp.atleast_1d(action)
    return jnp.mean(jnp.take_along_axis(q, slate, axis=-1), axis=-1)


def td_target(reward, discount, next_q, slate_size: int = 0):
    """Q-learning target r + discount * max_a' Q(s', a'); for slates the max is the mean of
    the top-k `next_q`. `discount` is gamma (times 1 - done)."""
    return reward + discount * action_value(next_q, greedy_action(next_q, slate_size))


def double_dqn_target(reward, discount, next_q_online, next_q_target, slate_size: int = 0):
    """Double DQN (van Hasselt et al. 2016): the online net picks the greedy action (slate)
    at s', the target net values it."""
    return reward + discount * action_value(next_q_target, greedy_action(next_q_online, slate_size))


def n_step_return(rewards, dones, bootstrap_value, gamma):
    """sum_j gamma^j r_j + gamma^n V, cut at the first done: rewards and dones are (n,), done_j
    meaning the episode ended with reward r_j; V is dropped if any step ended the episode."""
    n = rewards.shape[0]
    alive = jnp.cumprod(1.0 - jnp.asarray(dones, jnp.float32))  # alive after step j
    alive_before = jnp.concatenate([jnp.ones(1, jnp.float32), alive[:-1]])
    discounts = gamma ** jnp.arange(n, dtype=jnp.float32)
    return jnp.sum(discounts * alive_before * rewards) + gamma**n * alive[-1] * bootstrap_value


# Replay buffer: time-major circular buffer of per-step rows (one transition per env).

class ReplayBuffer(NamedTuple):
    data: Any  # pytree; each leaf (capacity, num_envs, ...)
    position: jax.Array  # next row to write (int32)
    size: jax.Array  # rows filled so far, at most capacity (int32)


def buffer_init(row, capacity: int) -> ReplayBuffer:
    """An empty buffer of `capacity` rows shaped like `row` (leaves (num_envs, ...))."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + x.shape, x.dtype), row)
    return ReplayBuffer(data, jnp.int32(0), jnp.int32(0))


def buffer_add(buffer: ReplayBuffer, row) -> ReplayBuffer:
    """Write `row` at `position`, overwriting the oldest row once full."""
    capacity = jax.tree.leaves(buffer.data)[0].shape[0]
    data = jax.tree.map(lambda d, x: d.at[buffer.position].set(x), buffer.data, row)
    return ReplayBuffer(data, (buffer.position + 1) % capacity, jnp.minimum(buffer.size + 1, capacity))


def buffer_sample(buffer: ReplayBuffer, key, batch_size: int, length: int):
    """`batch_size` windows of `length` consecutive rows of one env, uniform over the
    (start row, env) pairs whose window is stored; leaves (batch_size, length, ...).
    Needs `buffer.size >= length`."""
    capacity, num_envs = jax.tree.leaves(buffer.data)[0].shape[:2]
    k_start, k_env = jax.random.split(key)
    start = jax.random.randint(k_start, (batch_size,), 0, buffer.size - length + 1)
    env = jax.random.randint(k_env, (batch_size, 1), 0, num_envs)
    rows = (buffer.position - buffer.size + start[:, None] + jnp.arange(length)) % capacity
    return jax.tree.map(lambda d: d[rows, env], buffer.data)


class Transition(NamedTuple):
    obs: Any  # observation the action was taken in
    action: jax.Array
    reward: jax.Array
    done: jax.Array  # the step ended the episode (the next row's obs is a reset)


class TrainState(NamedTuple):
    params: Any  # online network parameters
    target_params: Any
    opt_state: Any
    grad_steps: jax.Array  # gradient steps done so far (int32)


class RunnerState(NamedTuple):
    train_state: TrainState
    buffer: ReplayBuffer
    env_state: Any  # batched EpisodeStatistics state
    obs: Any  # batched last observation
    key: jax.Array
    update_step: jax.Array  # updates done so far (int32)
    episode_metrics: dict  # last reported episode means, carried when no episode finishes


def _action_spec(env, env_params) -> tuple[int, int]:
    """`(num_actions, slate_size)`: slate_size 0 for a Discrete action, k for a Slate of k;
    any other action space is a ValueError."""
    space = env.action_space(env_params)
    if isinstance(space, Slate):
        return space.n, space.slate_size
    if isinstance(space, spaces.Discrete):
        return space.n, 0
    raise ValueError(f"DQN here needs a Discrete or Slate action space; {env.name} has {space!r}")


def _metric_name(key: str) -> str:
    """EpisodeStatistics total -> metric name: `episode_return`, `episode_length`, `clicks`, ..."""
    return f"episode_{key}" if key in ("return", "length") else key


def explore(key, q, eps, slate_size: int):
    """Epsilon-greedy over `q` (..., C): with probability `eps` a uniformly random action
    (a random slate of distinct candidates), else the greedy one."""
    k_coin, k_random = jax.random.split(key)
    random_action = greedy_action(jax.random.uniform(k_random, q.shape), slate_size)
    greedy = greedy_action(q, slate_size)
    coin = jax.random.uniform(k_coin, q.shape[:-1]) < eps
    return jnp.where(coin[..., None] if slate_size else coin, random_action, greedy)


def network_params(runner_state: RunnerState):
    """The online network parameters of a runner state (batched if the state is)."""
    return runner_state.train_state.params


def make_policy(config: DQNConfig, env, network_params, deterministic: bool = False):
    """`policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env:
    epsilon-greedy at the schedule's final epsilon, or greedy if `deterministic`.

    A `jax.tree_util.Partial` whose leaves are `network_params` and that epsilon, so a jit
    keyed on the policy (e.g. `evaluation.evaluate`) compiles once for many weight sets.
    """
    num_actions, slate_size = _action_spec(env, env.default_params)
    network = make_q_network(env.observation_space(env.default_params), num_actions,
                             config.hidden_size, config.dueling, config.network)
    eps = jnp.zeros((), jnp.float32) if deterministic else epsilon(config, config.total_timesteps)
    return jax.tree_util.Partial(_policy_fn(network, slate_size), network_params, eps)


@functools.cache
def _policy_fn(network, slate_size: int):
    """One function object per network and action kind (see `make_policy`)."""

    def policy_fn(network_params, eps, key, obs, env_state, env_params):
        return explore(key, network.apply(network_params, obs), eps, slate_size)

    return policy_fn


def make_learner(config: DQNConfig, env, env_params) -> Learner:
    """DQN as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics).

    One update: `train_frequency` epsilon-greedy steps of all `num_envs` envs into the
    buffer, then (once `learning_starts` env steps are done) `gradient_steps` gradient steps.
    """
    config.validate()
    num_actions, slate_size = _action_spec(env, env_params)
    network = make_q_network(env.observation_space(env_params), num_actions, config.hidden_size,
                             config.dueling, config.network)
    env = EpisodeStatistics(env)
    num_envs, n = config.num_envs, config.n_step
    # flatten: one vector for clipping and adam instead of one op per leaf (faster to compile)
    num_gradient_steps = max(1, config.num_gradient_steps)

    def annealed_lr(count):
        """Linear decay to 0 over the run's gradient steps."""
        return config.lr * jnp.maximum(0.0, 1.0 - count / num_gradient_steps)

    lr = annealed_lr if config.anneal_lr else config.lr
    tx = optax.flatten(optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                                   optax.adam(lr)))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key):
        key, k_net, k_env = jax.random.split(key, 3)
        obs, env_state = reset(jax.random.split(k_env, num_envs), env_params)
        params = network.init(k_net, jax.tree.map(lambda x: x[0], obs))
        train_state = TrainState(params, params, tx.init(params), jnp.int32(0))
        action = jnp.zeros((num_envs, slate_size) if slate_size else (num_envs,), jnp.int32)
        row = Transition(obs, action, jnp.zeros(num_envs, jnp.float32), jnp.zeros(num_envs, bool))
        buffer = buffer_init(row, config.buffer_rows)
        episode_metrics = {_metric_name(k): jnp.zeros((), jnp.float32) for k in env_state.last}
        return RunnerState(train_state, buffer, env_state, obs, key, jnp.int32(0), episode_metrics)

    def env_step(carry, _):
        params, eps, buffer, env_state, obs, key = carry
        key, k_act, k_env = jax.random.split(key, 3)
        action = explore(k_act, network.apply(params, obs), eps, slate_size)
        next_obs, env_state, reward, terminated, truncated, info = step(
            jax.random.split(k_env, num_envs), env_state, action, env_params)
        buffer = buffer_add(buffer, Transition(obs, action, reward, terminated | truncated))
        return (params, eps, buffer, env_state, next_obs, key), (info["episode"], info["episode_done"])

    def loss_fn(params, target_params, window: Transition):
        first = jax.tree.map(lambda x: x[:, 0], window.obs)
        last = jax.tree.map(lambda x: x[:, n], window.obs)
        q = network.apply(params, first)
        q_taken = jax.vmap(action_value)(q, window.action[:, 0])
        next_q_target = network.apply(target_params, last)
        # n-step: discounted reward sum cut at the first done, then gamma^n (or 0) bootstrap
        reward = jax.vmap(n_step_return, in_axes=(0, 0, None, None))(
            window.reward[:, :n], window.done[:, :n], 0.0, config.gamma)
        discount = config.gamma**n * jnp.prod(1.0 - window.done[:, :n], axis=-1)
        if config.double_dqn:
            next_q_online = network.apply(params, last)
            target = jax.vmap(double_dqn_target, in_axes=(0, 0, 0, 0, None))(
                reward, discount, next_q_online, next_q_target, slate_size)
        else:
            target = jax.vmap(td_target, in_axes=(0, 0, 0, None))(reward, discount, next_q_target,
                                                                  slate_size)
        target = jax.lax.stop_gradient(target)
        if config.loss == "huber":
            loss = jnp.mean(optax.huber_loss(q_taken, target, delta=config.huber_delta))
        else:
            loss = 0.5 * jnp.mean(jnp.square(q_taken - target))
        return loss, {"loss": loss, "q_mean": jnp.mean(q_taken), "target_mean": jnp.mean(target)}

    def gradient_step(carry, key):
        train_state, buffer = carry
        window = buffer_sample(buffer, key, config.batch_size, n + 1)
        grads, losses = jax.grad(loss_fn, has_aux=True)(train_state.params,
                                                        train_state.target_params, window)
        updates, opt_state = tx.update(grads, train_state.opt_state, train_state.params)
        params = optax.apply_updates(train_state.params, updates)
        grad_steps = train_state.grad_steps + 1
        target_params = jax.lax.cond(
            grad_steps % config.target_update_interval == 0,
            lambda: optax.incremental_update(params, train_state.target_params, config.tau),
            lambda: train_state.target_params)
        return (TrainState(params, target_params, opt_state, grad_steps), buffer), losses

    def learn(train_state, buffer, key):
        (train_state, _), losses = jax.lax.scan(
            gradient_step, (train_state, buffer), jax.random.split(key, config.gradient_steps))
        return train_state, jax.tree.map(jnp.mean, losses)

    def skip(train_state, buffer, key):
        zero = jnp.zeros((), jnp.float32)
        return train_state, {"loss": zero, "q_mean": zero, "target_mean": zero}

    def update(runner: RunnerState):
        env_steps = runner.update_step * config.steps_per_update
        eps = epsilon(config, env_steps)
        (_, _, buffer, env_state, obs, key), (episode, episode_done) = jax.lax.scan(
            env_step, (runner.train_state.params, eps, runner.buffer, runner.env_state,
                       runner.obs, runner.key), None, config.train_frequency)
        key, k_learn = jax.random.split(key)
        update_step = runner.update_step + 1
        env_steps = update_step * config.steps_per_update
        ready = (env_steps >= config.learning_starts) & (buffer.size > n)
        train_state, losses = jax.lax.cond(ready, learn, skip, runner.train_state, buffer, k_learn)

        finished = jnp.sum(episode_done)
        episode_metrics = {
            _metric_name(k): jnp.where(
                finished > 0, jnp.sum(jnp.where(episode_done, v, 0.0)) / jnp.maximum(finished, 1),
                runner.episode_metrics[_metric_name(k)])
            for k, v in episode.items()}
        metrics = {**episode_metrics, **losses, "epsilon": eps,
                   "episodes_finished": finished.astype(jnp.int32), "env_steps": env_steps}
        runner = RunnerState(train_state, buffer, env_state, obs, key, update_step, episode_metrics)
        return runner, metrics

    return Learner(init=init, update=update, num_updates=config.num_updates,
                   steps_per_update=config.steps_per_update)


def make_train(config: DQNConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
