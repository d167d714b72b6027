"""Rule-based policies for ShopperRec-v0 (ecomrl_jax/envs/recommendation/policies.py)."""

import itertools
import re
from functools import partial
from pathlib import Path

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.recommendation.policies import (myopic_oracle, patience_lookahead,
                                                     popularity_policy, random_policy)
from ecomrl_jax.evaluation import evaluate
from ecomrl_jax.wrappers import EpisodeStatistics

CARD = Path(__file__).resolve().parents[3] / "docs" / "envs" / "shopper_rec.md"
FACTORIES = (random_policy, popularity_policy, myopic_oracle, patience_lookahead)
# Every reward term weighted, strong position bias: the oracle's choice and order matter.
WEIGHTED = dict(purchase_weight=0.5, revenue_weight=0.05, position_bias=0.7)


@pytest.fixture(scope="module")
def default():
    return ecomrl_jax.make("ShopperRec-v0")


@pytest.fixture(scope="module")
def default_results(default):
    env, params = default
    return {f.__name__: evaluate(env, params, f(env, params), jax.random.key(0), 400)
            for f in FACTORIES}


@pytest.fixture(scope="module", params=[1, 3], ids=["single", "slate"])
def first_step(request):
    """Env, params, 64 freshly reset states and every baseline's action on them."""
    env, params = ecomrl_jax.make("ShopperRec-v0", slate_size=request.param, **WEIGHTED)
    policies = {f.__name__: f(env, params) for f in FACTORIES}

    def act(key):
        k_reset, k_act = jax.random.split(key)
        obs, state = env.reset(k_reset, params)
        return {name: p(k_act, obs, state, params) for name, p in policies.items()}, state

    actions, states = jax.jit(jax.vmap(act))(jax.random.split(jax.random.key(5), 64))
    return env, params, states, actions


def _expected_reward(params, state, slots, click_bonus=None, no_click_value=0.0):
    """E[reward] of showing candidate `slots` in order, from the env's choice model; a slot of
    -1 is shown empty (as the env shows an invalid slot). `click_bonus` (per candidate) and
    `no_click_value` add a value to each outcome."""
    shown = slots >= 0
    items = state.candidates[jnp.maximum(slots, 0)]
    affinity = params.item_embedding[items] @ state.interest
    logits = (params.affinity_scale * affinity + params.item_appeal[items]
              - params.position_bias * jnp.arange(slots.size))
    probs = jax.nn.softmax(jnp.append(jnp.where(shown, logits, -jnp.inf), params.no_click_logit))
    price = params.item_price[items]
    p_buy = jax.nn.sigmoid(params.purchase_bias + params.purchase_affinity * affinity
                           - params.purchase_price * price)
    value = params.click_weight + p_buy * (params.purchase_weight + params.revenue_weight * price)
    if click_bonus is not None:
        value = value + click_bonus[jnp.maximum(slots, 0)]
    return jnp.sum(jnp.where(shown, probs[:-1] * value, 0.0)) + probs[-1] * no_click_value


def test_actions_are_valid(first_step):
    env, params, _, actions = first_step
    space = env.action_space(params)
    expected_shape = (64,) if env.slate_size == 1 else (64, env.slate_size)
    for name, a in actions.items():
        assert a.shape == expected_shape and a.dtype == jnp.int32, name
        assert bool(jnp.all(jax.vmap(space.contains)(a))), name
    slots = np.unique(np.asarray(actions["random_policy"]))
    assert slots.tolist() == list(range(env.num_candidates))  # random reaches every slot


def test_popularity_ranks_by_population_click_probability(first_step):
    env, params, states, actions = first_step
    emb, interest = np.asarray(params.item_embedding), np.asarray(params.shopper_interest)
    logits = params.affinity_scale * interest @ emb.T + np.asarray(params.item_appeal)
    popularity = (1 / (1 + np.exp(-(logits - params.no_click_logit)))).mean(axis=0)
    ranked = np.argsort(-popularity[np.asarray(states.candidates)], axis=1, kind="stable")
    expected = ranked[:, 0] if env.slate_size == 1 else ranked[:, :env.slate_size]
    np.testing.assert_array_equal(actions["popularity_policy"], expected)


def test_myopic_oracle_maximises_expected_reward(first_step):
    """Single item: the best candidate; slate: the best of all 720 ordered slates."""
    env, params, states, actions = first_step
    slates = jnp.array(list(itertools.permutations(range(env.num_candidates), env.slate_size)))
    best = jax.vmap(lambda s: jax.vmap(lambda sl: _expected_reward(params, s, sl))(slates))(
        states).max(axis=1)
    oracle = actions["myopic_oracle"].reshape(64, env.slate_size)
    chosen = jax.vmap(lambda s, a: _expected_reward(params, s, a))(states, oracle)
    np.testing.assert_allclose(chosen, best, rtol=1e-5)


def test_myopic_oracle_claims_valid_slates_only(first_step):
    """Brute force over every action, empty slots (-1) included: a slate can beat the oracle by
    leaving a weak item's slot empty, so its docstring and the card claim valid slates only; a
    single empty item earns nothing, so there the oracle is the best action."""
    env, params, states, actions = first_step
    choices = itertools.product(range(-1, env.num_candidates), repeat=env.slate_size)
    slates = jnp.array([s for s in choices if len(set(s) - {-1}) == sum(x >= 0 for x in s)])
    best = jax.vmap(lambda s: jax.vmap(lambda sl: _expected_reward(params, s, sl))(slates))(
        states).max(axis=1)
    oracle = actions["myopic_oracle"].reshape(64, env.slate_size)
    chosen = jax.vmap(lambda s, a: _expected_reward(params, s, a))(states, oracle)
    assert np.all(best >= chosen * (1 - 1e-6))
    if env.slate_size == 1:
        np.testing.assert_allclose(chosen, best, rtol=1e-6)
    else:
        assert np.any(best > chosen * (1 + 1e-4))
    assert "over valid slates" in " ".join(myopic_oracle.__doc__.split())
    assert "**over valid slates**" in CARD.read_text()


def _lookahead_objective(params, state, slots, step_value, best_reward):
    """The lookahead's objective, written out: each outcome's expected reward plus
    rho * min(steps to the horizon, patience left / step cost) if patience is left, with rho =
    step_value * the best expected immediate reward."""
    steps_left = params.max_steps_in_episode - state.time - 1
    no_click = state.patience - params.patience_step_cost
    click = no_click + params.quality_effect * (params.item_quality[state.candidates]
                                                - params.quality_threshold)

    def session(p):
        return step_value * best_reward * jnp.where(
            p > 0, jnp.minimum(steps_left, p / params.patience_step_cost), 0.0)

    return _expected_reward(params, state, slots, session(click), session(no_click))


def test_patience_lookahead_maximises_its_objective_over_valid_slates(first_step):
    """On states with patience from nearly spent to plentiful and times up to the horizon: the
    lookahead's slate is the best of every ordered valid slate under its objective written out
    independently; with step_value 0 it is the myopic oracle's slate."""
    env, params, states, actions = first_step
    k_patience, k_time = jax.random.split(jax.random.key(9))
    states = states.replace(patience=jax.random.uniform(k_patience, (64,), minval=0.01, maxval=1.5),
                            time=jax.random.randint(k_time, (64,), 0, params.max_steps_in_episode))
    slates = jnp.array(list(itertools.permutations(range(env.num_candidates), env.slate_size)))

    def act(policy, state):
        return policy(jax.random.key(0), None, state, params).reshape(env.slate_size)

    best_reward = jax.vmap(lambda s: jax.vmap(lambda sl: _expected_reward(params, s, sl))(slates))(
        states).max(axis=1)
    objective = jax.vmap(lambda s, b: jax.vmap(
        lambda sl: _lookahead_objective(params, s, sl, 0.3, b))(slates))(states, best_reward)
    chosen = jax.jit(jax.vmap(partial(act, patience_lookahead(env, params, 0.3))))(states)
    value = jax.vmap(lambda s, sl, b: _lookahead_objective(params, s, sl, 0.3, b))(
        states, chosen, best_reward)
    np.testing.assert_allclose(value, objective.max(axis=1), rtol=1e-5)
    myopic = jax.jit(jax.vmap(partial(act, myopic_oracle(env, params))))(states)
    assert not np.array_equal(chosen, myopic)  # the continuation changes some choices
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(partial(act, patience_lookahead(env, params, 0.0))))(states), myopic)


def test_patience_lookahead_beats_the_myopic_oracle_with_longer_sessions(default_results):
    rule, oracle, rand = (default_results[name] for name in
                          ("patience_lookahead", "myopic_oracle", "random_policy"))
    assert np.mean(rule["return"]) > 2.0 * np.mean(oracle["return"])
    assert np.mean(rule["length"]) > np.mean(rand["length"]) + 10.0


def test_popularity_beats_random_on_clicks_per_step(default_results):
    def clicks_per_step(r):
        return float(np.sum(r["clicks"]) / np.sum(r["length"]))

    assert (clicks_per_step(default_results["popularity_policy"])
            > clicks_per_step(default_results["random_policy"]) + 0.1)


def test_myopic_oracle_earns_more_in_shorter_sessions(default_results):
    oracle, rand = default_results["myopic_oracle"], default_results["random_policy"]
    assert np.mean(oracle["return"]) > np.mean(rand["return"]) + 1.0
    assert np.mean(oracle["length"]) < np.mean(rand["length"]) - 3.0


@pytest.mark.parametrize("factory", [popularity_policy, myopic_oracle, patience_lookahead],
                         ids=lambda f: f.__name__)
def test_refuses_unsupported_env(factory, default):
    env, params = gymnax.make("CartPole-v1")
    with pytest.raises(ValueError, match="ShopperRec-v0"):
        factory(env, params)
    env, params = default
    with pytest.raises(ValueError, match="unwrapped"):
        factory(EpisodeStatistics(env), params)


@pytest.mark.slow
def test_card_figures_of_the_lookahead(capsys):
    """The card's block under the baselines, run as written, prints exactly its table's rows."""
    card = CARD.read_text()
    start = card.index("## Baselines, the myopic oracle and the patience lookahead")
    section = card[start:card.index("\n## ", start + 1)]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(block, "shopper_rec card", "exec"), {})
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and all(row in section.splitlines() for row in rows), rows
