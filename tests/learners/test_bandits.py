"""Bandit algorithms and the one-scan runner (ecomrl_jax/learners/bandits.py).

Statistics updates and indices are checked against numbers worked out by hand; selection
rules by their frequencies over many keys. Runs of the same algorithm class share one
compiled program (the config is a traced argument).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import struct

import ecomrl_jax
from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec
from ecomrl_jax.learners.bandits import (ArmStats, BernoulliThompson, BetaState, EpsilonGreedy,
                                       GaussianThompson, LinearState, LinearThompson, LinUCB,
                                       ScaledStats, Softmax, UCB1, lai_robbins_constant, make_run,
                                       sample_beta)

NUM_KEYS = 4000  # keys per selection-frequency check
NUM_ROUNDS = 2000  # rounds of every run
LEARN_RUNS = 32  # runs per algorithm in the learning test


def _env(env_id, **kwargs):
    return _make(env_id, tuple(sorted(kwargs.items())))


@functools.cache
def _make(env_id, kwargs):
    return ecomrl_jax.make(env_id, **dict(kwargs))


@functools.partial(jax.jit, static_argnames="num_arms")
def _freq(algo, state, contexts=None, num_arms=3):
    """Frequency of each arm chosen by `algo.select(state, key, contexts)` over NUM_KEYS keys;
    one compiled program per algorithm class (the config is traced)."""
    keys = jax.random.split(jax.random.key(0), NUM_KEYS)
    arms = jax.vmap(lambda k: algo.select(state, k, contexts))(keys)
    return jnp.bincount(arms, length=num_arms) / NUM_KEYS


def _stats(counts, means, sq_dev=(0.0, 0.0, 0.0)):
    return ArmStats(*(jnp.asarray(x, jnp.float32) for x in (counts, means, sq_dev)))


# --------------------------------------------------------------------------- statistics


def test_arm_stats_update_counts_mean_and_squared_deviation():
    stats = ArmStats.zeros(3)
    for arm, reward in ((0, 1.0), (2, 0.5), (0, 0.0), (0, 2.0), (2, 1.5)):
        stats = stats.update(jnp.int32(arm), jnp.float32(reward))
    np.testing.assert_array_equal(stats.counts, [3, 0, 2])
    np.testing.assert_allclose(stats.means, [1.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(stats.sq_dev, [2.0, 0.0, 0.5], rtol=1e-6)  # (0 + 1 + 1), (.25 + .25)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", {0: 0.5, 1000: 0.5}),
    ("linear", {0: 0.5, 50: 0.25, 95: 0.05, 100: 0.05}),
    ("exponential", {0: 0.5, 100: 0.5 * np.exp(-1.0), 1000: 0.05}),
    ("inverse", {0: 0.5, 99: 0.5, 199: 0.25, 3999: 0.05}),
])
def test_epsilon_schedules(schedule, expected):
    algo = EpsilonGreedy(epsilon=0.5, min_epsilon=0.05, decay_steps=100.0, schedule=schedule)
    for t, eps in expected.items():
        np.testing.assert_allclose(algo.epsilon_at(t), eps, rtol=1e-5)


def test_epsilon_greedy_selection():
    greedy, uniform = EpsilonGreedy(epsilon=0.0), EpsilonGreedy(epsilon=1.0)
    freq = lambda algo, state: np.asarray(_freq(algo, state))  # noqa: E731
    np.testing.assert_array_equal(freq(greedy, _stats([1, 0, 1], [0.9, 0.0, 0.2])), [0, 1, 0])
    np.testing.assert_array_equal(freq(greedy, _stats([1, 1, 1], [0.1, 0.9, 0.2])), [0, 1, 0])
    tie = freq(greedy, _stats([1, 1, 1], [0.5, 0.5, 0.1]))  # ties broken uniformly
    assert tie[2] == 0 and abs(tie[0] - 0.5) < 0.03
    np.testing.assert_allclose(freq(uniform, _stats([5, 5, 5], [0.1, 0.9, 0.2])), 1 / 3, atol=0.03)
    mixed = freq(EpsilonGreedy(epsilon=0.3), _stats([5, 5, 5], [0.1, 0.9, 0.2]))
    np.testing.assert_allclose(mixed, [0.1, 0.8, 0.1], atol=0.03)


def test_ucb1_index_hand_computed():
    stats = _stats([2, 1, 3], [0.5, 0.0, 1 / 3])  # t = 6: bonus sqrt(2 ln 6 / n)
    np.testing.assert_allclose(UCB1().index(ScaledStats(stats, jnp.float32(1.0))),
                               [1.838566, 1.893018, 1.426268], rtol=1e-5)
    # reward range 10 (pricing) and c = 0.5: bonus times 5
    np.testing.assert_allclose(UCB1(c=0.5).index(ScaledStats(stats, jnp.float32(10.0))),
                               [7.192831, 9.465092, 5.798007], rtol=1e-5)
    untried = UCB1().index(ScaledStats(_stats([2, 0, 3], [0.5, 0.0, 1 / 3]), jnp.float32(1.0)))
    assert np.isinf(untried[1]) and np.isfinite(untried[0]) and np.isfinite(untried[2])
    state = ScaledStats(stats, jnp.float32(1.0))
    np.testing.assert_array_equal(_freq(UCB1(), state), [0, 1, 0])


def test_softmax_selection_probabilities():
    algo = Softmax(temperature=0.1)
    freq = _freq(algo, _stats([1, 1, 1], [0.0, 0.1, 0.2]))
    np.testing.assert_allclose(freq, [0.090031, 0.244728, 0.665241], atol=0.025)  # softmax(0, 1, 2)
    untried_first = _freq(algo, _stats([1, 0, 0], [5.0, 0.0, 0.0]))
    assert untried_first[0] == 0 and abs(untried_first[1] - 0.5) < 0.03


def test_beta_thompson_posterior_update():
    algo = BernoulliThompson()
    env, params = _env("BernoulliBandit-v0", num_arms=3)
    state = algo.init(env, params)
    for arm, reward in ((0, 1.0), (0, 0.0), (2, 1.0)):
        state = algo.update(state, jax.random.key(arm), jnp.int32(arm), None, jnp.float32(reward))
    np.testing.assert_array_equal(state.alpha, [2, 1, 2])
    np.testing.assert_array_equal(state.beta, [2, 1, 1])
    # pricing: rewards in [0, 10] become Bernoulli trials with success probability reward / 10
    env, params = _env("PricingBandit-v0", num_arms=3)
    state = algo.init(env, params)
    assert float(state.low) == 0.0 and float(state.high) == 10.0
    update = jax.jit(jax.vmap(lambda k, r: algo.update(state, k, jnp.int32(1), None, r),
                              in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(1), NUM_KEYS)
    for reward, success in ((10.0, 1.0), (0.0, 0.0), (3.0, 0.3)):
        new = update(keys, jnp.float32(reward))
        np.testing.assert_array_equal(new.alpha[:, 0] + new.beta[:, 0], 2.0)  # other arms untouched
        np.testing.assert_array_equal(new.alpha[:, 1] + new.beta[:, 1], 3.0)  # one trial
        assert abs(float(new.alpha[:, 1].mean()) - 1.0 - success) < 0.025


def test_beta_thompson_selection_probability():
    # P(Beta(2, 1) > Beta(1, 2)) = integral of 2x * (2x - x^2) over [0, 1] = 5/6
    state = BetaState(alpha=jnp.float32([1, 2]), beta=jnp.float32([2, 1]), low=jnp.float32(0),
                      high=jnp.float32(1))
    freq = _freq(BernoulliThompson(), state, num_arms=2)
    assert abs(freq[1] - 5 / 6) < 0.025


# (a, b): both < 1, one tiny, equal, unequal, a Thompson posterior after ~1000 pulls, large
BETA_CASES = ((0.5, 0.5), (0.1, 3.0), (1.0, 1.0), (2.0, 5.0), (30.0, 970.0), (1000.0, 2e4))


@functools.partial(jax.jit, static_argnames="proposals")
def _beta_draws(key, proposals):
    """NUM_KEYS draws of each of BETA_CASES from `sample_beta` and from `jax.random.beta`."""
    a, b = (jnp.float32(x) for x in zip(*BETA_CASES))
    keys = jax.random.split(key, NUM_KEYS)
    ours = jax.vmap(lambda k: sample_beta(k, a, b, proposals))(keys)
    return ours, jax.vmap(lambda k: jax.random.beta(k, a, b))(keys)


@pytest.mark.parametrize("proposals", [3, 1])  # 1: about 5% of the draws go through the retry loop
def test_sample_beta_has_the_law_of_jax_random_beta(proposals):
    ours, reference = (np.asarray(x, np.float64) for x in _beta_draws(jax.random.key(0), proposals))
    for i, (a, b) in enumerate(BETA_CASES):
        x = ours[:, i]
        assert np.all((x >= 0) & (x <= 1))
        assert scipy.stats.ks_2samp(x, reference[:, i]).pvalue > 1e-3, (a, b)
        mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
        assert abs(x.mean() - mean) < 4 * np.sqrt(var / NUM_KEYS), (a, b)
        assert abs(x.var() / var - 1) < 0.1, (a, b)
    assert not np.array_equal(ours, np.asarray(_beta_draws(jax.random.key(1), proposals)[0]))


def test_sample_beta_extreme_parameters_stay_finite():
    a, b = jnp.float32([1e-3, 1e6, 3.0, 1e-3]), jnp.float32([2.0, 1e6, 1e-3, 1e-3])
    x = np.asarray(jax.vmap(lambda k: sample_beta(k, a, b))(jax.random.split(jax.random.key(2), 500)))
    assert np.all((x >= 0) & (x <= 1))
    assert np.median(x[:, 0]) < 1e-6 and np.median(x[:, 2]) > 1 - 1e-6  # mass at the ends
    assert abs(x[:, 1].mean() - 0.5) < 1e-3
    assert 0.4 < (x[:, 3] > 0.5).mean() < 0.6  # Beta(eps, eps): half near 0, half near 1


def test_gaussian_thompson_posterior_hand_computed():
    # arm 0: n = 4, mean 1, squared deviation 0.5 (rewards .5, 1.5, 1, 1); arm 1 untried
    stats = ArmStats(jnp.float32([4, 0]), jnp.float32([1, 0]), jnp.float32([0.5, 0]))
    known = GaussianThompson(prior_mean=0.0, prior_std=1.0, noise_std=0.5)
    loc, scale, dof = known.posterior(stats)  # precision 1 + 4 / 0.25 = 17
    np.testing.assert_allclose(loc, [16 / 17, 0.0], rtol=1e-6)
    np.testing.assert_allclose(scale, [17**-0.5, 1.0], rtol=1e-6)
    assert np.all(np.isinf(dof))
    # Normal-inverse-gamma: kappa0 = 0.25, alpha0 = 1, beta0 = 0.25; posterior kappa 4.25,
    # alpha 3, beta = 0.25 + 0.25 + 0.25 * 4 * 1 / (2 * 4.25)
    estimated = known.replace(estimate_noise=True)
    loc, scale, dof = estimated.posterior(stats)
    np.testing.assert_allclose(loc, [16 / 17, 0.0], rtol=1e-6)
    np.testing.assert_allclose(scale, [0.2200975, 1.0], rtol=1e-5)
    np.testing.assert_allclose(dof, [6.0, 2.0])
    # P(choose arm 1) = P(N(0, 1) > N(16/17, 1/17)) = Phi(-(16/17) / sqrt(18/17))
    freq = _freq(known, stats, num_arms=2)
    assert abs(freq[1] - 0.180185) < 0.025


def test_linear_state_updates_and_linucb_index_hand_computed():
    env, params = _env("ContextualLinearBandit-v0", num_arms=2, context_dim=2)
    algo = LinUCB(alpha=2.0, regularization=1.0)
    state = algo.init(env, params)
    np.testing.assert_array_equal(state.a_inv, np.broadcast_to(np.eye(2), (2, 2, 2)))
    x = jnp.float32([[1, 0], [5, 5]])  # arm 0's context, arm 1's
    state = algo.update(state, None, jnp.int32(0), x, jnp.float32(1.0))
    np.testing.assert_allclose(state.a_inv[0], [[0.5, 0], [0, 1]], rtol=1e-6)  # A = diag(2, 1)
    np.testing.assert_allclose(state.b, [[1, 0], [0, 0]])
    np.testing.assert_array_equal(state.a_inv[1], np.eye(2))
    ones = jnp.ones((2, 2), jnp.float32)
    # arm 0: theta = (.5, 0), mean .5, x A^-1 x = 1.5; arm 1: mean 0, x A^-1 x = 2
    np.testing.assert_allclose(algo.index(state, ones), [2.949490, 2.828427], rtol=1e-6)
    assert int(algo.select(state, jax.random.key(0), ones)) == 0
    state = algo.update(state, None, jnp.int32(0), ones, jnp.float32(0.0))
    np.testing.assert_allclose(state.a_inv[0], [[0.4, -0.2], [-0.2, 0.6]], rtol=1e-5, atol=1e-7)
    # linear Thompson: score_0 ~ N(.5, 1.5), score_1 ~ N(0, 2): P(arm 1) = Phi(-.5 / sqrt(3.5))
    one_update = algo.update(algo.init(env, params), None, jnp.int32(0), x, jnp.float32(1.0))
    freq = _freq(LinearThompson(v=1.0), one_update, ones, num_arms=2)
    assert abs(freq[1] - 0.394634) < 0.025


def test_sherman_morrison_inverse_stays_accurate_over_many_updates():
    k, d, n = 3, 5, 5000
    rng = np.random.default_rng(0)
    contexts = rng.normal(size=(n, k, d)).astype(np.float32)
    arms = rng.integers(0, k, n).astype(np.int32)
    rewards = rng.normal(size=n).astype(np.float32)
    init = LinearState(a_inv=jnp.broadcast_to(jnp.eye(d) / 2.0, (k, d, d)), b=jnp.zeros((k, d)))
    final = jax.jit(lambda s, xs: jax.lax.scan(lambda s, x: (s.update(*x), None), s, xs)[0])(
        init, (arms, contexts, rewards))
    for a in range(k):
        x = contexts[arms == a, a].astype(np.float64)
        a_mat = 2.0 * np.eye(d) + x.T @ x
        inv = np.linalg.inv(a_mat)
        np.testing.assert_allclose(final.a_inv[a], inv, atol=1e-3 * np.abs(inv).max())
        np.testing.assert_allclose(final.b[a], x.T @ rewards[arms == a], rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(final.a_inv[a], final.a_inv[a].T)


def test_lai_robbins_constant():
    # two arms 0.5 vs 0.6: Delta / KL(0.5, 0.6) = 0.1 / (0.5 ln(5/6) + 0.5 ln(5/4))
    np.testing.assert_allclose(lai_robbins_constant([0.5, 0.6]), 0.1 / 0.0204110, rtol=1e-5)
    np.testing.assert_allclose(lai_robbins_constant([0.0, 0.6, 0.6]), 0.6 / np.log(1 / 0.4))
    with pytest.raises(ValueError, match="best mean"):
        lai_robbins_constant([0.2, 1.0])


# --------------------------------------------------------------------------- runner

RUN_CASES = {
    "epsilon_greedy": (EpsilonGreedy(), "BernoulliBandit-v0"),
    "ucb1": (UCB1(), "BernoulliBandit-v0"),
    "softmax_pricing": (Softmax(temperature=0.5), "PricingBandit-v0"),
    "beta_thompson": (BernoulliThompson(), "BernoulliBandit-v0"),
    "gaussian_thompson": (GaussianThompson(), "GaussianBandit-v0"),
    "gaussian_thompson_estimated": (GaussianThompson(estimate_noise=True), "GaussianBandit-v0"),
    "linucb": (LinUCB(), "ContextualLinearBandit-v0"),
    "linear_thompson": (LinearThompson(), "ContextualLinearBandit-v0"),
}


@functools.cache
def _single_run(cls_and_static, env_id, num_rounds):
    """Jitted `(algo, key) -> run` for one algorithm class (and static fields) and env."""
    env, params = _env(env_id)
    return jax.jit(lambda algo, key: make_run(algo, env, params, num_rounds)(key))


def _run(algo, env_id, key):
    static = (type(algo), getattr(algo, "schedule", None), getattr(algo, "estimate_noise", None))
    return jax.tree.map(np.asarray, _single_run(static, env_id, NUM_ROUNDS)(algo, key))


@pytest.mark.parametrize("case", RUN_CASES)
def test_run_outputs_bookkeeping_and_determinism(case):
    algo, env_id = RUN_CASES[case]
    env, params = _env(env_id)
    state, m = _run(algo, env_id, jax.random.key(0))
    assert set(m) == {"reward", "regret", "cumulative_regret", "arm", "optimal_arm_chosen"}
    for name, dtype in (("reward", np.float32), ("regret", np.float32), ("arm", np.int32),
                        ("cumulative_regret", np.float32), ("optimal_arm_chosen", np.float32)):
        assert m[name].shape == (NUM_ROUNDS,) and m[name].dtype == dtype, name
        assert np.all(np.isfinite(m[name])), name
    assert np.all((m["arm"] >= 0) & (m["arm"] < env.num_arms))
    assert len(np.unique(m["arm"])) == env.num_arms  # every arm tried
    np.testing.assert_allclose(m["cumulative_regret"], np.cumsum(m["regret"]), rtol=1e-4, atol=1e-4)
    assert np.all(m["regret"] >= 0)
    np.testing.assert_array_equal(m["optimal_arm_chosen"] == 1.0, m["regret"] == 0.0)
    if not env.is_contextual:
        expected = np.asarray(env.expected_rewards(None, params))
        np.testing.assert_allclose(m["regret"], expected.max() - expected[m["arm"]], atol=1e-6)
    if isinstance(state, ArmStats):
        np.testing.assert_array_equal(state.counts, np.bincount(m["arm"], minlength=env.num_arms))
        pulled = state.counts > 0
        means = np.bincount(m["arm"], m["reward"], env.num_arms)[pulled] / state.counts[pulled]
        np.testing.assert_allclose(state.means[pulled], means, rtol=1e-4, atol=1e-5)
    if isinstance(state, BetaState):  # one trial per round
        np.testing.assert_array_equal(state.alpha + state.beta - 2.0,
                                      np.bincount(m["arm"], minlength=env.num_arms))
    again = _run(algo, env_id, jax.random.key(0))
    for x, y in zip(jax.tree.leaves((state, m)), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)
    other = _run(algo, env_id, jax.random.key(1))[1]
    assert not np.array_equal(other["arm"], m["arm"])


def test_contextual_algorithms_learn_the_linear_model():
    """Over the second half, LinUCB and linear Thompson lose under a tenth of what uniformly
    random arms lose here (about 1.5 per round: the mean gap to the best of 10 arms whose mean
    rewards are roughly standard normal)."""
    for algo in (LinUCB(), LinearThompson()):
        m = _run(algo, "ContextualLinearBandit-v0", jax.random.key(0))[1]
        assert m["regret"][NUM_ROUNDS // 2:].mean() < 0.15
        assert m["regret"][:100].mean() > 0.3  # it had something to learn


@pytest.mark.slow
def test_thompson_and_ucb_beat_epsilon_greedy_and_random():
    """LEARN_RUNS runs per algorithm on the default 10-arm Bernoulli bandit (means 0.1 to 0.7)."""
    keys = jax.random.split(jax.random.key(42), LEARN_RUNS)
    algos = {"epsilon_greedy": EpsilonGreedy(epsilon=0.1), "random": EpsilonGreedy(epsilon=1.0),
             "ucb1": UCB1(c=1.0), "ucb_half": UCB1(c=0.5), "thompson": BernoulliThompson()}
    curves = {name: np.stack([_run(algo, "BernoulliBandit-v0", k)[1]["cumulative_regret"]
                              for k in keys]) for name, algo in algos.items()}
    final = {name: c[:, -1].mean() for name, c in curves.items()}
    half = {name: c[:, NUM_ROUNDS // 2 - 1].mean() for name, c in curves.items()}
    gaps = 0.7 - np.linspace(0.1, 0.7, 10)
    np.testing.assert_allclose(final["random"], NUM_ROUNDS * gaps.mean(), rtol=0.05)
    assert final["thompson"] < 0.7 * final["epsilon_greedy"]
    assert final["ucb_half"] < final["epsilon_greedy"]
    # UCB1's bonus (c = 1, Auer et al.) is too wide to beat epsilon-greedy within 2000 rounds
    assert max(final["thompson"], final["ucb1"], final["ucb_half"]) < 0.4 * final["random"]
    for name in ("thompson", "ucb_half"):  # sub-linear: the second half adds far less
        assert final[name] - half[name] < 0.5 * half[name]


@struct.dataclass
class _JaxBetaThompson(BernoulliThompson):
    """Thompson sampling with `jax.random.beta`, the sampler `sample_beta` replaced."""

    def select(self, state, key, contexts):
        return jnp.argmax(jax.random.beta(key, state.alpha, state.beta)).astype(jnp.int32)


@pytest.mark.slow
def test_thompson_regret_curve_is_that_of_jax_random_beta():
    """1000 runs x 1000 rounds each: mean cumulative regret at 10 points along the curve agrees
    within 4 standard errors of the difference."""
    env, params = _env("BernoulliBandit-v0")
    keys = jax.random.split(jax.random.key(11), 1000)
    curves = [np.asarray(jax.jit(jax.vmap(make_run(algo, env, params, 1000)))(keys)[1]
                         ["cumulative_regret"][:, 99::100]) for algo in
              (BernoulliThompson(), _JaxBetaThompson())]
    diff = curves[0].mean(0) - curves[1].mean(0)
    se = np.sqrt((curves[0].var(0) + curves[1].var(0)) / len(keys))
    assert np.all(np.abs(diff) < 4 * se), (diff, se)


def test_vmap_over_runs_and_hyperparameter_grid_equals_single_runs():
    env, params = _env("BernoulliBandit-v0")
    configs = [EpsilonGreedy(epsilon=0.1), EpsilonGreedy(epsilon=1.0)]
    grid = jax.tree.map(lambda *x: jnp.stack(x), *configs)
    keys = jax.random.split(jax.random.key(5), 3)
    run = lambda algo, key: make_run(algo, env, params, NUM_ROUNDS)(key)[1]  # noqa: E731
    batched = jax.jit(jax.vmap(jax.vmap(run, in_axes=(None, 0)), in_axes=(0, None)))(grid, keys)
    for g, algo in enumerate(configs):
        for i in range(3):
            single = _run(algo, "BernoulliBandit-v0", keys[i])[1]
            np.testing.assert_array_equal(single["arm"], batched["arm"][g, i])
            np.testing.assert_array_equal(single["reward"], batched["reward"][g, i])
            np.testing.assert_allclose(single["cumulative_regret"],
                                       batched["cumulative_regret"][g, i], rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("algo, env_id, match", [
    (BernoulliThompson(), "GaussianBandit-v0", "needs bounded rewards.*GaussianBandit-v0"),
    (UCB1(), "ContextualLinearBandit-v0", "needs bounded rewards"),
    (LinUCB(), "BernoulliBandit-v0", "LinUCB needs a contextual env"),
    (LinearThompson(), "PricingBandit-v0", "LinearThompson needs a contextual env"),
])
def test_mismatched_env_is_refused(algo, env_id, match):
    env, params = _env(env_id)
    with pytest.raises(ValueError, match=match):
        make_run(algo, env, params, 10)
    with pytest.raises(ValueError, match="need a bandit env.*ShopperRec-v0"):
        make_run(algo, ShopperRec(), None, 10)


@pytest.mark.parametrize("algo, match", [
    (EpsilonGreedy(epsilon=1.5), r"EpsilonGreedy\.epsilon must be in \[0, 1\]"),
    (EpsilonGreedy(schedule="cosine"), "EpsilonGreedy.schedule must be one of"),
    (EpsilonGreedy(decay_steps=0.0), "EpsilonGreedy.decay_steps must be > 0"),
    (UCB1(c=-1.0), "UCB1.c must be >= 0"),
    (Softmax(temperature=0.0), "Softmax.temperature must be > 0"),
    (BernoulliThompson(prior_beta=float("nan")), "BernoulliThompson.prior_beta must be > 0"),
    (GaussianThompson(noise_std=0.0), "GaussianThompson.noise_std must be > 0"),
    (LinUCB(regularization=0.0), "LinUCB.regularization must be > 0"),
    (LinearThompson(v=-0.1), "LinearThompson.v must be >= 0"),
])
def test_bad_config_is_refused(algo, match):
    env, params = _env("ContextualLinearBandit-v0")
    with pytest.raises(ValueError, match=match):
        make_run(algo, env, params, 10)


def test_bad_num_rounds_is_refused():
    env, params = _env("BernoulliBandit-v0")
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_rounds must be an int >= 1"):
            make_run(UCB1(), env, params, bad)
