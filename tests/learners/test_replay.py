"""The replay buffer (ecomrl_jax/learners/replay.py): insert, wrap-around, window sampling, vmap."""

import jax
import jax.numpy as jnp
import numpy as np

from ecomrl_jax.learners import replay


def test_replay_buffer_insert_wrap_and_sample():
    row = {"x": jnp.zeros((2,), jnp.int32), "y": jnp.zeros((2, 3), jnp.float32)}
    buffer = replay.buffer_init(row, capacity=4)
    add = jax.jit(replay.buffer_add)
    for t in range(6):  # env e at step t holds x = 10 t + e
        buffer = add(buffer, {"x": 10 * t + jnp.arange(2, dtype=jnp.int32),
                              "y": jnp.full((2, 3), float(t))})
        assert int(buffer.size) == min(t + 1, 4) and int(buffer.position) == (t + 1) % 4
    # steps 4 and 5 overwrote rows 0 and 1 of steps 0 and 1
    np.testing.assert_array_equal(buffer.data["x"][:, 0], [40, 50, 20, 30])

    sample = jax.jit(replay.buffer_sample, static_argnums=(2, 3))
    windows = sample(buffer, jax.random.key(0), 3000, 2)
    x, y = np.asarray(windows["x"]), np.asarray(windows["y"])
    assert x.shape == (3000, 2) and y.shape == (3000, 2, 3)
    steps, envs = x // 10, x % 10
    np.testing.assert_array_equal(steps[:, 1], steps[:, 0] + 1)  # consecutive, oldest first
    np.testing.assert_array_equal(envs[:, 1], envs[:, 0])  # one env per window
    np.testing.assert_array_equal(y[..., 0], steps)
    # uniform over the 3 stored starts (steps 2, 3, 4) and 2 envs; nothing across the wrap seam
    counts = np.bincount((steps[:, 0] - 2) * 2 + envs[:, 0], minlength=6)
    assert counts.size == 6
    np.testing.assert_allclose(counts / 3000, 1 / 6, atol=0.03)
    # vmapped over independent buffers
    batched = jax.vmap(replay.buffer_add)(jax.tree.map(lambda a: jnp.stack([a, a]), buffer),
                                       jax.tree.map(lambda a: jnp.stack([a, a + 1]), row))
    np.testing.assert_array_equal(batched.data["x"][:, 2, 1], [0, 1])
