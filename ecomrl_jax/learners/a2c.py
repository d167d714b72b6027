"""Synchronous advantage actor-critic (A2C) for Discrete, Slate and Box actions.

Each update steps `num_envs` auto-resetting envs for `num_steps` steps, estimates advantages
by GAE (`gae_lambda` 1 gives n-step returns bootstrapped at the rollout end), and takes one
gradient step on policy loss + `vf_coef` * value loss - `ent_coef` * entropy, with Adam and
global-norm clipping (Adam rather than the original RMSProp, as PPO here). Advantages are
normalised over the batch. Policies, the env loop and the metrics are PPO's (`distributions`,
`actor_critic`); truncated episodes bootstrap from V(final observation), as in PPO. Like
`ppo.make_train`, `train` is one jit and the traceable fields of `A2CConfig` vmap as a grid.
"""

from flax import struct

from ecomrl_jax.learners.actor_critic import (  # noqa: F401 (make_policy, network_params: the CLI's interface)
    ACTOR_CRITIC_RULES, advantages_and_targets, check_rollout_config, make_one_step_learner,
    make_policy, network_params)
from ecomrl_jax.learners.config import RolloutSizes
from ecomrl_jax.learners.loop import Learner, train_fn
from ecomrl_jax.rules import UNIT_INTERVAL


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
        check_rollout_config(self, A2C_RULES)


A2C_RULES = {**ACTOR_CRITIC_RULES, "gae_lambda": UNIT_INTERVAL}


def make_learner(config: A2CConfig, env, env_params, init_network_params=None) -> Learner:
    """A2C as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics).
    `init_network_params` (e.g. from `learners.pretrain`) replace the fresh network params."""
    config.validate()
    return make_one_step_learner(
        config, env, env_params, "A2C",
        lambda transitions: advantages_and_targets(transitions, config.gamma, config.gae_lambda),
        init_network_params)


def make_train(config: A2CConfig, env, env_params, init_network_params=None):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates; the run
    starts from `init_network_params` where given (RL fine-tuning of pre-trained params)."""
    return train_fn(make_learner(config, env, env_params, init_network_params))
