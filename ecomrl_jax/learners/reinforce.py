"""REINFORCE with a learned baseline for Discrete, Slate and Box actions.

The policy gradient weights each log-probability by the Monte Carlo return-to-go minus a
learned baseline V(s), which is regressed onto the same returns. Envs auto-reset, so each
update steps `num_envs` envs for `num_steps` steps, and returns are discounted rewards-to-go
within that rollout, restarting at every episode end. An episode still running when the
rollout ends has an unfinished return: only there is it bootstrapped with the baseline value
of the last state (without it the returns near the rollout end would be cut short). Keep
`num_steps` at or above the env's episode length (ShopperRec-v0: at most 50 steps) so most
returns are pure Monte Carlo. A time limit is not a termination: an episode truncated inside
the rollout is bootstrapped with the baseline value of its final observation. This is GAE
with lambda 1 (`targets.gae`); advantages are normalised over the batch; one gradient step per
rollout (Adam, global-norm clipping), with an optional entropy bonus. Policies, env loop and
metrics are PPO's (`distributions`, `actor_critic`).
"""

from flax import struct

from ecomrl_jax.learners.actor_critic import (  # noqa: F401 (make_policy, network_params: the CLI's interface)
    ACTOR_CRITIC_RULES, Transition, advantages_and_targets, check_rollout_config,
    make_one_step_learner, make_policy, network_params)
from ecomrl_jax.learners.config import RolloutSizes
from ecomrl_jax.learners.loop import Learner, train_fn


@struct.dataclass
class REINFORCEConfig(RolloutSizes):
    """REINFORCE hyperparameters; defaults are tuned for ShopperRec-v0 on a 2-core CPU."""

    lr: float = 1e-2
    gamma: float = 0.99
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    num_envs: int = struct.field(pytree_node=False, default=16)
    num_steps: int = struct.field(pytree_node=False, default=64)
    total_timesteps: int = struct.field(pytree_node=False, default=4_000_000)
    hidden_size: int = struct.field(pytree_node=False, default=32)
    anneal_lr: bool = struct.field(pytree_node=False, default=True)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        check_rollout_config(self, REINFORCE_RULES)


REINFORCE_RULES = ACTOR_CRITIC_RULES


def make_learner(config: REINFORCEConfig, env, env_params) -> Learner:
    """REINFORCE as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics)."""
    config.validate()

    def returns_minus_baseline(transitions: Transition):
        _, returns = advantages_and_targets(transitions, config.gamma, 1.0)  # returns-to-go
        return returns - transitions.value, returns  # the baseline of the collecting params

    return make_one_step_learner(config, env, env_params, "REINFORCE", returns_minus_baseline)


def make_train(config: REINFORCEConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
