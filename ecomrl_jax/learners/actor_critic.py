"""Parts shared by the on-policy actor-critic learners (PPO, A2C, REINFORCE).

`make_rollout` builds an env's actor-critic and runs it on the shared env loop
(`loop.make_env_loop`): `init` a runner state, `collect` `num_steps` steps of `num_envs`
auto-resetting envs, and `finish` an update with its metrics. Each `Transition` stores
`terminated`, `done` and the value of the step's final observation, so `targets.gae` cuts
traces at episode ends but bootstraps a truncated (time-limited) episode from V(final obs).
Also here: the rules, loss terms and one-gradient-step-per-rollout learner that A2C and
REINFORCE share (PPO shares the rules and loss terms), the learned policy and the CLI's
`network_params`.

The network is the env's default actor-critic (`networks.make_actor_critic`) or, with a
config's `network` field set to "transformer-<preset>", a `networks.TransformerActorCritic`.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ecomrl_jax.learners.config import check_bools, check_config, check_one_update, make_optimizer
from ecomrl_jax.learners.distributions import action_spec, log_prob_entropy, sample_action, to_env_action
from ecomrl_jax.learners.loop import Episodes, Learner, LoopState, make_env_loop
from ecomrl_jax.learners.networks import (check_params, make_actor_critic,
                                         make_transformer_actor_critic)
from ecomrl_jax.learners.targets import gae
from ecomrl_jax.rules import DISCOUNT, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Rule

# Rules of the fields every on-policy config has (PPO, A2C and REINFORCE add their own).
ACTOR_CRITIC_RULES: dict[str, Rule] = {
    **{name: POSITIVE_INT for name in ("num_envs", "num_steps", "total_timesteps", "hidden_size")},
    "lr": POSITIVE, "gamma": DISCOUNT, "ent_coef": NON_NEGATIVE, "vf_coef": NON_NEGATIVE,
    "max_grad_norm": POSITIVE}


class TrainState(NamedTuple):
    params: Any  # network parameters
    opt_state: Any  # optax state (holds the step count that anneals the learning rate)


class RunnerState(NamedTuple):
    train_state: TrainState  # network params and optimiser state
    loop: LoopState  # envs, last observation, key, update count, episode metrics


class Transition(NamedTuple):
    obs: Any
    action: jax.Array  # as sampled: a Gaussian sample before `to_env_action` clips it
    log_prob: jax.Array
    value: jax.Array  # V(obs)
    reward: jax.Array
    terminated: jax.Array  # the MDP ended: no bootstrap
    done: jax.Array  # terminated or truncated: the trace is cut
    next_value: jax.Array  # V(final observation of the step), the bootstrap unless terminated


class Rollout(NamedTuple):
    network: nn.Module
    init: Callable  # (key, tx, params=None) -> RunnerState
    collect: Callable  # RunnerState -> (RunnerState, Transition, Episodes)
    finish: Callable  # (RunnerState, Episodes, losses) -> (RunnerState, metrics)


def advantages_and_targets(transitions: Transition, gamma, gae_lambda):
    """`targets.gae` over a collected rollout (time-major)."""
    return gae(transitions.reward, transitions.value, transitions.next_value,
               transitions.terminated, transitions.done, gamma, gae_lambda)


def check_rollout_config(config, table: dict[str, Rule]) -> None:
    """ValueError naming the first invalid field of an on-policy config: a rule of `table`, a
    non-bool `anneal_lr`, or fewer `total_timesteps` than one rollout of all envs."""
    check_config(config, table)
    check_bools(config, "anneal_lr")
    check_one_update(config, config.batch_size, "num_envs * num_steps")


def loss_terms(loss_actor, value, targets, entropy, vf_coef, ent_coef):
    """`(total, parts)`: `loss_actor + vf_coef * value loss - ent_coef * mean entropy`, the
    value loss half the mean squared error of `value` to `targets`; parts are the metrics."""
    loss_value = 0.5 * jnp.mean(jnp.square(value - targets))
    entropy = jnp.mean(entropy)
    total = loss_actor + vf_coef * loss_value - ent_coef * entropy
    return total, {"loss_total": total, "loss_actor": loss_actor, "loss_value": loss_value,
                   "entropy": entropy}


def make_one_step_learner(config, env, env_params, learner: str, estimate: Callable,
                          init_network_params=None) -> Learner:
    """A `Learner` taking one gradient step (Adam, global-norm clipping) per rollout on the
    policy gradient of batch-normalised advantages plus the value loss and entropy bonus
    (`loss_terms`): A2C and REINFORCE, which differ only in `estimate(transitions) ->
    (advantages, value targets)`. `init_network_params` replace the fresh network params."""
    rollout = make_rollout(env, env_params, learner, config.hidden_size, config.num_envs,
                           config.num_steps, getattr(config, "network", "default"))
    tx = make_optimizer(config.lr, config.max_grad_norm, config.anneal_lr, config.num_updates)

    def loss_fn(params, transitions, advantages, targets):
        dist, value = rollout.network.apply(params, transitions.obs)
        log_prob, entropy = log_prob_entropy(dist, transitions.action)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return loss_terms(-jnp.mean(log_prob * adv), value, targets, entropy, config.vf_coef,
                          config.ent_coef)

    def update(runner: RunnerState):
        runner, transitions, episodes = rollout.collect(runner)
        advantages, targets = estimate(transitions)
        params, opt_state = runner.train_state
        grads, losses = jax.grad(loss_fn, has_aux=True)(params, transitions, advantages, targets)
        updates, opt_state = tx.update(grads, opt_state, params)
        train_state = TrainState(optax.apply_updates(params, updates), opt_state)
        return rollout.finish(runner._replace(train_state=train_state), episodes, losses)

    return Learner(init=lambda key: rollout.init(key, tx, init_network_params), update=update,
                   num_updates=config.num_updates, steps_per_update=config.batch_size)


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


def make_rollout(env, env_params, learner: str, hidden_size: int, num_envs: int,
                 num_steps: int, network: str = "default") -> Rollout:
    """The actor-critic (one of `NETWORKS`) and env loop for `env`; `learner` names the
    algorithm in errors. `init(key, tx, params)` starts from given network `params` (e.g.
    pre-trained, `learners.pretrain`) instead of fresh ones where `params` is not None."""
    network, slate_size = make_network(env, env_params, hidden_size, learner, network)
    action_space = env.action_space(env_params)
    env_loop = make_env_loop(env, env_params, num_envs)

    def init(key, tx, params=None) -> RunnerState:
        k_net, k_loop = jax.random.split(key)
        loop = env_loop.init(k_loop)
        one_obs = jax.tree.map(lambda x: x[0], loop.obs)
        if params is None:
            params = network.init(k_net, one_obs)
        else:
            check_params(params, jax.eval_shape(network.init, k_net, one_obs), learner)
        return RunnerState(TrainState(params, tx.init(params)), loop)

    def act(params, key, obs, _):
        dist, value = network.apply(params, obs)
        action = sample_action(key, dist, slate_size)
        log_prob, _ = log_prob_entropy(dist, action)
        return to_env_action(action_space, action), params, (action, log_prob, value)

    def observe(params, record, step, _):
        action, log_prob, value = record
        _, next_value = network.apply(params, step.final_obs)
        return params, Transition(step.obs, action, log_prob, value, step.reward,
                                  step.terminated, step.done, next_value)

    def collect(runner: RunnerState):
        _, loop, transitions, episodes = env_loop.collect(
            act, observe, runner.train_state.params, runner.loop, num_steps)
        return runner._replace(loop=loop), transitions, episodes

    def finish(runner: RunnerState, episodes: Episodes, losses: dict):
        loop, metrics = env_loop.finish(runner.loop, episodes)
        return runner._replace(loop=loop), {**metrics, **jax.tree.map(jnp.mean, losses)}

    return Rollout(network, init, collect, finish)


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
