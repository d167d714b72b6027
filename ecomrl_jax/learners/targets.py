"""Learning targets as small pure functions (rlax style), shared by the learners.

Unbatched where a batch is natural to `vmap` (one window, one row of Q-values), time-major
where the computation runs along a trajectory (GAE). `chex` asserts check ranks and dtypes
at trace time, so a misshaped call fails where it is made, not three functions later.

The truncation rule (DESIGN §4): a trajectory is cut at `done = terminated | truncated`, but
only `terminated` zeroes the bootstrap; a truncated step bootstraps from the value of its
final (pre-reset) observation, since a time limit the observation does not show is not an
end of the MDP.
"""

import chex
import jax
import jax.numpy as jnp


def greedy_action(q: jax.Array, slate_size: int = 0) -> jax.Array:
    """argmax of `q` (..., C) for slate_size 0 (a Discrete action), else the top-k slate, best first."""
    if slate_size == 0:
        return jnp.argmax(q, axis=-1).astype(jnp.int32)
    return jax.lax.top_k(q, slate_size)[1].astype(jnp.int32)


def action_value(q: jax.Array, action: jax.Array) -> jax.Array:
    """Q(s, a) = q[a] for a scalar action; for a slate (k,) the mean of its items' q."""
    chex.assert_rank(q, 1)
    chex.assert_type(action, int)
    slate = jnp.atleast_1d(action)
    return jnp.mean(jnp.take_along_axis(q, slate, axis=-1), axis=-1)


def max_value(q: jax.Array, slate_size: int = 0) -> jax.Array:
    """max_a Q(s, a) of one row `q` (C,): the best item, or the mean of the top-k for slates."""
    return action_value(q, greedy_action(q, slate_size))


def td_target(reward, discount, next_q, slate_size: int = 0):
    """Q-learning target r + discount * max_a' Q(s', a'); for slates the max is the mean of
    the top-k `next_q`. `discount` is gamma^k times 0 where the episode terminated."""
    chex.assert_rank([reward, discount, next_q], [0, 0, 1])
    return reward + discount * max_value(next_q, slate_size)


def double_dqn_target(reward, discount, next_q_online, next_q_target, slate_size: int = 0):
    """Double DQN (van Hasselt et al. 2016): the online net picks the greedy action (slate)
    at s', the target net values it."""
    chex.assert_rank([reward, discount, next_q_online, next_q_target], [0, 0, 1, 1])
    chex.assert_equal_shape([next_q_online, next_q_target])
    return reward + discount * action_value(next_q_target, greedy_action(next_q_online, slate_size))


def first_done(done: jax.Array) -> jax.Array:
    """Index of the first True in `done` (n,), or n - 1 if there is none: the last step of an
    n-step window, whose final observation the window bootstraps from."""
    chex.assert_rank(done, 1)
    return jnp.where(jnp.any(done), jnp.argmax(done), done.shape[0] - 1).astype(jnp.int32)


def n_step_return(rewards, terminated, done, gamma):
    """`(reward sum, bootstrap discount)` of an n-step window (n,): sum_{j<=k} gamma^j r_j and
    gamma^(k+1) * (1 - terminated_k), with k = `first_done(done)`. The target is then
    `sum + discount * V(final observation of step k)`: a truncated step still bootstraps."""
    chex.assert_rank([rewards, terminated, done], 1)
    chex.assert_equal_shape([rewards, terminated, done])
    chex.assert_type([terminated, done], bool)
    k = first_done(done)
    steps = jnp.arange(rewards.shape[0])
    discounts = gamma ** steps.astype(jnp.float32)
    total = jnp.sum(jnp.where(steps <= k, discounts * rewards, 0.0))
    return total, gamma ** (k + 1).astype(jnp.float32) * (1.0 - terminated[k].astype(jnp.float32))


def gae(rewards, values, next_values, terminated, done, gamma, gae_lambda):
    """`(advantages, value targets)` by generalised advantage estimation over a time-major
    trajectory (T, ...). `next_values[t]` is the value of step t's final observation (the
    pre-reset one where the episode ended; the rollout's last observation at T - 1), used
    unless `terminated`; traces are cut at `done`. With `gae_lambda` 1 the targets are
    discounted returns to the episode end or the rollout end, bootstrapped there."""
    chex.assert_equal_shape([rewards, values, next_values, terminated, done])
    chex.assert_type([rewards, values, next_values], float)
    chex.assert_type([terminated, done], bool)
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values

    def body(advantage, x):
        delta, d = x
        advantage = delta + gamma * gae_lambda * (1.0 - d) * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(body, jnp.zeros_like(deltas[0]), (deltas, done.astype(deltas.dtype)),
                                 reverse=True)
    return advantages, advantages + values
