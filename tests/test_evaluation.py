"""Rollout, confidence intervals and A/B comparison (ecomrl_jax/evaluation.py)."""

import math

import jax
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.recommendation.policies import myopic_oracle, random_policy
from ecomrl_jax.evaluation import (compare, comparison_table, confidence_interval, evaluate,
                                   initial_states)

# Short horizon and low patience: episodes end by termination and by truncation.
SHORT = dict(patience_init=0.5, max_steps_in_episode=8, purchase_weight=0.5, revenue_weight=0.05)
METRICS = ("return", "length", "clicks", "purchases", "revenue", "invalid_actions")


def _recording(policy):
    """Wrap `policy` to record {policy key: (time, candidates, interest)} of each state it sees."""
    seen = {}

    def record(key_data, time, candidates, interest):
        seen[tuple(np.asarray(key_data).tolist())] = (int(time), np.asarray(candidates),
                                                      np.asarray(interest))

    def recorded(k, obs, state, p):
        jax.debug.callback(record, jax.random.key_data(k), state.time, state.candidates,
                           state.interest)
        return policy(k, obs, state, p)

    return recorded, seen


@pytest.fixture(scope="module")
def short():
    """Env, params and a recording random policy (one compiled `evaluate` for the module)."""
    env, params = ecomrl_jax.make("ShopperRec-v0", **SHORT)
    return (env, params, *_recording(random_policy(env, params)))


def _episode_keys(key, episode):
    """(reset_key, step_key, policy_key) of an episode, as documented in evaluation.py."""
    env_key, policy_key = jax.random.split(jax.random.fold_in(key, episode))
    return (*jax.random.split(env_key), policy_key)


def _manual_episode(env, params, policy, key, episode, max_steps):
    """Reference semantics: a Python loop that stops at the first done."""
    reset_key, step_key, policy_key = _episode_keys(key, episode)
    obs, state = env.reset(reset_key, params)
    totals = dict.fromkeys(METRICS, 0.0)
    for t in range(max_steps):
        action = policy(jax.random.fold_in(policy_key, t), obs, state, params)
        obs, state, reward, terminated, truncated, info = env.step(
            jax.random.fold_in(step_key, t), state, action, params)
        totals["return"] += float(reward)
        totals["length"] += 1
        for name in METRICS[2:]:
            totals[name] += float(info[name])
        if terminated or truncated:
            break
    return totals


def test_evaluate_matches_manual_loop_and_stops_at_first_done(short):
    env, params, policy, _ = short
    key, horizon = jax.random.key(3), params.max_steps_in_episode
    result = evaluate(env, params, policy, key, num_episodes=32)
    assert sorted(result) == sorted(METRICS)
    assert all(v.shape == (32,) for v in result.values())
    lengths = np.asarray(result["length"])
    # Early terminations: the env auto-resets and runs on, but those steps must not count.
    assert lengths.max() == horizon and lengths.min() < horizon
    for i in np.argsort(lengths)[[0, 1, -1]]:
        manual = _manual_episode(env, params, policy, key, i, horizon)
        for name in METRICS:
            np.testing.assert_allclose(result[name][i], manual[name], rtol=1e-5, err_msg=name)


def test_initial_states_are_the_states_evaluate_starts_from(short):
    """What the recording policy saw at time 0 of episode i is state i of `initial_states`."""
    env, params, policy, seen = short
    key = jax.random.key(11)
    seen.clear()
    evaluate(env, params, policy, key, num_episodes=32)
    _, states = initial_states(env, params, key, 32)
    for i in (0, 7, 31):
        first_key = jax.random.fold_in(_episode_keys(key, i)[2], 0)
        time, candidates, interest = seen[tuple(np.asarray(jax.random.key_data(first_key)).tolist())]
        assert time == 0
        np.testing.assert_array_equal(candidates, states.candidates[i])
        np.testing.assert_array_equal(interest, states.interest[i])


def test_common_random_numbers_across_policies(short):
    """Same key: the same policy keys, shoppers and candidates while both episodes run."""
    env, params, rand, rand_seen = short
    oracle, oracle_seen = _recording(myopic_oracle(env, params))
    key, horizon = jax.random.key(7), params.max_steps_in_episode
    rand_seen.clear()
    rand_len = np.asarray(evaluate(env, params, rand, key, num_episodes=32)["length"])
    oracle_len = np.asarray(evaluate(env, params, oracle, key, num_episodes=32)["length"])
    assert np.any(rand_len != oracle_len)  # the policies behave differently
    assert rand_seen.keys() == oracle_seen.keys() and len(rand_seen) == 32 * horizon
    for i in range(32):
        policy_key = _episode_keys(key, i)[2]
        for t in range(int(min(rand_len[i], oracle_len[i]))):
            k = tuple(np.asarray(jax.random.key_data(jax.random.fold_in(policy_key, t))).tolist())
            (time_a, cand_a, shopper_a), (time_b, cand_b, shopper_b) = rand_seen[k], oracle_seen[k]
            assert time_a == time_b == t
            np.testing.assert_array_equal(cand_a, cand_b)
            if t == 0:
                np.testing.assert_array_equal(shopper_a, shopper_b)
    first = {k: c for k, (t, c, _) in rand_seen.items() if t == 0}
    rand_seen.clear()
    evaluate(env, params, rand, jax.random.key(8), num_episodes=32)
    assert not any(np.array_equal(c, d) for c in first.values()
                   for t, d, _ in rand_seen.values() if t == 0)  # another key, other shoppers


def test_compare_policy_with_itself_is_exactly_zero(short):
    env, params, policy, _ = short
    result = compare(env, params, policy, policy, jax.random.key(1), num_episodes=32)
    assert list(result)[:2] == ["return", "length"] and sorted(result) == sorted(METRICS)
    for r in result.values():
        assert r["mean_a"] == r["mean_b"]
        assert r["diff"] == r["low"] == r["high"] == 0.0
    assert result["return"]["rel_diff"] == 0.0
    table = comparison_table(result, ("random", "random"))
    assert table.count("\n") == len(METRICS) + 1 and "| return |" in table


def test_confidence_interval_hand_computed():
    mean, low, high = confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977934 * math.sqrt(2.5 / 5)  # t_{0.975, 4} * s / sqrt(n)
    assert mean == 3.0
    assert low == pytest.approx(3.0 - half, rel=1e-12)
    assert high == pytest.approx(3.0 + half, rel=1e-12)


@pytest.mark.parametrize("level, df, quantile", [
    (0.95, 1, 12.706204736174694), (0.95, 2, 4.302652729749462), (0.90, 10, 1.8124611228116756),
    (0.99, 30, 2.7499956535672254), (0.95, 5000, 1.9604385517065073),
])
def test_confidence_interval_uses_student_t(level, df, quantile):
    x = np.arange(df + 1.0)
    mean, low, high = confidence_interval(x, level)
    half = quantile * x.std(ddof=1) / math.sqrt(x.size)
    assert (high - mean) == pytest.approx(half, rel=1e-9)
    assert (mean - low) == pytest.approx(half, rel=1e-9)


def test_confidence_interval_coverage():
    rng = np.random.default_rng(0)
    samples = rng.normal(2.0, 3.0, size=(4000, 5))
    covered = [low <= 2.0 <= high for _, low, high in map(
        lambda s: confidence_interval(s, 0.9), samples)]
    assert abs(np.mean(covered) - 0.9) < 0.02


def test_confidence_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        confidence_interval([1.0])
    with pytest.raises(ValueError, match="level"):
        confidence_interval([1.0, 2.0], level=95)
