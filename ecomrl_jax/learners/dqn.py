"""Deep Q-learning (DQN) with Double-DQN targets, a dueling head and n-step returns, for
Discrete and Slate action spaces.

The whole run is `lax.scan`s: vectorised env steps with epsilon-greedy actions go into a
replay buffer held in device memory, then gradient steps on uniformly sampled n-step windows;
`make_train(config, env, env_params)(key)` runs it in one jit. Float hyperparameters are
pytree fields of `DQNConfig` (a grid vmaps, as for `ppo.PPOConfig`); sizes and switches are static.

Replay (`replay`): a time-major circular buffer in device memory; each row holds one step of
every env (observation, action, reward, `terminated`, `done` and the step's final observation),
so an n-step window is n consecutive rows of one env. Storing the final (pre-reset)
observation beside the observation doubles the buffer's observation memory, as in a replay
that stores `next_obs`, and lets a window truncated by a time limit bootstrap from it.

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

Time limits are not terminations: a window is cut at its first episode end, and bootstraps
from max_a Q(final observation of that step) unless the episode terminated (`targets`).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from gymnax.environments import spaces

from ecomrl_jax.learners.config import (REPLAY_RULES, ReplayConfig, check_bools, check_choice,
                                        check_min_lr, epsilon_schedule, make_optimizer)
from ecomrl_jax.learners.loop import Learner, LoopState, make_env_loop, train_fn
from ecomrl_jax.learners.networks import check_params, make_q_network
from ecomrl_jax.learners.replay import ReplayBuffer, buffer_add, buffer_init, sample_windows
from ecomrl_jax.learners.targets import (action_value, double_dqn_target, first_done, greedy_action,
                                         n_step_return, td_target)
from ecomrl_jax.rules import NON_NEGATIVE, POSITIVE, POSITIVE_INT
from ecomrl_jax.spaces import Slate

LOSSES = ("huber", "mse")


@struct.dataclass
class DQNConfig(ReplayConfig):
    """DQN hyperparameters: the shared replay fields (`config.ReplayConfig`: epsilon schedule,
    target network, replay ratio) with their defaults, tuned for ShopperRec-v0 on a 2-core CPU,
    and DQN's own below.

    Replay ratio: 2 sampled windows per env step by default; at 4 (train_frequency 1) the
    gradient steps took ~80% of a run on ShopperRec-v0 and the greedy return after 200k steps
    was the same. Loss "mse" by default: with "huber" Q diverged on CartPole (returns ~100), as
    it caps the pull of the few terminal transitions that anchor the scale of Q.
    """

    min_lr: float = 0.0  # the floor `anneal_lr` decays lr to
    huber_delta: float = 1.0
    n_step: int = struct.field(pytree_node=False, default=3)
    double_dqn: bool = struct.field(pytree_node=False, default=True)
    dueling: bool = struct.field(pytree_node=False, default=True)
    loss: str = struct.field(pytree_node=False, default="mse")
    network: str = struct.field(pytree_node=False, default="default")  # or "transformer-<preset>"

    @property
    def window(self) -> int:
        """Consecutive steps one replay sample reads: the n-step return's."""
        return self.n_step

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        check_choice(self, "loss", LOSSES)
        check_bools(self, "double_dqn", "dueling")
        self.check_replay(DQN_RULES)
        check_min_lr(self)


DQN_RULES = {**REPLAY_RULES, "n_step": POSITIVE_INT, "min_lr": NON_NEGATIVE,
             "huber_delta": POSITIVE}


def validate_config(config: DQNConfig) -> None:
    """Function form of `DQNConfig.validate`."""
    config.validate()


def epsilon(config: DQNConfig, env_steps) -> jax.Array:
    """Exploration rate after `env_steps` env steps (all envs), by `config.epsilon_schedule`."""
    progress = env_steps / (config.epsilon_decay_fraction * config.total_timesteps)
    return epsilon_schedule(config.epsilon_schedule, jnp.asarray(config.epsilon_start, jnp.float32),
                            jnp.asarray(config.epsilon_end, jnp.float32), progress)


class Transition(NamedTuple):
    obs: Any  # observation the action was taken in
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array  # the MDP ended: no bootstrap
    done: jax.Array  # terminated or truncated: the window is cut here
    final_obs: Any  # the step's true next observation (pre-reset where the episode ended)


class Windows(NamedTuple):
    """A batch of n-step windows (B of them) with only the observations the loss reads."""

    obs: Any  # (B, ...) observation of the window's first step
    action: jax.Array  # (B, n, ...)
    reward: jax.Array  # (B, n)
    terminated: jax.Array  # (B, n)
    done: jax.Array  # (B, n)
    final_obs: Any  # (B, ...) final observation of the window's first done step (else its last)


class TrainState(NamedTuple):
    params: Any  # online network parameters
    target_params: Any
    opt_state: Any
    grad_steps: jax.Array  # gradient steps done so far (int32)


class RunnerState(NamedTuple):
    train_state: TrainState
    buffer: ReplayBuffer
    loop: LoopState  # envs, last observation, key, update count, episode metrics


def _action_spec(env, env_params) -> tuple[int, int]:
    """`(num_actions, slate_size)`: slate_size 0 for a Discrete action, k for a Slate of k;
    any other action space is a ValueError."""
    space = env.action_space(env_params)
    if isinstance(space, Slate):
        return space.n, space.slate_size
    if isinstance(space, spaces.Discrete):
        return space.n, 0
    raise ValueError(f"DQN here needs a Discrete or Slate action space; {env.name} has {space!r}")


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


def make_replay_update(config, tx, env_loop, act, observe, loss_fn, sample, min_rows: int):
    """A replay learner's `update(runner) -> (runner, metrics)`, shared by DQN and SlateQ:
    `train_frequency` epsilon-greedy steps of every env into the buffer (`act`/`observe` on the
    env loop), then, once `learning_starts` env steps are done and the buffer holds `min_rows`
    rows, `gradient_steps` optax steps on `loss_fn(params, target_params, sample(buffer, key))`,
    the target network moved towards the online one (Polyak `tau`) every
    `target_update_interval` of them. `config` carries those fields and the epsilon schedule's."""

    def gradient_step(carry, key):
        train_state, buffer = carry
        grads, losses = jax.grad(loss_fn, has_aux=True)(train_state.params,
                                                        train_state.target_params, sample(buffer, key))
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

    def skip(train_state, buffer, key):  # zeros shaped like `learn`'s losses
        losses = jax.eval_shape(learn, train_state, buffer, key)[1]
        return train_state, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), losses)

    def update(runner: RunnerState):
        eps = epsilon(config, runner.loop.update_step * config.steps_per_update)
        (_, _, buffer), loop, _, episodes = env_loop.collect(
            act, observe, (runner.train_state.params, eps, runner.buffer), runner.loop,
            config.train_frequency)
        key, k_learn = jax.random.split(loop.key)
        loop, metrics = env_loop.finish(loop._replace(key=key), episodes)
        ready = (metrics["env_steps"] >= config.learning_starts) & (buffer.size >= min_rows)
        train_state, losses = jax.lax.cond(ready, learn, skip, runner.train_state, buffer, k_learn)
        return RunnerState(train_state, buffer, loop), {**metrics, **losses, "epsilon": eps}

    return update


def make_learner(config: DQNConfig, env, env_params, init_network_params=None) -> Learner:
    """DQN as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics).

    One update: `train_frequency` epsilon-greedy steps of all `num_envs` envs into the
    buffer, then (once `learning_starts` env steps are done) `gradient_steps` gradient steps.
    `init_network_params` (e.g. a trained policy to deploy) replace the fresh network params,
    online and target.
    """
    config.validate()
    num_actions, slate_size = _action_spec(env, env_params)
    network = make_q_network(env.observation_space(env_params), num_actions, config.hidden_size,
                             config.dueling, config.network)
    env_loop = make_env_loop(env, env_params, config.num_envs)
    n = config.n_step
    tx = make_optimizer(config.lr, config.max_grad_norm, config.anneal_lr,
                        max(1, config.num_gradient_steps), min_lr=config.min_lr)

    def init(key):
        k_net, k_loop = jax.random.split(key)
        loop = env_loop.init(k_loop)
        params = network.init(k_net, jax.tree.map(lambda x: x[0], loop.obs))
        if init_network_params is not None:
            check_params(init_network_params, params, "DQN")
            params = init_network_params
        train_state = TrainState(params, params, tx.init(params), jnp.int32(0))
        num_envs = config.num_envs
        action = jnp.zeros((num_envs, slate_size) if slate_size else (num_envs,), jnp.int32)
        false = jnp.zeros(num_envs, bool)
        row = Transition(loop.obs, action, jnp.zeros(num_envs, jnp.float32), false, false, loop.obs)
        return RunnerState(train_state, buffer_init(row, config.buffer_rows), loop)

    def act(carry, key, obs, _):
        params, eps, buffer = carry
        action = explore(key, network.apply(params, obs), eps, slate_size)
        return action, carry, action

    def observe(carry, action, step, _):
        params, eps, buffer = carry
        row = Transition(step.obs, action, step.reward, step.terminated, step.done, step.final_obs)
        return (params, eps, buffer_add(buffer, row)), None

    def sample(buffer: ReplayBuffer, key) -> Windows:
        """Uniform n-step windows, gathering the observation of each window's first step and
        the final observation of its first done step only (not all n of each)."""
        rows, env = sample_windows(buffer, key, config.batch_size, n)
        data = buffer.data
        at = lambda tree, r: jax.tree.map(lambda d: d[r, env], tree)  # noqa: E731
        window = lambda d: d[rows, env[:, None]]  # noqa: E731  (B, n, ...)
        done = window(data.done)
        last = jnp.take_along_axis(rows, jax.vmap(first_done)(done)[:, None], axis=1)[:, 0]
        return Windows(at(data.obs, rows[:, 0]), window(data.action), window(data.reward),
                       window(data.terminated), done, at(data.final_obs, last))

    def window_target(params, target_params, reward, terminated, done, final_obs):
        """The n-step target of one window ((n,) rewards and flags, its final observation)."""
        reward, discount = n_step_return(reward, terminated, done, config.gamma)
        next_q_target = network.apply(target_params, final_obs)
        if config.double_dqn:
            return double_dqn_target(reward, discount, network.apply(params, final_obs),
                                     next_q_target, slate_size)
        return td_target(reward, discount, next_q_target, slate_size)

    def loss_fn(params, target_params, window: Windows):
        q = network.apply(params, window.obs)
        q_taken = jax.vmap(action_value)(q, window.action[:, 0])
        target = jax.vmap(window_target, in_axes=(None, None, 0, 0, 0, 0))(
            params, target_params, window.reward, window.terminated, window.done, window.final_obs)
        target = jax.lax.stop_gradient(target)
        if config.loss == "huber":
            loss = jnp.mean(optax.huber_loss(q_taken, target, delta=config.huber_delta))
        else:
            loss = 0.5 * jnp.mean(jnp.square(q_taken - target))
        return loss, {"loss": loss, "q_mean": jnp.mean(q_taken), "target_mean": jnp.mean(target)}

    update = make_replay_update(config, tx, env_loop, act, observe, loss_fn, sample, min_rows=n)

    return Learner(init=init, update=update, num_updates=config.num_updates,
                   steps_per_update=config.steps_per_update)


def make_train(config: DQNConfig, env, env_params, init_network_params=None):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates; the run
    starts from `init_network_params` where given."""
    return train_fn(make_learner(config, env, env_params, init_network_params))
