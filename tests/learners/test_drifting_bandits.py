"""Bandit algorithms for drifting rewards (ecomrl_jax/learners/bandits.py): sliding-window UCB,
discounted UCB, discounted Thompson sampling, on a Bernoulli bandit under `wrappers.Drift`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.learners.bandits import (UCB1, DiscountedStats, DiscountedThompson,
                                       DiscountedUCB, SlidingWindowUCB, WindowState, make_run)
from ecomrl_jax.wrappers import Drift, DriftParams, DriftSchedule

CHANGE, ROUNDS, RUNS = 1000, 2000, 8


def falling_best_arm():
    """Two arms; at round CHANGE the best one falls from 0.9 to 0.1 and the other (0.5) is best."""
    inner, base = ecomrl_jax.make("BernoulliBandit-v0", num_arms=2)
    base = base.replace(means=jnp.array([0.9, 0.5], jnp.float32))
    params = DriftParams(base, base.replace(means=jnp.array([0.1, 0.5], jnp.float32)),
                         DriftSchedule(start=float(CHANGE)))
    return Drift(inner), params


def regret_after_change(algo) -> float:
    env, params = falling_best_arm()
    run = make_run(algo, env, params, ROUNDS)
    _, metrics = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), RUNS))
    return float(np.mean(np.sum(metrics["regret"][:, CHANGE:], axis=1)))


@pytest.fixture(scope="module")
def ucb1_regret():
    return regret_after_change(UCB1(c=0.5))


@pytest.mark.parametrize("algo", [SlidingWindowUCB(), DiscountedUCB(), DiscountedThompson()],
                         ids=lambda a: type(a).__name__)
def test_adapts_after_an_abrupt_change_where_ucb1_does_not(algo, ucb1_regret):
    """After the fall plain UCB1 keeps pulling the old best arm for hundreds of rounds (its mean,
    over a thousand pulls, sinks slowly); the forgetting algorithms switch within about their
    memory (a few hundred rounds)."""
    regret = regret_after_change(algo)
    assert ucb1_regret > 200.0  # regret 0.4 per round for over 500 rounds
    assert regret < 0.4 * ucb1_regret, (regret, ucb1_regret)


def test_sliding_window_statistics_forget_rounds_older_than_the_window():
    algo = SlidingWindowUCB(c=1.0, window=3)
    state = algo.init(*falling_best_arm())
    for arm, reward in [(0, 1.0), (0, 0.0), (1, 1.0), (1, 0.0)]:  # the first pull drops out
        state = algo.update(state, None, arm, None, reward)
    counts, sums = state.stats(2)
    np.testing.assert_array_equal(counts, [1.0, 2.0])
    np.testing.assert_array_equal(sums, [0.0, 1.0])
    bonus = np.sqrt(2.0 * np.log(3.0) / np.array([1.0, 2.0]))  # scale 1 (Bernoulli rewards)
    np.testing.assert_allclose(algo.index(state, 2), [0.0, 0.5] + bonus, rtol=1e-6)
    assert isinstance(state, WindowState) and int(state.t) == 4


def test_discounted_statistics_decay_every_arm():
    algo = DiscountedUCB(c=1.0, gamma=0.5)
    state = algo.init(*falling_best_arm())
    for arm, reward in [(0, 1.0), (1, 1.0), (1, 0.0)]:
        state = algo.update(state, None, arm, None, reward)
    assert isinstance(state, DiscountedStats)
    np.testing.assert_allclose(state.counts, [0.25, 1.5])
    np.testing.assert_allclose(state.sums, [0.25, 0.5])
    bonus = np.sqrt(2.0 * np.log(1.75) / np.array([0.25, 1.5]))
    np.testing.assert_allclose(algo.index(state), np.array([1.0, 1.0 / 3.0]) + bonus, rtol=1e-6)


def test_discounted_thompson_counts_decay_and_the_prior_stays():
    algo = DiscountedThompson(gamma=0.5, prior_alpha=2.0, prior_beta=3.0)
    state = algo.init(*falling_best_arm())
    for reward in (1.0, 1.0, 0.0):
        state = algo.update(state, jax.random.key(0), 0, None, reward)
    np.testing.assert_allclose(state.alpha, [0.75, 0.0])
    np.testing.assert_allclose(state.beta, [1.0, 0.0])
    # with the decayed counts near zero, draws follow the prior Beta(2, 3): mean 0.4
    state = state.replace(alpha=jnp.zeros(2), beta=jnp.zeros(2))
    keys = jax.random.split(jax.random.key(1), 4000)
    arms = jax.vmap(lambda k: algo.select(state, k, None))(keys)
    assert abs(float(np.mean(arms)) - 0.5) < 0.05


@pytest.mark.parametrize("algo, match", [
    (SlidingWindowUCB(window=0), "window must be an int >= 1"),
    (DiscountedUCB(gamma=1.0), "gamma must be in \\(0, 1\\)"),
    (DiscountedThompson(gamma=0.0), "gamma must be in \\(0, 1\\)"),
    (SlidingWindowUCB(c=-1.0), "c must be >= 0"),
])
def test_bad_configs_are_refused(algo, match):
    env, params = falling_best_arm()
    with pytest.raises(ValueError, match=match):
        make_run(algo, env, params, 10)


def test_unbounded_rewards_are_refused():
    env, params = ecomrl_jax.make("GaussianBandit-v0")
    for algo in (SlidingWindowUCB(), DiscountedUCB(), DiscountedThompson()):
        with pytest.raises(ValueError, match="needs bounded rewards"):
            make_run(algo, env, params, 10)
