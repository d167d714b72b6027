"""Flax modules shared by learners: an MLP, actor-critics, and `make_actor_critic` to pick one.

Every actor-critic maps an observation (with any leading batch dimensions) to
`(logits, value)`: logits over discrete actions or candidate items (or, for continuous
actions, a `Gaussian`), and a scalar value. Q-networks (`make_q_network`) map it to Q-values
over discrete actions or candidate items.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from ecomrl_jax.learners.distributions import Gaussian


TRANSFORMER_PRESETS = {
    "tiny": dict(num_layers=1, num_heads=2, model_dim=32, mlp_dim=64),
    "small": dict(num_layers=2, num_heads=4, model_dim=64, mlp_dim=256),
    "base": dict(num_layers=6, num_heads=8, model_dim=256, mlp_dim=1024),
    "large": dict(num_layers=12, num_heads=8, model_dim=512, mlp_dim=2048),
}
# Values of a learner config's `network` field: the env's default network or a Transformer torso.
NETWORKS = ("default", *(f"transformer-{name}" for name in TRANSFORMER_PRESETS))


def check_params(params, expected, learner: str) -> None:
    """ValueError unless `params` has the structure, shapes and dtypes of `expected`."""
    def spec(tree):
        return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]

    if spec(params) != spec(expected):
        raise ValueError(f"{learner}: the initial network params do not fit the network of this "
                         "config and env (different structure, shapes or dtypes)")


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


def _actor_and_critic(obs, obs_ndim: int, hidden_size: int, num_layers: int, actor_outputs: int):
    """`(actor output, value)` of separate actor and critic MLPs (`num_layers` hidden layers of
    `hidden_size`) over `obs` flattened past its batch dimensions, for use inside a compact
    module; the actor's output layer has `actor_outputs` units of small initial scale."""
    x = jnp.reshape(obs, obs.shape[:obs.ndim - obs_ndim] + (-1,))
    hidden = [hidden_size] * num_layers
    return MLP((*hidden, actor_outputs), out_scale=0.01)(x), MLP((*hidden, 1))(x)[..., 0]


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs over a flat Box observation; logits over `num_actions`."""

    num_actions: int
    obs_ndim: int = 1
    hidden_size: int = 64
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        return _actor_and_critic(obs, self.obs_ndim, self.hidden_size, self.num_layers,
                                 self.num_actions)


class GaussianActorCritic(nn.Module):
    """Separate actor and critic MLPs over a flat Box observation; the actor gives a diagonal
    `Gaussian` over `action_dim` numbers: a mean head and a learned, state-independent log-std
    (initially 0)."""

    action_dim: int
    obs_ndim: int = 1
    hidden_size: int = 64
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        mean, value = _actor_and_critic(obs, self.obs_ndim, self.hidden_size, self.num_layers,
                                        self.action_dim)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return Gaussian(mean, jnp.broadcast_to(log_std, mean.shape)), value


def _history_context(obs, h: int):
    """Context vector of a candidate observation, for use inside a compact module: a masked
    mean of the encoded history rows (the last column of a row is 1 for a real click, 0 for an
    empty slot), with the filled fraction and the time, through a ReLU layer of width `h`."""
    history = obs["history"]
    valid = history[..., -1:]
    rows = nn.relu(_dense(h)(history)) * valid
    count = jnp.sum(valid, axis=-2)
    pooled = jnp.sum(rows, axis=-2) / jnp.maximum(count, 1.0)
    filled = count / history.shape[-2]
    return nn.relu(_dense(h)(jnp.concatenate([pooled, filled, obs["time"]], axis=-1)))


class CandidateActorCritic(nn.Module):
    """Scores each candidate item against a context vector built from the click history.

    The context is `_history_context`'s. A candidate's logit is a one-hidden-layer MLP of
    `[candidate, context]` plus a learned bilinear (two-tower) term `<u(candidate), v(context)>`,
    so logits are permutation-equivariant over candidates and item-to-interest similarity is
    cheap to express. The critic is an MLP over the context and the mean of the encoded
    candidates. One hidden layer per candidate keeps the per-step cost low: the candidate head
    dominates it.
    """

    hidden_size: int = 32

    @nn.compact
    def __call__(self, obs):
        h = self.hidden_size
        candidates, context = obs["candidates"], _history_context(obs, h)

        cand = _dense(h)(candidates)
        x = nn.relu(cand + _dense(h)(context)[..., None, :])
        bilinear = jnp.sum(_dense(h, 1.0)(candidates) * _dense(h, 0.01)(context)[..., None, :], axis=-1)
        logits = _dense(1, 0.01)(x)[..., 0] + bilinear

        critic_in = jnp.concatenate([context, jnp.mean(nn.relu(cand), axis=-2)], axis=-1)
        value = MLP((h, h, 1))(critic_in)[..., 0]
        return logits, value


def make_actor_critic(observation_space, num_actions: int, hidden_size: int = 64,
                      action_space=None) -> nn.Module:
    """The actor-critic for an env's observation space: candidate scorer for a Dict with
    "candidates" (and "history", "time"), MLP for a Box; anything else is a ValueError.
    A Box `action_space` asks for a Gaussian policy over its flattened size (`num_actions`
    is then unused); only Box observations support it."""
    if isinstance(action_space, spaces.Box):
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"a Box action space needs a Box observation space, got {observation_space!r}")
        return GaussianActorCritic(action_dim=int(np.prod(action_space.shape, dtype=int)),
                                   obs_ndim=len(observation_space.shape), hidden_size=hidden_size)
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


def _dueling(value, advantage):
    """Q = V + A - mean(A) over the last axis (Wang et al. 2016): V and A stay identifiable."""
    return value[..., None] + advantage - jnp.mean(advantage, axis=-1, keepdims=True)


class MLPQNetwork(nn.Module):
    """Q-values over `num_actions` from a flat Box observation: an MLP trunk and a linear head,
    or with `dueling` a value head and an advantage head combined by `_dueling`."""

    num_actions: int
    obs_ndim: int = 1
    hidden_size: int = 64
    num_layers: int = 2
    dueling: bool = False

    @nn.compact
    def __call__(self, obs):
        x = jnp.reshape(obs, obs.shape[:obs.ndim - self.obs_ndim] + (-1,))
        for _ in range(self.num_layers):
            x = nn.relu(_dense(self.hidden_size)(x))
        if not self.dueling:
            return _dense(self.num_actions, 1.0)(x)
        return _dueling(_dense(1, 1.0)(x)[..., 0], _dense(self.num_actions, 1.0)(x))


class CandidateQNetwork(nn.Module):
    """Q-value of showing each candidate item: (..., num_candidates).

    The context is `_history_context`'s, as in `CandidateActorCritic`; a candidate's
    score is a two-hidden-layer MLP of `[candidate, context]` plus a bilinear term, so the
    scores are permutation-equivariant over candidates. With `dueling`, the scores are
    advantages and a state value from the context and the mean candidate is added by `_dueling`.
    """

    hidden_size: int = 32
    dueling: bool = False

    @nn.compact
    def __call__(self, obs):
        h = self.hidden_size
        candidates, context = obs["candidates"], _history_context(obs, h)

        cand = _dense(h)(candidates)
        x = nn.relu(cand + _dense(h)(context)[..., None, :])
        x = nn.relu(_dense(h)(x))
        bilinear = jnp.sum(_dense(h, 1.0)(candidates) * _dense(h, 0.1)(context)[..., None, :], axis=-1)
        scores = _dense(1, 1.0)(x)[..., 0] + bilinear
        if not self.dueling:
            return scores
        value_in = jnp.concatenate([context, jnp.mean(nn.relu(cand), axis=-2)], axis=-1)
        return _dueling(MLP((h, 1))(value_in)[..., 0], scores)


def make_q_network(observation_space, num_actions: int, hidden_size: int = 64,
                   dueling: bool = False, network: str = "default") -> nn.Module:
    """The Q-network for an env's observation space, mapping an observation to Q-values of
    shape (..., num_actions): per-candidate scorer for a Dict with "candidates" (and
    "history", "time"), MLP for a Box; anything else is a ValueError. `network` is one of
    `NETWORKS`: "transformer-<preset>" gives a `TransformerQNetwork` instead."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; valid: {list(NETWORKS)}")
    if network != "default":
        torso = make_transformer_actor_critic(observation_space, network.removeprefix("transformer-"))
        return TransformerQNetwork(torso=torso, dueling=dueling)
    if isinstance(observation_space, spaces.Dict) and "candidates" in observation_space.spaces:
        missing = {"history", "time"} - set(observation_space.spaces)
        if missing:
            raise ValueError(f"candidate observations need keys 'candidates', 'history', 'time'; "
                             f"missing {sorted(missing)}")
        return CandidateQNetwork(hidden_size=hidden_size, dueling=dueling)
    if isinstance(observation_space, spaces.Box):
        return MLPQNetwork(num_actions=num_actions, obs_ndim=len(observation_space.shape),
                           hidden_size=hidden_size, dueling=dueling)
    raise ValueError(f"no Q-network for observation space {observation_space!r}; supported: "
                     "Box (MLP) or Dict with 'candidates', 'history', 'time' (candidate scorer)")




class TransformerBlock(nn.Module):
    """Pre-LayerNorm encoder block: masked multi-head self-attention, then a GELU MLP, each
    added to the residual stream."""

    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x, mask):
        y = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(self.num_heads)(y, y, mask=mask)
        y = nn.LayerNorm()(x)
        return x + nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(self.mlp_dim)(y)))


class TransformerActorCritic(nn.Module):
    """A Transformer encoder over a shopper's click history and the candidate items.

    Tokens: one summary token (learned, plus a projection of the time), one per history row
    (its item features and purchased flag, a learned position embedding and a feedback
    token-type embedding: clicked or purchased) and one per candidate (its features and the
    candidate token type, no position, so logits are permutation-equivariant over
    candidates). Empty history slots are masked out as attention keys, so their contents
    never reach the outputs. Logits are a linear head on each candidate's final token, the
    value an MLP on the summary token. The final candidate tokens are sown as
    `intermediates/candidate_tokens` for auxiliary heads (`learners.pretrain`).
    """

    num_layers: int = 1
    num_heads: int = 2
    model_dim: int = 32
    mlp_dim: int = 64

    @nn.compact
    def __call__(self, obs):
        d = self.model_dim
        candidates, history = obs["candidates"], obs["history"]
        batch, hist_len = history.shape[:-2], history.shape[-2]
        valid = history[..., -1] > 0.5
        token_type = nn.Embed(3, d, name="token_type")  # 0 candidate, 1 clicked, 2 purchased
        position = self.param("position", nn.initializers.normal(0.02), (hist_len, d))
        hist_tokens = (nn.Dense(d)(history[..., :-1]) + position
                       + token_type(1 + (history[..., -2] > 0.5).astype(jnp.int32)))
        cand_type = jnp.zeros(candidates.shape[:-1], jnp.int32)
        cand_tokens = nn.Dense(d)(candidates) + token_type(cand_type)
        summary = (self.param("summary", nn.initializers.normal(0.02), (d,))
                   + nn.Dense(d)(obs["time"]))
        x = jnp.concatenate([summary[..., None, :], hist_tokens, cand_tokens], axis=-2)
        keep = jnp.concatenate([jnp.ones(batch + (1,), bool), valid,
                                jnp.ones(candidates.shape[:-1], bool)], axis=-1)
        mask = jnp.broadcast_to(keep[..., None, None, :], batch + (1, x.shape[-2], x.shape[-2]))
        for _ in range(self.num_layers):
            x = TransformerBlock(self.num_heads, self.mlp_dim)(x, mask)
        x = nn.LayerNorm()(x)
        cand_out = x[..., 1 + hist_len:, :]
        if not self.is_initializing():  # keep init's variables to the params
            self.sow("intermediates", "candidate_tokens", cand_out)
        logits = _dense(1, 0.01)(cand_out)[..., 0]
        value = MLP((d, 1))(x[..., 0, :])[..., 0]
        return logits, value


def make_transformer_actor_critic(observation_space, preset: str = "tiny") -> TransformerActorCritic:
    """The `TransformerActorCritic` of size `preset` (a key of `TRANSFORMER_PRESETS`) for a Dict
    observation with "candidates", "history" and "time"; anything else is a ValueError."""
    if preset not in TRANSFORMER_PRESETS:
        raise ValueError(f"unknown transformer preset {preset!r}; valid: {list(TRANSFORMER_PRESETS)}")
    if not (isinstance(observation_space, spaces.Dict)
            and {"candidates", "history", "time"} <= set(observation_space.spaces)):
        raise ValueError(f"the transformer needs a Dict observation with 'candidates', 'history', "
                         f"'time', got {observation_space!r}")
    return TransformerActorCritic(**TRANSFORMER_PRESETS[preset])


class TransformerQNetwork(nn.Module):
    """Q-values over candidates with a `TransformerActorCritic` as torso: each candidate's
    score (its logit head) is its Q-value, or with `dueling` its advantage, added to the
    summary token's value by `_dueling`. The torso's params sit under "torso": params
    pre-trained for the actor-critic (`learners.pretrain`) can be placed there as they are."""

    torso: TransformerActorCritic
    dueling: bool = False

    @nn.compact
    def __call__(self, obs):
        scores, value = self.torso(obs)
        return _dueling(value, scores) if self.dueling else scores
