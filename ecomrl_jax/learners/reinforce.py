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
from ecomrl_jax.rules import DISCOUNT, NON_NEGATIVE, POSITIVE, POSITIVE_INT


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
        check_config(self, REINFORCE_RULES)
        check_bools(self, "anneal_lr")
        check_one_update(self, self.batch_size, "num_envs * num_steps")


REINFORCE_RULES = {
    **{name: POSITIVE_INT for name in ("num_envs", "num_steps", "total_timesteps", "hidden_size")},
    "lr": POSITIVE, "gamma": DISCOUNT, "ent_coef": NON_NEGATIVE,
    "vf_coef": NON_NEGATIVE, "max_grad_norm": POSITIVE}


def make_learner(config: REINFORCEConfig, env, env_params) -> Learner:
    """REINFORCE as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics)."""
    config.validate()
    rollout = make_rollout(env, env_params, "REINFORCE", config.hidden_size, config.num_envs,
                           config.num_steps)
    tx = make_optimizer(config.lr, config.max_grad_norm, config.anneal_lr, config.num_updates)

    def loss_fn(params, transitions, returns):
        dist, baseline = rollout.network.apply(params, transitions.obs)
        log_prob, entropy = log_prob_entropy(dist, transitions.action)
        adv = returns - transitions.value  # the baseline of these params, as collected
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        loss_actor = -jnp.mean(log_prob * adv)
        loss_value = 0.5 * jnp.mean(jnp.square(baseline - returns))
        entropy = jnp.mean(entropy)
        total = loss_actor + config.vf_coef * loss_value - config.ent_coef * entropy
        return total, {"loss_total": total, "loss_actor": loss_actor, "loss_value": loss_value,
                       "entropy": entropy}

    def update(runner: RunnerState):
        runner, transitions, episodes = rollout.collect(runner)
        _, returns = advantages_and_targets(transitions, config.gamma, 1.0)  # returns-to-go
        params, opt_state = runner.train_state
        grads, losses = jax.grad(loss_fn, has_aux=True)(params, transitions, returns)
        updates, opt_state = tx.update(grads, opt_state, params)
        train_state = TrainState(optax.apply_updates(params, updates), opt_state)
        return rollout.finish(runner._replace(train_state=train_state), episodes, losses)

    return Learner(init=lambda key: rollout.init(key, tx), update=update,
                   num_updates=config.num_updates, steps_per_update=config.batch_size)


def make_train(config: REINFORCEConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
