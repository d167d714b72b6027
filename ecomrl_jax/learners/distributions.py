"""Action distributions of the policy-gradient learners (PPO, A2C, REINFORCE).

- Discrete: a categorical over logits (..., n); the action is an int32 index.
- Slate (`ecomrl_jax.spaces.Slate`): a Plackett-Luce policy over candidate logits (..., C). An
  ordered slate is sampled by Gumbel top-k; its log-probability is the sum over positions of
  the log-softmax of the chosen candidate among those not yet placed.
- Box (float): a diagonal `Gaussian` (..., d) over the flattened action, in units where the
  Box bounds are -1 and 1 (so one network scale suits a price in [5, 50] and a torque in
  [-2, 2]). Samples are unbounded; learners store them as drawn, for unbiased log-probs, and
  `to_env_action` maps and clips them onto the bounds only for the env (as PureJaxRL and
  CleanRL do). A dimension without two finite bounds is not rescaled (only clipped to the
  finite bound it has).

A network's output picks the family: a `Gaussian` or an array of logits.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from ecomrl_jax.spaces import Slate

_LOG_2PI = float(np.log(2.0 * np.pi))


class Gaussian(NamedTuple):
    """A diagonal Gaussian; `log_std` has the shape of `mean`."""

    mean: jax.Array
    log_std: jax.Array


def action_spec(env, env_params, learner: str) -> tuple[int, int]:
    """`(num_actions, slate_size)`: `(n, 0)` for Discrete(n), `(C, k)` for a Slate of k from
    C candidates, `(d, 0)` for a float Box of d numbers; any other space is a ValueError."""
    space = env.action_space(env_params)
    if isinstance(space, Slate):
        return space.n, space.slate_size
    if isinstance(space, spaces.Discrete):
        return space.n, 0
    if isinstance(space, spaces.Box) and jnp.issubdtype(space.dtype, jnp.floating):
        return int(np.prod(space.shape, dtype=int)), 0
    raise ValueError(f"{learner} needs a Discrete, Slate or float Box action space; "
                     f"{env.name} has {space!r}")


def sample_action(key, dist, slate_size: int = 0, deterministic: bool = False):
    """An action from `dist`: Gaussian sample (or mean), categorical index (slate_size 0) or
    Plackett-Luce slate of `slate_size` (argmax / top-k when deterministic)."""
    if isinstance(dist, Gaussian):
        if deterministic:
            return dist.mean
        return dist.mean + jnp.exp(dist.log_std) * jax.random.normal(key, dist.mean.shape)
    scores = dist if deterministic else dist + jax.random.gumbel(key, dist.shape)
    if slate_size == 0:
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return jax.lax.top_k(scores, slate_size)[1].astype(jnp.int32)


def log_prob_entropy(dist, action):
    """`(log_prob, entropy)` of `action` under `dist`, both of the batch shape.

    For a slate the entropy is the sum over positions of the entropy of the choice among
    candidates not yet placed: by the chain rule its expectation over slates is the slate
    entropy; for one position it is the categorical entropy. A logit of -inf (a masked action)
    has probability 0 and adds 0 to the entropy; an action that picks it has log-prob -inf.
    Each position needs a finite logit among the candidates not yet placed.
    """
    if isinstance(dist, Gaussian):
        z = (action - dist.mean) * jnp.exp(-dist.log_std)
        log_prob = -jnp.sum(0.5 * jnp.square(z) + dist.log_std + 0.5 * _LOG_2PI, axis=-1)
        entropy = jnp.sum(dist.log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)
        return log_prob, entropy
    logits = dist
    slate = action[..., None] if action.ndim == logits.ndim - 1 else action
    chosen = slate[..., None] == jnp.arange(logits.shape[-1])  # (..., k, C)
    placed = (jnp.cumsum(chosen, axis=-2) - chosen) > 0
    log_p = jax.nn.log_softmax(jnp.where(placed, -jnp.inf, logits[..., None, :]), axis=-1)
    log_p = jnp.where(placed, 0.0, log_p)  # placed: no -inf, so gradients stay finite
    log_prob = jnp.sum(jnp.where(chosen, log_p, 0.0), axis=(-2, -1))
    # p log p -> 0 as p -> 0: a -inf logit would give 0 * -inf = NaN
    finite_log_p = jnp.where(jnp.isneginf(log_p), 0.0, log_p)
    entropy = -jnp.sum(jnp.exp(log_p) * finite_log_p, axis=(-2, -1))
    return log_prob, entropy


def to_env_action(space, action):
    """The env action for a policy action: indices and slates as they are; a Gaussian sample
    (..., d) mapped from [-1, 1] onto the Box bounds, clipped, and shaped like the Box."""
    if not isinstance(space, spaces.Box):
        return action
    batch = action.shape[:-1]
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape).reshape(-1)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape).reshape(-1)
    bounded = jnp.isfinite(low) & jnp.isfinite(high)
    center = jnp.where(bounded, 0.5 * (low + high), 0.0)
    half_width = jnp.where(bounded, 0.5 * (high - low), 1.0)
    env_action = jnp.clip(center + half_width * action, low, high)
    return env_action.reshape(batch + tuple(space.shape)).astype(space.dtype)
