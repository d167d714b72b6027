"""Pre-training a transformer actor-critic on logged trajectories, for RL fine-tuning.

The logs are `Logs`: each step's observation, shown action and clicked candidate slot (for
ShopperRec-v0, `envs.recommendation.logs.collect_logs` writes them from a behaviour policy).
`make_pretrain(config, env, env_params)(key, logs)` then trains the actor by behaviour cloning (negative log-likelihood of
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
import optax
from flax import struct

from ecomrl_jax.learners.actor_critic import make_network
from ecomrl_jax.learners.config import check_config, make_optimizer
from ecomrl_jax.learners.distributions import log_prob_entropy
from ecomrl_jax.learners.networks import NETWORKS
from ecomrl_jax.rules import NON_NEGATIVE, POSITIVE, POSITIVE_INT


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
        if self.network not in NETWORKS[1:]:
            raise ValueError(f"PretrainConfig.network must be a transformer, one of "
                             f"{list(NETWORKS[1:])}, got {self.network!r}")
        check_config(self, PRETRAIN_RULES)


PRETRAIN_RULES = {"batch_size": POSITIVE_INT, "num_epochs": POSITIVE_INT, "hidden_size": POSITIVE_INT,
                  "lr": POSITIVE, "click_coef": NON_NEGATIVE, "max_grad_norm": POSITIVE}


def make_pretrain(config: PretrainConfig, env, env_params):
    """`pretrain(key, logs) -> (network_params, metrics)`: behaviour cloning plus next-click
    prediction for `config.num_epochs` passes over `logs` (a remainder short of a minibatch is
    dropped each epoch); metrics ("loss_bc", "loss_click", "accuracy": greedy action's first
    slot equals the logged one) are per gradient step."""
    config.validate()
    network, _ = make_network(env, env_params, config.hidden_size, "pre-training", config.network)
    click_head = nn.Dense(1)
    tx = make_optimizer(config.lr, config.max_grad_norm)

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
