"""Pre-training a transformer actor-critic on logged ShopperRec trajectories, for RL fine-tuning.

`collect_logs` rolls out a logging (behaviour) policy, e.g. `epsilon_policy` around the myopic
oracle, in `num_envs` vmapped envs for `num_steps` scanned steps and keeps each step's
observation, shown action and clicked candidate slot. `make_pretrain(config, env,
env_params)(key, logs)` then trains the actor by behaviour cloning (negative log-likelihood of
the logged action under the policy logits) plus a next-click auxiliary (cross-entropy over
candidates of the clicked slot, on steps with a click, from a linear head on the network's
candidate tokens), in one `lax.scan` over shuffled minibatches. It returns network params that
`ppo.make_train(config, env, env_params, init_network_params=...)` (or A2C's) starts from; the
value head is left untrained.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ecomrl_jax.learners.distributions import log_prob_entropy
from ecomrl_jax.learners.actor_critic import NON_NEGATIVE, POSITIVE, make_network
from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec
from ecomrl_jax.learners.networks import NETWORKS


class Logs(NamedTuple):
    obs: Any  # observations, leading axis (num_steps * num_envs,)
    action: jax.Array  # shown candidate slot (N,) or ordered slate of slots (N, k), int32
    click_slot: jax.Array  # (N,) candidate slot the shopper clicked (0 where `clicked` is 0)
    clicked: jax.Array  # (N,) 1.0 where a click happened and the episode went on (slot known)


@struct.dataclass
class PretrainConfig:
    """Pre-training hyperparameters; `network` and `hidden_size` must match the RL config's."""

    lr: float = 1e-3
    click_coef: float = 0.5
    max_grad_norm: float = 1.0
    batch_size: int = struct.field(pytree_node=False, default=256)
    num_epochs: int = struct.field(pytree_node=False, default=4)
    hidden_size: int = struct.field(pytree_node=False, default=32)
    network: str = struct.field(pytree_node=False, default="transformer-tiny")

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced values are skipped."""
        for name in ("batch_size", "num_epochs", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PretrainConfig.{name} must be a positive int, got {value!r}")
        if self.network not in NETWORKS[1:]:
            raise ValueError(f"PretrainConfig.network must be a transformer, one of "
                             f"{list(NETWORKS[1:])}, got {self.network!r}")
        for name, (ok, rule) in {"lr": POSITIVE, "click_coef": NON_NEGATIVE,
                                 "max_grad_norm": POSITIVE}.items():
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            if not np.all(ok(np.asarray(value, np.float64))):
                raise ValueError(f"PretrainConfig.{name} must be {rule}, got {value!r}")


def epsilon_policy(policy_fn, env, env_params, epsilon: float):
    """`policy_fn`'s action, or with probability `epsilon` a uniformly random one: logs whose
    actions vary around a good policy, as a deployed recommender's exploration gives."""
    space = env.action_space(env_params)

    def noisy_fn(key, obs, env_state, params):
        k_coin, k_random, k_policy = jax.random.split(key, 3)
        action = policy_fn(k_policy, obs, env_state, params)
        return jnp.where(jax.random.uniform(k_coin) < epsilon, space.sample(k_random), action)

    return noisy_fn


def collect_logs(env, env_params, policy_fn, key, num_envs: int, num_steps: int) -> Logs:
    """`num_steps` steps of `num_envs` auto-resetting ShopperRec envs under `policy_fn(key, obs,
    env_state, env_params)`, flattened to `num_steps * num_envs` logged steps. The clicked
    slot is the shown slot whose item heads the next state's history; on a step that ends the
    episode the history is reset, so such clicks are left out (`clicked` 0)."""
    if not isinstance(env, ShopperRec):
        raise ValueError(f"collect_logs needs an unwrapped ShopperRec env, got {type(env).__name__}")

    def env_step(key, obs, state):
        k_act, k_step = jax.random.split(key)
        action = policy_fn(k_act, obs, state, env_params)
        next_obs, next_state, _, terminated, truncated, info = env.step(k_step, state, action,
                                                                          env_params)
        slots = jnp.atleast_1d(action)
        click_slot = slots[jnp.argmax(state.candidates[slots] == next_state.history_items[0])]
        clicked = (info["clicks"] > 0) & ~(terminated | truncated)
        log = Logs(obs, action.astype(jnp.int32), jnp.where(clicked, click_slot, 0),
                   clicked.astype(jnp.float32))
        return next_obs, next_state, log

    def body(carry, key):
        obs, state, log = jax.vmap(env_step)(jax.random.split(key, num_envs), *carry)
        return (obs, state), log

    k_reset, k_run = jax.random.split(key)
    carry = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), env_params)
    _, logs = jax.lax.scan(body, carry, jax.random.split(k_run, num_steps))
    return jax.tree.map(lambda x: x.reshape((num_steps * num_envs,) + x.shape[2:]), logs)


def make_pretrain(config: PretrainConfig, env, env_params):
    """`pretrain(key, logs) -> (network_params, metrics)`: behaviour cloning plus next-click
    prediction for `config.num_epochs` passes over `logs` (a remainder short of a minibatch is
    dropped each epoch); metrics ("loss_bc", "loss_click", "accuracy": greedy action's first
    slot equals the logged one) are per gradient step."""
    config.validate()
    network, _ = make_network(env, env_params, config.hidden_size, "pre-training", config.network)
    click_head = nn.Dense(1)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))

    def losses(params, batch: Logs):
        (logits, _), state = network.apply(params["network"], batch.obs, mutable=["intermediates"])
        tokens = state["intermediates"]["candidate_tokens"][0]
        click_logits = click_head.apply(params["click_head"], tokens)[..., 0]
        loss_bc = -jnp.mean(log_prob_entropy(logits, batch.action)[0])
        click_log_p = jax.nn.log_softmax(click_logits)
        click_nll = -jnp.take_along_axis(click_log_p, batch.click_slot[:, None], axis=-1)[:, 0]
        loss_click = jnp.sum(batch.clicked * click_nll) / jnp.maximum(jnp.sum(batch.clicked), 1.0)
        first = batch.action if batch.action.ndim == 1 else batch.action[:, 0]
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == first)
        return loss_bc + config.click_coef * loss_click, {
            "loss_bc": loss_bc, "loss_click": loss_click, "accuracy": accuracy}

    def step(carry, batch):
        params, opt_state = carry
        grads, metrics = jax.grad(losses, has_aux=True)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def pretrain(key, logs: Logs):
        size = logs.clicked.shape[0]
        num_batches = size // config.batch_size
        if num_batches < 1:
            raise ValueError(f"{size} logged steps are fewer than one minibatch "
                             f"({config.batch_size})")
        k_net, k_head, k_shuffle = jax.random.split(key, 3)
        one_obs = jax.tree.map(lambda x: x[0], logs.obs)
        params = {"network": network.init(k_net, one_obs),
                  "click_head": click_head.init(k_head, jnp.zeros((network.model_dim,)))}

        def epoch(carry, key):
            perm = jax.random.permutation(key, size)[:num_batches * config.batch_size]
            batches = jax.tree.map(
                lambda x: x[perm].reshape((num_batches, config.batch_size) + x.shape[1:]), logs)
            return jax.lax.scan(step, carry, batches)

        (params, _), metrics = jax.lax.scan(epoch, (params, tx.init(params)),
                                            jax.random.split(k_shuffle, config.num_epochs))
        return params["network"], jax.tree.map(lambda x: x.reshape(-1), metrics)

    return pretrain
