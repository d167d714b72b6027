"""Flax modules shared by learners: an MLP, actor-critics, and `make_actor_critic` to pick one.

Every actor-critic maps an observation (with any leading batch dimensions) to
`(logits, value)`: logits over discrete actions or candidate items, and a scalar value.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces


def _dense(features: int, scale: float = np.sqrt(2)) -> nn.Dense:
    """Dense layer with zero bias and weights of gain `scale` (He-style for ReLU by default,
    small for output heads). Variance scaling rather than orthogonal init: it compiles in
    about half the time, which matters when `train` is recompiled per config."""
    return nn.Dense(features, kernel_init=nn.initializers.variance_scaling(scale**2, "fan_in", "normal"),
                    bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """ReLU hidden layers, then a linear output layer of `features[-1]` units scaled by `out_scale`."""

    features: Sequence[int]
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        for width in self.features[:-1]:
            x = nn.relu(_dense(width)(x))
        return _dense(self.features[-1], self.out_scale)(x)


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs over a flat Box observation; logits over `num_actions`."""

    num_actions: int
    obs_ndim: int = 1
    hidden_size: int = 64
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        x = jnp.reshape(obs, obs.shape[:obs.ndim - self.obs_ndim] + (-1,))
        hidden = [self.hidden_size] * self.num_layers
        logits = MLP((*hidden, self.num_actions), out_scale=0.01)(x)
        value = MLP((*hidden, 1))(x)[..., 0]
        return logits, value


class CandidateActorCritic(nn.Module):
    """Scores each candidate item against a context vector built from the click history.

    The context is a masked mean of an encoding of the history rows (the last column of a
    row is 1 for a real click, 0 for an empty slot), with the filled fraction and the time.
    A candidate's logit is a one-hidden-layer MLP of `[candidate, context]` plus a learned
    bilinear (two-tower) term `<u(candidate), v(context)>`, so logits are permutation-
    equivariant over candidates and item-to-interest similarity is cheap to express. The
    critic is an MLP over the context and the mean of the encoded candidates. One hidden
    layer per candidate keeps the per-step cost low: the candidate head dominates it.
    """

    hidden_size: int = 32

    @nn.compact
    def __call__(self, obs):
        h = self.hidden_size
        candidates, history = obs["candidates"], obs["history"]
        valid = history[..., -1:]
        rows = nn.relu(_dense(h)(history)) * valid
        count = jnp.sum(valid, axis=-2)
        pooled = jnp.sum(rows, axis=-2) / jnp.maximum(count, 1.0)
        filled = count / history.shape[-2]
        context = nn.relu(_dense(h)(jnp.concatenate([pooled, filled, obs["time"]], axis=-1)))

        cand = _dense(h)(candidates)
        x = nn.relu(cand + _dense(h)(context)[..., None, :])
        bilinear = jnp.sum(_dense(h, 1.0)(candidates) * _dense(h, 0.01)(context)[..., None, :], axis=-1)
        logits = _dense(1, 0.01)(x)[..., 0] + bilinear

        critic_in = jnp.concatenate([context, jnp.mean(nn.relu(cand), axis=-2)], axis=-1)
        value = MLP((h, h, 1))(critic_in)[..., 0]
        return logits, value


def make_actor_critic(observation_space, num_actions: int, hidden_size: int = 64) -> nn.Module:
    """The actor-critic for an env's observation space: candidate scorer for a Dict with
    "candidates" (and "history", "time"), MLP for a Box; anything else is a ValueError."""
    if isinstance(observation_space, spaces.Dict) and "candidates" in observation_space.spaces:
        missing = {"history", "time"} - set(observation_space.spaces)
        if missing:
            raise ValueError(f"candidate observations need keys 'candidates', 'history', 'time'; "
                             f"missing {sorted(missing)}")
        return CandidateActorCritic(hidden_size=hidden_size)
    if isinstance(observation_space, spaces.Box):
        return MLPActorCritic(num_actions=num_actions, obs_ndim=len(observation_space.shape),
                              hidden_size=hidden_size)
    raise ValueError(f"no network for observation space {observation_space!r}; supported: "
                     "Box (MLP) or Dict with 'candidates', 'history', 'time' (candidate scorer)")
