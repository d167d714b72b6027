"""Rule baselines and oracles for CouponCRM-v0 (ecomrl_jax/envs/crm/policies.py) and AdBidding-v1
(ecomrl_jax/envs/ads/policies.py), including the trade-offs the env defaults are built to show."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.ads.policies import (constant_bid, evaluated_bounds, hindsight_bound,
                                        hindsight_multiplier, hindsight_policy, linear_pacing)
from ecomrl_jax.envs.crm.policies import (always_discount, expected_rewards, myopic_uplift,
                                   never_contact, rfm_rules)
from ecomrl_jax.evaluation import evaluate, initial_states


def _evaluate_all(env, params, policies: dict, key, num_episodes: int) -> dict:
    """`evaluate` each policy on the same keys with one compilation: the policy is picked by
    a traced index (`lax.switch`), passed as a `Partial` argument."""
    branches = list(policies.values())

    def pick(index, *args):
        return jax.lax.switch(index, branches, *args)

    return {name: {k: np.asarray(v) for k, v in evaluate(
        env, params, jax.tree_util.Partial(pick, jnp.int32(i)), key, num_episodes).items()}
        for i, name in enumerate(policies)}


# --------------------------------------------------------------------------- CRM


@pytest.fixture(scope="module")
def crm():
    return ecomrl_jax.make("CouponCRM-v0")


def smart_policy(env, env_params):
    """Hand-written state-aware policy: never contact a fatigued customer (fatigue after the
    contact would exceed 1.7); contact a customer whose engagement is about to fall below 0.5
    with the best contact action; otherwise take the myopically best action (a coupon only
    where it pays this week, i.e. for discount-sensitive customers)."""

    def policy_fn(key, obs, state, params):
        value = expected_rewards(env, state, params)
        calm = params.fatigue_decay * state.fatigue + 1.0 <= 1.7
        at_risk = params.engagement_decay * state.engagement < 0.5
        act = jnp.where(at_risk, 1 + jnp.argmax(value[1:]), jnp.argmax(value))
        return jnp.where(calm, act, 0).astype(jnp.int32)

    return policy_fn


@pytest.fixture(scope="module")
def crm_results(crm):
    env, params = crm
    policies = {"never": never_contact(env, params), "always_10": always_discount(env, params, 0),
                "rfm": rfm_rules(env, params), "myopic": myopic_uplift(env, params),
                "smart": smart_policy(env, params)}
    return _evaluate_all(env, params, policies, jax.random.key(0), 500)


def test_smart_policy_beats_every_rule(crm_results):
    """The trade-off is real: contacting the at-risk and discounting only the sensitive wins."""
    smart = crm_results["smart"]["return"]
    for name, r in crm_results.items():
        if name == "smart":
            continue
        diff = smart - r["return"]  # common random numbers: same customers and draws
        assert diff.mean() > 4 * diff.std() / np.sqrt(diff.size), name


def test_neglect_and_over_contact_both_cost_customers(crm_results):
    r = crm_results
    churn = {k: v["churned"].mean() for k, v in r.items()}
    ltv = {k: v["return"].mean() for k, v in r.items()}
    assert churn["never"] > churn["rfm"] + 0.1  # neglect churn
    assert churn["always_10"] > churn["never"]  # fatigue churn
    assert ltv["rfm"] > ltv["never"] > ltv["always_10"]
    assert r["never"]["contacts"].sum() == 0 and r["never"]["coupon_cost"].sum() == 0
    always = r["always_10"]
    np.testing.assert_array_equal(always["contacts"], always["length"])  # one coupon per week
    # coupons waste margin: a 10% coupon costs 10% of every redeemed basket, whoever redeems it
    assert always["coupon_cost"].sum() > 0.25 * always["margin"].sum()
    for v in r.values():
        np.testing.assert_allclose(v["return"], v["margin"] - v["coupon_cost"] - v["contact_cost"],
                                   rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def crm_states(crm):
    """64 states from a random-action rollout, batched, with no budget carried over."""
    env, params = crm

    def states(key):
        _, state = env.reset(key, params)

        def body(state, k):
            action = jax.random.randint(k, (), 0, env.num_actions)
            return env.step(k, state, action, params)[1], state

        return jax.lax.scan(body, state, jax.random.split(key, 20))[1]

    batch = jax.jit(jax.vmap(states))(jax.random.split(jax.random.key(1), 4))
    batch = jax.tree.map(lambda x: x.reshape(-1)[:64], batch)
    return batch.replace(budget=jnp.zeros(64, jnp.float32))  # budget this week: budget_per_step


def test_myopic_uplift_picks_the_best_expected_reward(crm, crm_states):
    env, params = crm
    policy = myopic_uplift(env, params)
    chosen = {}
    for budget in (float("inf"), 15.0):
        p = params.replace(budget_per_step=budget)
        actions = np.asarray(jax.jit(jax.vmap(lambda s: policy(None, None, s, p)))(crm_states))
        probs = np.asarray(jax.vmap(env.purchase_probs, (0, None))(crm_states, p))
        basket = np.asarray(crm_states.basket)[:, None]
        incentive = np.array([0, 0, 0.1, 0.2, 0.3, 0]) * basket + np.array([0, 0, 0, 0, 0, 6.0])
        contact = np.array([0, 0.5, 0.5, 0.5, 0.5, 0.5])
        value = probs * (0.35 * basket - incentive) - contact
        value[contact + incentive > budget] = -np.inf
        np.testing.assert_array_equal(actions, value.argmax(1))
        chosen[budget] = actions
    assert len(set(chosen[float("inf")].tolist())) >= 3
    assert not np.array_equal(chosen[float("inf")], chosen[15.0])  # the budget binds somewhere
    assert np.all(chosen[15.0] != 4)  # a 30% coupon never fits: 0.5 + 0.3 * basket > 15


def test_rfm_rules_segments(crm):
    env, params = crm
    policy = rfm_rules(env, params, active_weeks=4, contact_gap=4, high_value=70, level=1)

    def obs(recency, monetary, since_contact):
        return jnp.array([recency / 52, 0.1, monetary / 100, 0, 0, 0, since_contact / 52, 0.5, 1],
                         jnp.float32)

    cases = [(1, 100, 10, 0), (3, 30, 10, 0),  # active: nothing
             (8, 100, 2, 0),  # lapsing but contacted recently: nothing
             (8, 30, 10, 1),  # lapsing, low value: mail
             (8, 100, 10, 3), (4, 70, 4, 3)]  # lapsing, high value: coupon at level 1
    for recency, monetary, since, expected in cases:
        assert int(policy(None, obs(recency, monetary, since), None, params)) == expected


def test_crm_baselines_reject_bad_arguments(crm):
    env, params = crm
    with pytest.raises(ValueError, match="level"):
        always_discount(env, params, level=3)
    with pytest.raises(ValueError, match="level"):
        rfm_rules(env, params, level=-1)
    ads_env, ads_params = ecomrl_jax.make("AdBidding-v1", num_auctions=4, num_steps=3)
    for factory in (never_contact, always_discount, rfm_rules, myopic_uplift):
        with pytest.raises(ValueError, match="CouponCRM"):
            factory(ads_env, ads_params)
    for factory in (constant_bid, linear_pacing, hindsight_policy):
        with pytest.raises(ValueError, match="AdBidding"):
            factory(env, params)


# --------------------------------------------------------------------------- ads


TINY_DAY = dict(num_auctions=4, num_steps=3, traffic_base=1.0, traffic_amplitude=0.0,
                day_traffic_sigma=0.0)  # 12 auctions a day, every slot active


def _tiny_days(env, params, budgets, num_days):
    """Every (day, budget) pair of `num_days` days x `budgets`: params with that budget (a
    batch), day keys, and each day's `day_auctions`, `hindsight_bound` and
    `hindsight_multiplier`, computed in one jit (numpy out)."""
    days = jax.random.split(jax.random.key(0), num_days)
    day_keys = jnp.repeat(jax.vmap(lambda k: jax.random.bits(k, (2,), jnp.uint32))(days),
                          len(budgets), axis=0)
    batch = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (day_keys.shape[0],)
                                                    + jnp.shape(x)), params)
    batch = batch.replace(daily_budget=jnp.tile(jnp.asarray(budgets, jnp.float32), num_days))
    out = jax.jit(jax.vmap(lambda k, p: (env.day_auctions(k, p), hindsight_bound(env, k, p),
                                         hindsight_multiplier(env, k, p))))(day_keys, batch)
    return batch, day_keys, jax.tree.map(np.asarray, out)


def test_hindsight_bound_is_the_lp_value_above_every_affordable_set():
    """Exhaustive search over every set of won impressions of a 12-slot day: the LP bound is
    at least the best affordable set (the 0/1 knapsack optimum) and at most one impression's
    value above it; the hindsight multiplier wins the longest affordable prefix by value per
    price, which is below the bound."""
    env, params = ecomrl_jax.make("AdBidding-v1", **TINY_DAY)
    budgets = (0.01, 0.05, 0.1, 10.0)
    _, _, (auctions, bounds, greedy) = _tiny_days(env, params, budgets, 3)
    sets = np.array(list(itertools.product((0, 1), repeat=12)), bool)  # every subset
    for i, budget in enumerate(budgets * 3):
        v, c = auctions["value"][i].ravel(), auctions["price"][i].ravel()
        order = np.argsort(c / v)
        k = int(np.sum(np.cumsum(c[order]) <= budget))  # the longest affordable prefix
        lp = v[order[:k]].sum() + (0.0 if k == v.size else
                                   v[order[k]] * (budget - c[order[:k]].sum()) / c[order[k]])
        best = np.max(np.where(sets @ c <= budget, sets @ v, 0.0))
        np.testing.assert_allclose(bounds[i], lp, rtol=1e-5)
        assert best - 1e-6 <= bounds[i] <= best + v.max() + 1e-6
        out = {name: float(x[i]) for name, x in greedy.items()}
        np.testing.assert_allclose(out["value"], v[order[:k]].sum(), rtol=1e-5)
        assert out["spend"] <= budget and out["value"] <= bounds[i] + 1e-6
        won = out["multiplier"] * v > c
        np.testing.assert_allclose(v[won].sum(), out["value"], rtol=1e-5)
        if out["multiplier"] > 0:
            np.testing.assert_allclose(out["lam"], 1.0 / out["multiplier"], rtol=1e-6)
        else:  # not even one impression fits the budget
            assert out["value"] == 0 and out["lam"] == np.inf and c[order[0]] > budget
        if budget == 10.0:  # the budget does not bind: win everything, bound = total value
            assert won.all()
            np.testing.assert_allclose(bounds[i], v.sum(), rtol=1e-5)


def test_hindsight_bound_is_above_every_per_step_bid_sequence():
    """Exhaustive search over per-step bids, played through the env: at each step of a tiny day
    a multiplier wins a prefix of that step's auctions ranked by price / value, so 5 multipliers
    per step (win 0..4 of them) reach every outcome: 5 ** 3 sequences a day. None beats the LP
    bound; some beat the hindsight multiplier, which is no upper bound (the old claim)."""
    env, params = ecomrl_jax.make("AdBidding-v1", continuous=True, max_multiplier=1e6, **TINY_DAY)
    batch, day_keys, (auctions, bounds, greedy) = _tiny_days(env, params, (0.03, 0.06, 0.1), 10)

    def day_value(day_key, multipliers, p):  # summed expected value of one bid sequence
        state = env.reset(jax.random.key(0), p)[1].replace(day_key=day_key)

        def step(carry, m):
            state, alive, total = carry
            _, state, _, done, info = env.step_env(jax.random.key(1), state, m, p)
            return (state, alive & ~done, total + jnp.where(alive, info["expected_value"], 0.0)), None

        return jax.lax.scan(step, (state, jnp.bool_(True), jnp.float32(0.0)), multipliers)[0][2]

    ratios = np.sort(auctions["price"] / auctions["value"], axis=-1)  # (pairs, steps, auctions)
    options = np.concatenate([np.zeros(ratios.shape[:2] + (1,)), ratios * (1 + 1e-4)], axis=-1)
    choice = np.array(list(itertools.product(range(5), repeat=3)))  # (125, steps)
    sequences = np.take_along_axis(options[:, None], choice[None, :, :, None], -1)[..., 0]
    play = jax.vmap(jax.vmap(day_value, in_axes=(None, 0, None)))
    best = np.asarray(jax.jit(play)(day_keys, jnp.asarray(sequences, jnp.float32), batch)).max(1)
    assert np.all(best <= bounds * (1 + 1e-5))
    assert np.all(greedy["value"] <= best * (1 + 1e-5) + 1e-7)  # it is one of the sequences
    assert np.any(best > greedy["value"] * (1 + 1e-3))


@pytest.fixture(scope="module")
def ads_results():
    """The small continuous env; every baseline and the hindsight policy on the same 12 days."""
    env, params = ecomrl_jax.make("AdBidding-v1", num_auctions=50, num_steps=24, daily_budget=2.0,
                                  continuous=True)
    policies = {"truthful": constant_bid(env, params, 1.0),
                "shaded": constant_bid(env, params, 0.6),
                "pacing": linear_pacing(env, params), "hindsight": hindsight_policy(env, params)}
    key = jax.random.key(7)
    results = _evaluate_all(env, params, policies, key, 12)

    days = initial_states(env, params, key, 12)[1].day_key  # the days `evaluate` played
    greedy = jax.jit(jax.vmap(lambda k: hindsight_multiplier(env, k, params)))(days)
    bound = evaluated_bounds(env, params, key, 12)
    return results, {k: np.asarray(v) for k, v in greedy.items()}, np.asarray(bound)


def test_hindsight_policy_reaches_the_hindsight_multiplier_value(ads_results):
    results, greedy, _ = ads_results
    r = results["hindsight"]
    assert np.all(greedy["multiplier"] < 2.0)  # within max_multiplier: no clipping
    np.testing.assert_allclose(r["expected_value"], greedy["value"], rtol=1e-4)
    np.testing.assert_allclose(r["spend"], greedy["spend"], rtol=1e-4)
    assert np.all(r["spend"] <= 2.0) and np.all(r["invalid_actions"] == 0)
    assert np.all(r["length"] == 24)  # its bids never hit the budget early


def test_every_policy_is_below_the_bound_and_hindsight_beats_the_baselines(ads_results):
    results, greedy, bound = ads_results
    for name in ("truthful", "shaded", "pacing", "hindsight"):
        assert np.all(results[name]["expected_value"] <= bound * (1 + 1e-5)), name
        assert np.all(results[name]["spend"] <= 2.0 + 1e-5), name
    for name in ("truthful", "shaded", "pacing"):
        assert results[name]["expected_value"].mean() < 0.97 * greedy["value"].mean(), name
    assert results["pacing"]["expected_value"].mean() > results["truthful"]["expected_value"].mean()
    assert results["truthful"]["length"].mean() < 24  # bidding the value runs out of budget


def test_ads_baselines_map_multipliers_to_actions():
    env, params = ecomrl_jax.make("AdBidding-v1", num_auctions=4, num_steps=8)
    assert int(constant_bid(env, params, 1.0)(None, None, None, params)) == 10
    assert int(constant_bid(env, params, 0.64)(None, None, None, params)) == 6
    assert int(constant_bid(env, params, 9.0)(None, None, None, params)) == 20
    pacing = linear_pacing(env, params, base=1.0, gain=10.0)
    on_track = jnp.array([0.5, 0.5, 1, 0, 0, 0], jnp.float32)
    behind = jnp.array([0.5, 0.6, 0.8, 0, 0, 0], jnp.float32)  # spent 0.4 by half time
    ahead = jnp.array([0.5, 0.4, 1.2, 0, 0, 0], jnp.float32)
    assert int(pacing(None, on_track, None, params)) == 10
    assert int(pacing(None, behind, None, params)) == 20  # exp(1) = 2.7 -> clipped to the grid top
    assert int(pacing(None, ahead, None, params)) == 4  # exp(-1) = 0.37 -> 0.4
    cont, cparams = ecomrl_jax.make("AdBidding-v1", num_auctions=4, num_steps=8, continuous=True)
    np.testing.assert_allclose(linear_pacing(cont, cparams)(None, ahead, None, cparams),
                               np.exp(-1.0), rtol=1e-6)
