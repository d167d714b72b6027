"""Target functions (ecomrl_jax/learners/targets.py) against hand and numpy computations,
eagerly, under `jit` and under `vmap`. Their truncation rule is shown to matter in
test_truncation.py."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.learners import targets


def _check(fn, args, expected, in_axes):
    """`fn(*args)` batched by `in_axes` equals `expected` row by row eagerly and under jit,
    and all at once under vmap (a tuple result compares each part)."""
    jitted = jax.jit(fn)
    for i, value in enumerate(expected):
        row = [a[i] if axis == 0 else a for a, axis in zip(args, in_axes)]
        np.testing.assert_allclose(fn(*row), value, rtol=1e-6)
        np.testing.assert_allclose(jitted(*row), value, rtol=1e-6)
    batched = jax.vmap(fn, in_axes=in_axes)(*args)
    np.testing.assert_allclose(np.stack(batched, -1) if isinstance(batched, tuple) else batched,
                               expected, rtol=1e-6)


def test_action_value_and_greedy_action():
    q = jnp.array([0.5, 2.0, -1.0, 1.0])
    assert float(targets.action_value(q, jnp.int32(1))) == 2.0
    assert float(targets.action_value(q, jnp.array([3, 0]))) == 0.75
    assert targets.greedy_action(q).tolist() == 1 and targets.greedy_action(q, 3).tolist() == [1, 3, 0]
    assert float(targets.max_value(q)) == 2.0 and float(targets.max_value(q, 2)) == 1.5


@pytest.mark.parametrize("slate_size, expected", [
    (0, [1.0 + 0.9 * 3.0, -2.0 + 0.5 * 4.0]),  # max
    (2, [1.0 + 0.9 * 2.5, -2.0 + 0.5 * 2.0]),  # mean of the top 2
])
def test_td_target_hand_computed(slate_size, expected):
    args = (jnp.array([1.0, -2.0]), jnp.array([0.9, 0.5]), jnp.array([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]))
    _check(lambda r, d, q: targets.td_target(r, d, q, slate_size), args, expected, (0, 0, 0))


@pytest.mark.parametrize("slate_size, expected", [
    (0, [1.0 + 0.9 * 0.0, 0.5 + 0.5 * 2.0]),  # online argmax 1 and 0, valued by the target net
    (2, [1.0 + 0.9 * 0.5, 0.5 + 0.5 * 4.0]),  # online top 2 {1, 2} and {0, 1}
])
def test_double_dqn_target_hand_computed(slate_size, expected):
    args = (jnp.array([1.0, 0.5]), jnp.array([0.9, 0.5]),
            jnp.array([[1.0, 3.0, 2.0], [4.0, 3.0, 2.0]]), jnp.array([[5.0, 0.0, 1.0], [2.0, 6.0, 1.0]]))
    _check(lambda r, d, qo, qt: targets.double_dqn_target(r, d, qo, qt, slate_size), args, expected,
           (0, 0, 0, 0))


def test_n_step_return_hand_computed():
    """gamma 0.5, rewards 1, 2, 3: (reward sum, bootstrap discount) for no episode end, a
    termination at step 1, a truncation at step 1, and a termination at step 0."""
    rewards = jnp.array([[1.0, 2.0, 3.0]] * 4)
    terminated = jnp.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]], bool)
    done = jnp.array([[0, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 1]], bool)
    expected = [(1.0 + 0.5 * 2.0 + 0.25 * 3.0, 0.125),  # bootstrap after 3 steps
                (1.0 + 0.5 * 2.0, 0.0),  # terminated at step 1: later reward, bootstrap dropped
                (1.0 + 0.5 * 2.0, 0.25),  # truncated at step 1: bootstrap from its final obs
                (1.0, 0.0)]
    _check(lambda r, t, d: targets.n_step_return(r, t, d, 0.5), (rewards, terminated, done),
           expected, (0, 0, 0))
    assert [int(targets.first_done(d)) for d in done] == [2, 1, 1, 0]
    total, discount = targets.n_step_return(jnp.array([4.0]), jnp.array([False]), jnp.array([False]), 0.9)
    np.testing.assert_allclose(total + discount * 2.0, 5.8, rtol=1e-6)


def _numpy_gae(rewards, values, next_values, terminated, done, gamma, lam):
    advantages, running = np.zeros_like(rewards), np.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]
        running = delta + gamma * lam * (1 - done[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def test_gae_matches_numpy_on_random_trajectories_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    T, B = 7, 5
    rewards, values, next_values = (rng.normal(size=(T, B)).astype(np.float32) for _ in range(3))
    done = rng.random((T, B)) < 0.3
    terminated = done & (rng.random((T, B)) < 0.5)
    args = tuple(map(jnp.asarray, (rewards, values, next_values, terminated, done)))
    expected = _numpy_gae(rewards, values, next_values, terminated, done, 0.9, 0.8)
    for fn in (targets.gae, jax.jit(targets.gae)):
        for got, want in zip(fn(*args, 0.9, 0.8), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # vmap over the env axis (each column a trajectory) and over a grid of lambdas
    per_env = jax.vmap(lambda *a: targets.gae(*a, 0.9, 0.8), in_axes=1, out_axes=1)(*args)
    np.testing.assert_allclose(per_env[0], expected[0], rtol=1e-5, atol=1e-6)
    grid = jax.vmap(lambda lam: targets.gae(*args, 0.9, lam)[0])(jnp.array([0.8, 1.0]))
    np.testing.assert_allclose(grid[1], _numpy_gae(rewards, values, next_values, terminated, done,
                                                   0.9, 1.0)[0], rtol=1e-5, atol=1e-6)


def test_gae_lambda_one_gives_returns_to_go_bootstrapped_at_the_rollout_end():
    """One env, 5 steps, an episode terminating at step 1: steps 0-1 get their episode's
    discounted return, steps 2-4 the rewards to the rollout end plus the discounted value there."""
    gamma, last_value = 0.9, 10.0
    reward = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    done = jnp.array([False, True, False, False, False])
    value = jnp.array([0.5, -1.0, 2.0, 0.0, 3.0])
    next_value = jnp.array([-1.0, 7.0, 0.0, 3.0, last_value])  # 7.0: ignored, terminated
    advantages, returns = targets.gae(reward, value, next_value, done, done, gamma, 1.0)
    expected = [1 + gamma * 2, 2, 3 + gamma * 4 + gamma**2 * 5 + gamma**3 * last_value,
                4 + gamma * 5 + gamma**2 * last_value, 5 + gamma * last_value]
    np.testing.assert_allclose(returns, expected, rtol=1e-6)
    np.testing.assert_allclose(advantages, np.asarray(expected) - value, rtol=1e-6)


def test_shape_and_dtype_assertions():
    with pytest.raises(AssertionError):  # done must be bool
        targets.gae(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), 0.9, 0.9)
    with pytest.raises(AssertionError):  # shapes differ
        targets.gae(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3), jnp.zeros(3, bool), jnp.zeros(3, bool),
                    0.9, 0.9)
    with pytest.raises(AssertionError):  # a batch where one window is expected
        targets.n_step_return(jnp.zeros((2, 3)), jnp.zeros((2, 3), bool), jnp.zeros((2, 3), bool), 0.9)
    with pytest.raises(AssertionError):
        targets.td_target(jnp.zeros(2), jnp.zeros(2), jnp.zeros((2, 3)))
    chex.assert_type(targets.greedy_action(jnp.zeros(3)), jnp.int32)
