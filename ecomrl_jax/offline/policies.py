"""Evaluation policies for off-policy estimation, as action distributions `(n, num_actions, len_list)`.

Uniform random; Bernoulli Thompson sampling with ZOZOTOWN's prior, as obp 0.4.1 defines it
(`BernoulliTS(is_zozotown_prior=True, campaign=...)`: the Beta(alpha, beta) per item that the
production policy started the OBD collection period with; a slate is the `len_list` items with the
largest Beta draws, best first), its distribution estimated by simulation in JAX; and
`simulate_action_dist`, which turns any policy of this project (`policy_fn(key, obs, env_state,
env_params) -> action`) into a per-row distribution by sampling it at each logged context.
"""

import jax
import jax.numpy as jnp
import numpy as np

# obp 0.4.1 obp/policy/conf/prior_bts.yaml (Apache 2.0, (c) Yuta Saito, Yusuke Narita and ZOZO)
ZOZOTOWN_BTS_PRIOR = {  # campaign: (alpha, beta), one per item
    "all": (
        (47, 8, 62, 142, 3, 14, 7, 857, 12, 15, 6, 100, 48, 23, 71, 61, 13, 16, 518, 30, 7, 4, 23,
         8, 10, 11, 11, 18, 121, 11, 11, 10, 14, 9, 204, 58, 3, 19, 42, 1013, 2, 328, 15, 31, 14,
         138, 45, 55, 23, 38, 10, 401, 52, 6, 3, 6, 5, 32, 35, 133, 52, 820, 43, 195, 8, 42, 40, 4,
         32, 30, 9, 22, 6, 23, 5, 54, 8, 22, 65, 246),
        (12198, 3566, 15993, 35522, 2367, 4609, 3171, 181745, 4372, 4951, 3100, 24665, 13210, 7061,
         18061, 17449, 5644, 6787, 111326, 8776, 3334, 2271, 7389, 2659, 3665, 4724, 3561, 5085,
         27407, 4601, 4756, 4120, 4736, 3788, 45292, 14719, 2189, 5589, 11995, 222255, 2308, 70034,
         4801, 8274, 5421, 31912, 12213, 13576, 6230, 10382, 4141, 85731, 12811, 2707, 2250, 2668,
         2886, 9581, 9465, 28336, 12062, 162793, 12107, 41240, 3162, 11604, 10818, 2923, 8897,
         8654, 4000, 6580, 3174, 6766, 2602, 14506, 3968, 7523, 16532, 51964),
    ),
    "men": (
        (47, 8, 62, 142, 3, 6, 100, 48, 23, 71, 61, 13, 16, 518, 30, 7, 4, 23, 8, 10, 11, 11, 18,
         121, 11, 4, 32, 30, 9, 22, 6, 23, 5, 54),
        (12198, 3566, 15993, 35522, 2367, 3100, 24665, 13210, 7061, 18061, 17449, 5644, 6787,
         111326, 8776, 3334, 2271, 7389, 2659, 3665, 4724, 3561, 5085, 27407, 4601, 2923, 8897,
         8654, 4000, 6580, 3174, 6766, 2602, 14506),
    ),
    "women": (
        (12, 7, 984, 13, 15, 15, 11, 14, 9, 200, 72, 3, 14, 49, 1278, 3, 325, 14, 27, 14, 169, 48,
         47, 18, 40, 12, 447, 46, 5, 3, 5, 7, 35, 34, 99, 30, 880, 51, 182, 6, 45, 39, 10, 24, 72,
         229),
        (3612, 3173, 204484, 4517, 4765, 5331, 4131, 4728, 4028, 44280, 17918, 2309, 4339, 12922,
         270771, 2480, 68475, 5129, 7367, 5819, 38026, 13047, 11604, 5394, 10912, 4439, 94485,
         10700, 2679, 2319, 2578, 3288, 9566, 9775, 20120, 7317, 172026, 13673, 37329, 3365, 10911,
         10734, 4278, 7574, 16826, 47462),
    ),
}


def uniform_action_dist(n: int, num_actions: int, len_list: int = 1) -> jax.Array:
    """Each item with probability 1 / num_actions at every position (obp's `Random` policy)."""
    return jnp.full((n, num_actions, len_list), 1.0 / num_actions, jnp.float32)


def zozotown_prior(campaign: str = "all") -> tuple[jax.Array, jax.Array]:
    """(alpha, beta) of ZOZOTOWN's Bernoulli TS prior for `campaign`, one entry per item."""
    if campaign not in ZOZOTOWN_BTS_PRIOR:
        raise ValueError(f"campaign must be one of {list(ZOZOTOWN_BTS_PRIOR)}, got {campaign!r}")
    alpha, beta = ZOZOTOWN_BTS_PRIOR[campaign]
    return jnp.array(alpha, jnp.float32), jnp.array(beta, jnp.float32)


def bts_slate(key: jax.Array, alpha: jax.Array, beta: jax.Array, len_list: int) -> jax.Array:
    """(len_list,) one Bernoulli TS slate: the items with the largest Beta(alpha, beta) draws, best first."""
    return jax.lax.top_k(jax.random.beta(key, alpha, beta), len_list)[1].astype(jnp.int32)


def bts_action_dist(key: jax.Array, alpha: jax.Array, beta: jax.Array, len_list: int,
                    num_samples: int = 100_000, chunk: int = 10_000) -> jax.Array:
    """(num_actions, len_list) frequency of each item at each position over `num_samples` simulated
    slates (obp's `compute_batch_action_dist`; its standard error is sqrt(p (1 - p) / num_samples)).
    Broadcast it to (n, num_actions, len_list) for the estimators: the policy ignores the context."""
    if num_samples < 1 or num_samples % min(chunk, num_samples):
        raise ValueError(f"num_samples must be a positive multiple of chunk={chunk} (or below it), "
                         f"got {num_samples}")
    chunk = min(chunk, num_samples)
    num_actions = alpha.shape[0]

    def count(total, chunk_key):
        slates = jax.vmap(bts_slate, in_axes=(0, None, None, None))(
            jax.random.split(chunk_key, chunk), alpha, beta, len_list)
        return total + jax.nn.one_hot(slates, num_actions).sum(axis=0).T, None

    counts, _ = jax.lax.scan(count, jnp.zeros((num_actions, len_list)),
                             jax.random.split(key, num_samples // chunk))
    return counts / num_samples


def simulate_action_dist(policy_fn, key: jax.Array, context: jax.Array, num_actions: int, len_list: int = 1,
                         num_samples: int = 1000, env_params=None) -> jax.Array:
    """(n, num_actions, len_list) frequency of each item at each position in `num_samples` actions of
    `policy_fn(key, context[i], None, env_params)` per row; a scalar action counts as position 0
    (len_list 1), a slate `(len_list,)` position by position. Policies that read the env state
    cannot be replayed on logged contexts."""
    def one_row(row_key, obs):
        actions = jax.vmap(lambda k: policy_fn(k, obs, None, env_params))(jax.random.split(row_key, num_samples))
        slates = jnp.reshape(actions, (num_samples, -1))
        if slates.shape[1] != len_list:
            raise ValueError(f"policy_fn returns {slates.shape[1]} item(s) per action, expected len_list={len_list}")
        return jax.nn.one_hot(slates, num_actions).mean(axis=0).T

    keys = jax.random.split(key, context.shape[0])
    batch = max(1, 2 ** 22 // (num_samples * num_actions * len_list))
    return jax.lax.map(lambda args: one_row(*args), (keys, context), batch_size=min(batch, context.shape[0]))
