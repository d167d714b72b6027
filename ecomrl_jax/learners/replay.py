"""A replay buffer in device memory: a small time-major circular buffer (no extra dependency
such as flashbax; jittable and vmappable).

Each row holds one step of every env, so an n-step window is n consecutive rows of one env.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ReplayBuffer(NamedTuple):
    data: Any  # pytree; each leaf (capacity, num_envs, ...)
    position: jax.Array  # next row to write (int32)
    size: jax.Array  # rows filled so far, at most capacity (int32)


def buffer_init(row, capacity: int) -> ReplayBuffer:
    """An empty buffer of `capacity` rows shaped like `row` (leaves (num_envs, ...))."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + x.shape, x.dtype), row)
    return ReplayBuffer(data, jnp.int32(0), jnp.int32(0))


def buffer_add(buffer: ReplayBuffer, row) -> ReplayBuffer:
    """Write `row` at `position`, overwriting the oldest row once full."""
    capacity = jax.tree.leaves(buffer.data)[0].shape[0]
    data = jax.tree.map(lambda d, x: d.at[buffer.position].set(x), buffer.data, row)
    return ReplayBuffer(data, (buffer.position + 1) % capacity, jnp.minimum(buffer.size + 1, capacity))


def sample_windows(buffer: ReplayBuffer, key, batch_size: int, length: int):
    """Where `batch_size` windows of `length` consecutive rows of one env lie, uniform over the
    (start row, env) pairs whose window is stored: `(rows (batch_size, length), env
    (batch_size,))`. Gather only the fields and rows you need (`buffer_sample` takes all).
    Needs `buffer.size >= length`."""
    capacity, num_envs = jax.tree.leaves(buffer.data)[0].shape[:2]
    k_start, k_env = jax.random.split(key)
    start = jax.random.randint(k_start, (batch_size,), 0, buffer.size - length + 1)
    env = jax.random.randint(k_env, (batch_size, 1), 0, num_envs)
    rows = (buffer.position - buffer.size + start[:, None] + jnp.arange(length)) % capacity
    return rows, env[:, 0]


def buffer_sample(buffer: ReplayBuffer, key, batch_size: int, length: int):
    """`batch_size` windows of `length` consecutive rows of one env (`sample_windows`);
    leaves (batch_size, length, ...)."""
    rows, env = sample_windows(buffer, key, batch_size, length)
    return jax.tree.map(lambda d: d[rows, env[:, None]], buffer.data)
