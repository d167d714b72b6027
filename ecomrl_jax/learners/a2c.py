"""Synchronous advantage actor-critic (A2C) for Discrete, Slate and Box actions.

Each update steps `num_envs` auto-resetting envs for `num_steps` steps, estimates advantages
by GAE (`gae_lambda` 1 gives n-step returns bootstrapped at the rollout end), and takes one
gradient step on policy loss + `vf_coef` * value loss - `ent_coef` * entropy, with Adam and
global-norm clipping (Adam rather than the original RMSProp, as PPO here). Advantages are
normalised over the batch. Policies, the env loop and the metrics are PPO's (`distributions`,
`actor_critic`); truncated episodes bootstrap from V(final observation), as in PPO. Like
`ppo.make_train`, `train` is one jit and the traceable fields of `A2CConfig` vmap as a grid.
"""

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ecomrl_jax.learners.actor_critic import (  # noqa: F401 (make_policy, network_params: the CLI's interface)
    RunnerState, TrainState, advantages_and_targets, make_policy, make_rollout, network_params)
from ecomrl_jax.learners.config import (RolloutSizes, check_bools, check_config, check_one_update,
                                        make_optimizer)
from ecomrl_jax.learners.distributions import log_prob_entropy
from ecomrl_jax.learners.loop import Learner, train_fn
from ecomrl_jax.rules import DISCOUNT, NON_NEGATIVE, POSITIVE, POSITIVE_INT, UNIT_INTERVAL


@struct.dataclass
class A2CConfig(RolloutSizes):
    """A2C hyperparameters; defaults are tuned for ShopperRec-v0 on a 2-core CPU."""

    lr: float = 3e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    num_envs: int = struct.field(pytree_node=False, default=64)
    num_steps: int = struct.field(pytree_node=False, default=8)
    total_timesteps: int = struct.field(pytree_node=False, default=4_000_000)
    hidden_size: int = struct.field(pytree_node=False, default=32)
    network: str = struct.field(pytree_node=False, default="default")  # or "transformer-<preset>"
    anneal_lr: bool = struct.field(pytree_node=False, default=True)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        check_config(self, A2C_RULES)
        check_bools(self, "anneal_lr")
        check_one_update(self, self.batch_size, "num_envs * num_steps")


A2C_RULES = {
    **{name: POSITIVE_INT for name in ("num_envs", "num_steps", "total_timesteps", "hidden_size")},
    "lr": POSITIVE, "gamma": DISCOUNT, "gae_lambda": UNIT_INTERVAL,
    "ent_coef": NON_NEGATIVE, "vf_coef": NON_NEGATIVE, "max_grad_norm": POSITIVE}


def make_learner(config: A2CConfig, env, env_params, init_network_params=None) -> Learner:
    """A2C as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics).
    `init_network_params` (e.g. from `learners.pretrain`) replace the fresh network params."""
    config.validate()
    rollout = make_rollout(env, env_params, "A2C", config.hidden_size, config.num_envs,
                           config.num_steps, config.network)
    tx = make_optimizer(config.lr, config.max_grad_norm, config.anneal_lr, config.num_updates)

    def loss_fn(params, transitions, advantages, targets):
        dist, value = rollout.network.apply(params, transitions.obs)
        log_prob, entropy = log_prob_entropy(dist, transitions.action)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        loss_actor = -jnp.mean(log_prob * adv)
        loss_value = 0.5 * jnp.mean(jnp.square(value - targets))
        entropy = jnp.mean(entropy)
        total = loss_actor + config.vf_coef * loss_value - config.ent_coef * entropy
        return total, {"loss_total": total, "loss_actor": loss_actor, "loss_value": loss_value,
                       "entropy": entropy}

    def update(runner: RunnerState):
        runner, transitions, episodes = rollout.collect(runner)
        advantages, targets = advantages_and_targets(transitions, config.gamma, config.gae_lambda)
        params, opt_state = runner.train_state
        grads, losses = jax.grad(loss_fn, has_aux=True)(params, transitions, advantages, targets)
        updates, opt_state = tx.update(grads, opt_state, params)
        train_state = TrainState(optax.apply_updates(params, updates), opt_state)
        return rollout.finish(runner._replace(train_state=train_state), episodes, losses)

    return Learner(init=lambda key: rollout.init(key, tx, init_network_params), update=update,
                   num_updates=config.num_updates, steps_per_update=config.batch_size)


def make_train(config: A2CConfig, env, env_params, init_network_params=None):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates; the run
    starts from `init_network_params` where given (RL fine-tuning of pre-trained params)."""
    return train_fn(make_learner(config, env, env_params, init_network_params))
