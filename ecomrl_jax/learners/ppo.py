"""Proximal policy optimisation (PPO, clipped objective) for Discrete, Slate and Box actions.

The whole run is `lax.scan`s: env steps, GAE, epochs and minibatches; `make_train(config,
env, env_params)(key)` runs it in one jit. Traceable hyperparameters are pytree fields of
`PPOConfig`, so a grid vmaps:

    configs = jax.tree.map(lambda *x: jnp.stack(x), *[PPOConfig(lr=lr) for lr in (1e-4, 3e-4)])
    jax.vmap(lambda c, k: make_train(c, env, params)(k))(configs, keys)

Policies are categorical, Plackett-Luce over slates, or Gaussian for a float Box (see
`distributions`); the env loop, GAE and the policy of trained weights are shared with A2C and
REINFORCE (`actor_critic`). A time limit is not a termination: GAE bootstraps a truncated
episode from the value of its final observation (`targets.gae`).
"""

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ecomrl_jax.learners.actor_critic import (  # noqa: F401 (make_policy, network_params: the CLI's interface)
    ACTOR_CRITIC_RULES, RunnerState, TrainState, advantages_and_targets, check_rollout_config,
    loss_terms, make_policy, make_rollout, network_params)
from ecomrl_jax.learners.config import RolloutSizes, check_min_lr, make_optimizer
from ecomrl_jax.learners.distributions import log_prob_entropy
from ecomrl_jax.learners.loop import Learner, train_fn
from ecomrl_jax.rules import NON_NEGATIVE, POSITIVE, POSITIVE_INT, UNIT_INTERVAL


@struct.dataclass
class PPOConfig(RolloutSizes):
    """PPO hyperparameters; defaults are tuned for ShopperRec-v0 on a 2-core CPU."""

    lr: float = 3e-3
    min_lr: float = 0.0  # the floor `anneal_lr` decays lr to
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
    network: str = struct.field(pytree_node=False, default="default")  # or "transformer-<preset>"
    anneal_lr: bool = struct.field(pytree_node=False, default=True)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        check_rollout_config(self, PPO_RULES)
        check_min_lr(self)
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_envs * num_steps ({self.batch_size}) must be divisible by "
                             f"num_minibatches ({self.num_minibatches})")


PPO_RULES = {**ACTOR_CRITIC_RULES, "update_epochs": POSITIVE_INT, "num_minibatches": POSITIVE_INT,
             "gae_lambda": UNIT_INTERVAL, "clip_eps": POSITIVE, "min_lr": NON_NEGATIVE}


def validate_config(config: PPOConfig) -> None:
    """Function form of `PPOConfig.validate`."""
    config.validate()


def make_learner(config: PPOConfig, env, env_params, init_network_params=None) -> Learner:
    """PPO as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics).
    `init_network_params` (e.g. from `learners.pretrain`) replace the fresh network params."""
    config.validate()
    rollout = make_rollout(env, env_params, "PPO", config.hidden_size, config.num_envs,
                           config.num_steps, config.network)
    minibatch_size = config.batch_size // config.num_minibatches
    tx = make_optimizer(config.lr, config.max_grad_norm, config.anneal_lr, config.num_updates,
                        config.num_minibatches * config.update_epochs, config.min_lr)

    def loss_fn(params, batch, advantages, targets):
        dist, value = rollout.network.apply(params, batch.obs)
        log_prob, entropy = log_prob_entropy(dist, batch.action)
        log_ratio = log_prob - batch.log_prob
        ratio = jnp.exp(log_ratio)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        loss_actor = -jnp.mean(jnp.minimum(
            ratio * adv, jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * adv))
        total, losses = loss_terms(loss_actor, value, targets, entropy, config.vf_coef,
                                   config.ent_coef)
        return total, {**losses, "approx_kl": jnp.mean((ratio - 1.0) - log_ratio)}

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
        runner, transitions, episodes = rollout.collect(runner)
        advantages, targets = advantages_and_targets(transitions, config.gamma, config.gae_lambda)
        data = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]),
                            (transitions, advantages, targets))
        (train_state, key, _), losses = jax.lax.scan(
            epoch, (runner.train_state, runner.loop.key, data), None, config.update_epochs)
        runner = runner._replace(train_state=train_state, loop=runner.loop._replace(key=key))
        return rollout.finish(runner, episodes, losses)

    return Learner(init=lambda key: rollout.init(key, tx, init_network_params), update=update,
                   num_updates=config.num_updates, steps_per_update=config.batch_size)


def make_train(config: PPOConfig, env, env_params, init_network_params=None):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates; the run
    starts from `init_network_params` where given (RL fine-tuning of pre-trained params)."""
    return train_fn(make_learner(config, env, env_params, init_network_params))
