"""ecomrl_jax.spaces: Slate (an ordered slate of distinct candidate indices) and shown_slots."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from gymnax.environments import spaces

from ecomrl_jax.spaces import SEQUENTIAL_SLATE_MAX, Slate, shown_slots


def test_attributes():
    s = Slate(10, 3)
    assert isinstance(s, spaces.Space)
    assert (s.n, s.slate_size, s.shape, s.dtype) == (10, 3, (3,), jnp.int32)
    assert repr(s) == "Slate(num_candidates=10, slate_size=3)"


@pytest.mark.parametrize("n, k", [(10, 3), (5, 5), (1, 1), (12, SEQUENTIAL_SLATE_MAX + 1)])
def test_sample_gives_distinct_in_range_indices(n, k):
    space = Slate(n, k)
    samples = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.key(0), 2000)))
    assert samples.shape == (2000, k) and samples.dtype == np.int32
    assert samples.min() >= 0 and samples.max() < n
    assert all(len(set(row)) == k for row in samples.tolist())
    # every index appears in every position about equally often (uniform random slate)
    for pos in range(k):
        counts = np.bincount(samples[:, pos], minlength=n)
        assert np.all(np.abs(counts - 2000 / n) < 5 * np.sqrt(2000 / n))


@pytest.mark.parametrize("n, k", [(6, 3), (5, 5), (200, 2)])
def test_sample_is_uniform_over_ordered_slates(n, k):
    """Chi-square goodness of fit to the uniform distribution over the n! / (n - k)! ordered
    slates (for n = 200, over each slot's candidate and the pair's order), as the random
    permutation it replaced drew them."""
    samples = np.asarray(jax.jit(jax.vmap(Slate(n, k).sample))(
        jax.random.split(jax.random.key(0), 60_000)))
    if n == 200:
        counts = [np.bincount(samples[:, 0], minlength=n), np.bincount(samples[:, 1], minlength=n),
                  np.bincount(samples[:, 0] < samples[:, 1], minlength=2)]
    else:
        index = np.ravel_multi_index(samples.T, (n,) * k)
        counts = [np.unique(index, return_counts=True)[1]]
        assert counts[0].size == np.prod(np.arange(n - k + 1, n + 1))  # every slate occurs
    for c in counts:
        assert scipy.stats.chisquare(c).pvalue > 1e-3


def test_sample_is_deterministic_per_key_and_varies_across_keys():
    space = Slate(10, 4)
    a = space.sample(jax.random.key(1))
    np.testing.assert_array_equal(a, space.sample(jax.random.key(1)))
    others = {tuple(np.asarray(space.sample(jax.random.key(s))).tolist()) for s in range(20)}
    assert len(others) > 15
    assert bool(space.contains(a))


def test_sample_under_jit():
    space = Slate(6, 2)
    x = jax.jit(space.sample)(jax.random.key(3))
    assert x.shape == (2,) and bool(jax.jit(space.contains)(x))


@pytest.mark.parametrize("x, ok", [
    ([0, 1, 2], True),
    ([4, 0, 2], True),
    ([0, 0, 1], False),    # duplicate
    ([3, 1, 3], False),    # duplicate, not adjacent
    ([2, 2, 2], False),
    ([-1, 0, 1], False),   # below range
    ([0, 1, 5], False),    # at num_candidates
    ([0, 1, 99], False),
    ([0, 1], False),       # too short
    ([0, 1, 2, 3], False),  # too long
])
def test_contains(x, ok):
    space = Slate(5, 3)
    result = space.contains(jnp.array(x, jnp.int32))
    assert result.shape == () and bool(result) is ok
    assert bool(jax.jit(space.contains)(jnp.array(x, jnp.int32))) is ok


@pytest.mark.parametrize("n, k", [(3, 4), (3, 0), (0, 0), (5, -1), (-2, 1)])
def test_bad_construction_raises(n, k):
    with pytest.raises(ValueError, match=r"Slate\.(slate_size|num_candidates) must be"):
        Slate(n, k)


@pytest.mark.parametrize("n, k", [(5, 2.5), (5.0, 2), (True, 1), (5, np.True_)])
def test_non_integer_sizes_raise(n, k):
    with pytest.raises(ValueError, match="must be an int"):
        Slate(n, k)


def test_numpy_integer_sizes_are_accepted():
    space = Slate(np.int64(5), np.int32(2))
    assert space.n == 5 and space.shape == (2,)


@pytest.mark.parametrize("x", [jnp.array([[0, 1, 2]], jnp.int32), jnp.array([0.5, 1.5, 2.5])])
def test_contains_rejects_wrong_shape_and_dtype(x):
    assert not bool(Slate(5, 3).contains(x))


def test_shown_slots_empties_out_of_range_and_repeated_slots():
    slots, shown, num_invalid = shown_slots(jnp.asarray([2, -1, 2, 4, 0, 5]), 5)
    np.testing.assert_array_equal(shown, [True, False, False, True, True, False])
    np.testing.assert_array_equal(slots, [2, 0, 0, 4, 0, 0])
    assert num_invalid.dtype == jnp.float32 and float(num_invalid) == 3.0
    slots, shown, num_invalid = shown_slots(jnp.int32(3), 5)  # a Discrete action
    assert slots.shape == (1,) and bool(shown[0]) and float(num_invalid) == 0.0
