"""InterestEvolution-v0 (ecomrl_jax/envs/recommendation/interest_evolution.py) against RecSim 0.2.4's
own numbers (recsim_reference.json, written by make_recsim_reference.py with RecSim), and its
invariants; see docs/envs/interest_evolution.md. The contract tests (tests/contract) cover
jit == eager, vmap == loop, determinism and the bad-param sweep.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.recommendation.interest_evolution import (
    NUM_TOPICS, EnvState, InterestEvolution, choice_probabilities, user_transition)
from ecomrl_jax.envs.recommendation.policies import quality_oracle

REFERENCE = json.loads((Path(__file__).parent / "recsim_reference.json").read_text())
INTERESTS = jnp.asarray(REFERENCE["user_interests_used"], jnp.float32)


@pytest.fixture(scope="module")
def made():
    return ecomrl_jax.make("InterestEvolution-v0")


def test_default_params_are_recsims_constants(made):
    _, params = made
    live = REFERENCE["constants_live"]
    np.testing.assert_allclose(params.topic_quality_mean, live["cluster_means"], rtol=1e-6, atol=1e-7)
    pairs = {"video_length": "doc_video_length", "time_budget": "time_budget_initial",
             **{k: k for k in ("no_click_mass", "min_normalizer", "step_penalty", "user_update_alpha",
                               "user_quality_factor", "document_quality_factor", "alpha_x_intercept",
                               "alpha_y_intercept")}}
    for ours, theirs in pairs.items():
        assert getattr(params, ours) == pytest.approx(live[theirs], rel=1e-12), ours


def test_choice_probabilities_match_recsim_under_jit_and_vmap(made):
    """All cases in one jit(vmap) call; the one-video slate is padded with an empty slot, which
    must take no probability (the invalid-slot rule)."""
    _, params = made
    cases = REFERENCE["choice_probabilities"]
    topics = jnp.asarray([c["slate_clusters"] + [0] * (2 - len(c["slate_clusters"])) for c in cases])
    shown = jnp.asarray([[True] * len(c["slate_clusters"]) + [False] * (2 - len(c["slate_clusters"]))
                         for c in cases])
    probs = jax.jit(jax.vmap(choice_probabilities, in_axes=(None, 0, 0, None)))(
        INTERESTS, topics, shown, params)
    for case, p, s in zip(cases, np.asarray(probs), np.asarray(shown)):
        expected = case["probs_[slate..., no_click]"]
        np.testing.assert_allclose(np.append(p[:-1][s], p[-1]), expected, rtol=1e-6, atol=1e-7)
        assert np.all(p[:-1][~s] == 0.0)


def test_interest_and_budget_updates_match_recsim_under_jit_and_vmap(made):
    """Both branches of the interest flip, the budget after a watch (shortened by a small budget,
    extended by quality), termination at budget <= 0 exactly, and a step without a click: RecSim's
    flip replayed, all cases in one jit(vmap) call."""
    env, params = made
    cases = REFERENCE["state_updates"]
    clicked = jnp.asarray([not c.get("no_click", False) for c in cases])
    topic = jnp.asarray([c.get("cluster", 0) for c in cases])
    quality = jnp.asarray([c.get("quality", 0.0) for c in cases], jnp.float32)
    budget = jnp.asarray([c["budget_before"] for c in cases], jnp.float32)
    flip = jnp.asarray([c.get("flip", 0.5) for c in cases], jnp.float32)
    transition = jax.jit(jax.vmap(user_transition, in_axes=(None, 0, 0, 0, 0, 0, None)))
    interest, budget_after, watch = transition(INTERESTS, budget, clicked, topic, quality, flip, params)
    for i, case in enumerate(cases):
        np.testing.assert_allclose(budget_after[i], case["budget_after"], rtol=1e-6, atol=1e-6)
        assert float(watch[i]) == pytest.approx(case["reward_clicked_watchtime"], rel=1e-6)
        state = EnvState(time=0, interest=interest[i], time_budget=budget_after[i],
                         candidate_topic=jnp.zeros(10, jnp.int32), candidate_quality=jnp.zeros(10))
        assert bool(env.is_terminated(state, params)) == case["terminal"]
        others = np.arange(NUM_TOPICS) != case.get("cluster", -1)
        np.testing.assert_array_equal(interest[i][others], INTERESTS[others])
        if clicked[i]:
            assert bool(flip[i] < (INTERESTS[topic[i]] + 1) / 2) == case["positive_branch"]
            np.testing.assert_allclose(interest[i][topic[i]], case["u_c_after"], rtol=1e-6, atol=1e-6)
    assert {c.get("positive_branch") for c in cases} == {True, False, None}


@pytest.fixture(scope="module")
def many_steps(made):
    """One state stepped with 20,000 keys (jit(vmap)), the slate [3, 3, 7] of 10 candidates: the
    repeated slot is shown empty."""
    env = InterestEvolution(num_candidates=10, slate_size=3)
    _, params = made
    interest = jnp.linspace(-1.0, 1.0, NUM_TOPICS)
    state = EnvState(time=jnp.int32(0), interest=interest, time_budget=jnp.float32(2.5),
                     candidate_topic=jnp.arange(10, dtype=jnp.int32) + 10,
                     candidate_quality=jnp.linspace(-1.0, 1.0, 10))
    action = jnp.asarray([3, 3, 7], jnp.int32)
    keys = jax.random.split(jax.random.key(0), 20_000)
    out = jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None, None)))(keys, state, action, params)
    return env, params, state, jax.tree.map(np.asarray, out)


def test_click_frequencies_follow_the_choice_probabilities(many_steps):
    env, params, state, (_, _, _, _, info) = many_steps
    probs = np.asarray(choice_probabilities(state.interest, jnp.asarray([13, 13, 17]),
                                            jnp.asarray([True, False, True]), params))
    frequency = np.append(info["slot_clicks"].mean(0), 1.0 - info["clicks"].mean())
    assert np.all(info["slot_clicks"][:, 1] == 0.0) and np.all(info["invalid_actions"] == 1.0)
    np.testing.assert_allclose(frequency, probs, atol=4 * np.sqrt(0.25 / len(info["clicks"])))
    np.testing.assert_array_equal(info["clicks"], info["slot_clicks"].sum(1))


def test_a_click_earns_its_watch_time_and_moves_one_interest(many_steps):
    env, params, state, (obs, new, reward, terminated, info) = many_steps
    click = info["clicks"] == 1.0
    np.testing.assert_array_equal(reward[~click], 0.0)
    np.testing.assert_allclose(reward[click], 2.5)  # min(budget 2.5, video length 4)
    np.testing.assert_allclose(new.time_budget[~click], 2.5 - params.step_penalty)
    slot = info["slot_clicks"].argmax(1)
    topic = np.asarray([13, 13, 17])[slot]
    quality = np.asarray(state.candidate_quality)[np.asarray([3, 3, 7])[slot]]
    np.testing.assert_allclose(new.time_budget[click],
                               (params.user_update_alpha * 2.5 * quality)[click], rtol=1e-5)
    moved = new.interest != np.asarray(state.interest)
    assert np.all(moved.sum(1)[click] <= 1) and not np.any(moved[~click])
    assert np.all(moved[click, topic[click]] | (np.abs(new.interest[click, topic[click]]) == 1.0))
    up = new.interest[click, topic[click]] > np.asarray(state.interest)[topic[click]]
    p_up = (np.asarray(state.interest)[topic[click]] + 1) / 2
    assert abs(up.mean() - p_up.mean()) < 4 * np.sqrt(0.25 / click.sum())
    np.testing.assert_array_equal(terminated, new.time_budget <= 0.0)
    assert np.any(terminated) and not np.all(terminated)  # quality < 0 watched with 2.5 minutes left


def test_rollouts_keep_interests_in_range_and_end_when_the_budget_is_spent(made):
    env, params = made

    def episode(key):
        obs, state = env.reset(key, params)

        def step(carry, k):
            obs, state = carry
            action = env.action_space(params).sample(jax.random.fold_in(k, 1))
            obs, state, reward, terminated, truncated, info = env.step(k, state, action, params)
            final = info["final_observation"]
            return (obs, state), (obs, final, reward, terminated, truncated, info["clicks"])

        return obs, jax.lax.scan(step, (obs, state), jax.random.split(key, 400))[1]

    obs0, (obs, final, reward, terminated, truncated, clicks) = jax.tree.map(
        np.asarray, jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(3), 16)))
    for o in (obs0[:, None], obs, final):
        assert np.all(np.abs(o[..., 0, :]) <= 1.0)  # interests
        np.testing.assert_array_equal(o[..., 1:, :].sum(-1), 1.0)  # one-hot topics
        assert set(np.unique(o[..., 1:, :])) <= {0.0, 1.0}
    assert np.all((reward == 0.0) == (clicks == 0.0))
    assert np.all((reward >= 0.0) & (reward <= params.video_length))
    assert np.any(terminated) and not np.any(truncated)
    lengths = np.concatenate([np.diff(np.flatnonzero(row), prepend=-1) for row in terminated])
    assert lengths.min() >= 2 and lengths.max() <= params.time_budget / params.step_penalty


def test_reset_draws_recsims_user_and_video_distributions(made):
    env, params = made
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(
        jax.random.split(jax.random.key(1), 4000), params)
    interest, topic = np.asarray(state.interest), np.asarray(state.candidate_topic).ravel()
    assert interest.min() >= -1.0 and interest.max() <= 1.0 and abs(interest.mean()) < 0.01
    assert abs(interest.var() - 1 / 3) < 0.01  # uniform on [-1, 1]
    counts = np.bincount(topic, minlength=NUM_TOPICS)
    assert counts.min() > 0.9 * topic.size / NUM_TOPICS and counts.max() < 1.1 * topic.size / NUM_TOPICS
    noise = np.asarray(state.candidate_quality).ravel() - np.asarray(params.topic_quality_mean)[topic]
    assert abs(noise.mean()) < 0.005 and abs(noise.std() - params.quality_std) < 0.005
    np.testing.assert_array_equal(state.time_budget, params.time_budget)


def test_quality_oracle_shows_the_best_candidates_first(made):
    env, params = made
    _, state = env.reset(jax.random.key(0), params)
    slate = quality_oracle(env, params)(None, None, state, params)
    best = np.argsort(-np.asarray(state.candidate_quality))[:env.slate_size]
    np.testing.assert_array_equal(slate, best)
    with pytest.raises(ValueError, match="InterestEvolution-v0"):
        quality_oracle(ecomrl_jax.make("ShopperRec-v0")[0], params)


def test_bad_sizes_and_params_are_refused(made):
    _, params = made
    with pytest.raises(ValueError, match="slate_size must be <= num_candidates"):
        InterestEvolution(num_candidates=3, slate_size=4)
    with pytest.raises(ValueError, match="num_candidates"):
        InterestEvolution(num_candidates=0)
    with pytest.raises(ValueError, match="no_click_mass must be > min_normalizer"):
        ecomrl_jax.make("InterestEvolution-v0", no_click_mass=-1.0)
    with pytest.raises(ValueError, match="min_normalizer must be <= -1"):
        ecomrl_jax.make("InterestEvolution-v0", min_normalizer=-0.5)
    with pytest.raises(ValueError, match=r"topic_quality_mean must have shape \(20,\)"):
        ecomrl_jax.make("InterestEvolution-v0", topic_quality_mean=jnp.zeros(19))
