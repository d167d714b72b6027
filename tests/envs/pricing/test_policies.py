"""Oracles, baselines and the bandit adapter of ecomrl_jax/envs/pricing/policies.py (DynamicPricing-v0).

Oracle prices are checked against closed forms and brute force over a fine grid; the
finite-stock DP against exhaustive enumeration of policies on a tiny instance and exact
evaluation of fixed prices (numpy, float64); bandits against the revenue-optimal grid price.
"""

import itertools
import math

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.learners import bandits as B
from ecomrl_jax.envs.pricing import policies as P
from ecomrl_jax.envs.pricing.dynamic_pricing import DEMAND_MODELS, SETTINGS, EnvState
from ecomrl_jax.evaluation import evaluate

LINEAR, LOGIT, ELASTIC = (DEMAND_MODELS[k] for k in ("linear", "logit", "constant_elasticity"))


def _state(env, day=0, competitor=7.0, reference=6.0, stock=math.inf, time=0):
    n, h = env.num_products, env.history_len
    full = lambda x: jnp.full((n,), x, jnp.float32)  # noqa: E731
    return EnvState(time=jnp.int32(time), day=jnp.int32(day), competitor_price=full(competitor),
                    reference_price=full(reference), stock=full(stock),
                    price_history=jnp.zeros((h, n)), sales_history=jnp.zeros((h, n)))


@pytest.fixture(scope="module")
def continuous():
    env, params = ecomrl_jax.make("DynamicPricing-v0", continuous=True)
    oracle = jax.jit(lambda state, p: P.myopic_price(env, state, p)[0])
    demand = jax.jit(env.expected_demand)
    return env, params, oracle, demand


# --------------------------------------------------------------------------- myopic oracle


MARKETS = [  # (day, competitor, reference, overrides): seasons, competitor and reference effects
    (0, 7.0, 6.0, {}),
    (326, 9.0, 6.0, dict(weekly_amplitude=0.2, yearly_amplitude=0.3, holiday_lift=0.5,
                         competitor_effect=1.0)),
    (100, 5.0, 7.5, dict(weekly_amplitude=0.2, competitor_effect=0.5, reference_gain=0.5,
                         reference_loss=1.5)),
    (40, 11.0, 4.0, dict(reference_gain=2.0, reference_loss=0.5, unit_cost=0.5)),
    (200, 7.0, 6.0, dict(reward_profit=0.0)),
]


@pytest.mark.parametrize("model", [LINEAR, LOGIT, ELASTIC])
@pytest.mark.parametrize("market", range(len(MARKETS)))
def test_oracle_price_matches_brute_force(continuous, model, market):
    env, params, oracle, demand = continuous
    day, competitor, reference, overrides = MARKETS[market]
    params = params.replace(demand_model=model, **overrides)
    state = _state(env, day, competitor, reference)
    price = float(oracle(state, params)[0])
    grid = np.linspace(params.min_price, params.max_price, 200_001, dtype=np.float32)
    unit = np.float64(params.reward_profit * params.unit_cost)

    def objective(p):
        p = np.asarray(p, np.float32).reshape(-1, 1)
        mean = np.asarray(demand(jnp.asarray(p), state, params), np.float64)[:, 0]
        return (p[:, 0] - unit) * mean

    values = objective(grid)
    best = values.max()
    assert objective([price])[0] >= best - 1e-5 * abs(best) - 1e-6
    # the price itself is close to the brute-force one (unless the objective is flat there)
    near = grid[values >= best - 1e-4 * abs(best)]
    assert near.min() - 1e-3 <= price <= near.max() + 1e-3


@pytest.mark.parametrize("day, competitor", [(0, 7.0), (326, 9.5), (90, 4.0)])
def test_oracle_price_matches_closed_forms(continuous, day, competitor):
    env, params, oracle, _ = continuous
    market = dict(weekly_amplitude=0.2, yearly_amplitude=0.3, holiday_lift=0.5,
                  competitor_effect=1.0)
    state = _state(env, day, competitor)
    season = float(env.season_multiplier(jnp.int32(day), params.replace(**market)))
    c = params.unit_cost
    # linear: maximise (p - c)(A - b p), A = season * a + effect * (competitor - mean)
    p = params.replace(demand_model=LINEAR, **market)
    a = season * p.linear_intercept + 1.0 * (competitor - p.competitor_mean)
    np.testing.assert_allclose(oracle(state, p), [(a / p.linear_slope + c) / 2], rtol=1e-5)
    # constant elasticity: markup rule p = e c / (e - 1), whatever the demand level
    p = params.replace(demand_model=ELASTIC, elasticity=2.5, **market)
    np.testing.assert_allclose(oracle(state, p), [2.5 * c / 1.5], rtol=1e-5)
    # ... and for revenue the cheapest (e > 1) or dearest (e < 1) price
    np.testing.assert_allclose(oracle(state, p.replace(reward_profit=0.0)), [1.0], rtol=1e-6)
    np.testing.assert_allclose(oracle(state, p.replace(reward_profit=0.0, elasticity=0.5)),
                               [12.0], rtol=1e-6)
    # logit: first-order condition p - c = 1 / (beta (1 - share)) at the optimum
    p = params.replace(demand_model=LOGIT, **market)
    price = float(oracle(state, p)[0])
    u = (p.logit_utility + math.log(season) - p.logit_price * price
         + 1.0 * (competitor - p.competitor_mean))
    share = 1 / (1 + math.exp(-u))
    assert abs((price - c) - 1 / (p.logit_price * (1 - share))) < 1e-4


def test_discrete_oracle_is_grid_argmax_and_runs_as_policy():
    env, params = ecomrl_jax.make("DynamicPricing-v0", num_prices=7, demand_model=LOGIT,
                                  competitor_effect=0.5)
    policy = jax.jit(P.myopic_oracle(env, params))
    grid = np.asarray(env.price_grid(params))
    for competitor in (3.0, 7.0, 12.0):
        state = _state(env, competitor=competitor)
        values = (grid - params.unit_cost) * np.asarray(env.expected_demand(grid, state, params))
        action = policy(jax.random.key(0), None, state, params)
        assert action.shape == () and action.dtype == jnp.int32
        assert int(action) == int(np.argmax(values[:, 0]))


def test_multi_product_oracle_prices_each_product():
    env, params = ecomrl_jax.make("DynamicPricing-v0", num_products=3, continuous=True,
                                  linear_intercept=jnp.array([12.0, 20.0, 28.0]))
    price = jax.jit(lambda s, p: P.myopic_price(env, s, p)[0])(_state(env), params)
    np.testing.assert_allclose(price, [(12 / 2 + 2) / 2, (20 / 2 + 2) / 2, (28 / 2 + 2) / 2],
                               rtol=1e-5)


# --------------------------------------------------------------------------- rule baselines


def test_fixed_and_cost_plus_prices(continuous):
    env, params = ecomrl_jax.make("DynamicPricing-v0")  # grid 1, 2, ..., 12
    state = _state(env)
    act = lambda policy, p=params: int(policy(jax.random.key(0), None, state, p))  # noqa: E731
    assert act(P.fixed_price_policy(env, params, 8.0)) == 7
    assert act(P.fixed_price_policy(env, params, 8.4)) == 7
    assert act(P.fixed_price_policy(env, params, 8.5)) == 7  # tie: the lower grid price
    assert act(P.fixed_price_policy(env, params, 50.0)) == 11
    assert act(P.cost_plus_policy(env, params)) == 3  # keystone: 2 * unit cost = 4
    dearer = params.replace(unit_cost=3.0)  # the policy reads the cost from the params it is given
    assert act(P.cost_plus_policy(env, params, markup=0.5), dearer) == 3  # 4.5, tie -> 4
    assert act(P.cost_plus_policy(env, params, markup=0.5)) == 2  # 3
    env, params = continuous[:2]
    state = _state(env)
    np.testing.assert_allclose(P.cost_plus_policy(env, params, 0.25)(None, None, state, params),
                               [2.5])
    np.testing.assert_allclose(P.fixed_price_policy(env, params, 0.1)(None, None, state, params),
                               [1.0])


def test_policies_refuse_other_envs():
    env, params = gymnax.make("CartPole-v1")
    for factory in (P.myopic_oracle, P.cost_plus_policy, P.dp_policy):
        with pytest.raises(ValueError, match="DynamicPricing"):
            factory(env, params)


# --------------------------------------------------------------------------- finite-stock DP


def _exact_values(policies, lam, unit_margin, capacity):
    """Expected returns (N,) of Markov policies (N, T, C+1) -> price index, from full stock,
    by forward propagation of the stock distribution; float64."""
    d = np.arange(capacity + 1)
    lam = np.maximum(np.asarray(lam, np.float64), 1e-300)[:, None]  # mean 0: pmf (1, 0, ...)
    pmf = np.exp(d * np.log(lam) - lam - np.array([math.lgamma(x + 1) for x in d]))  # (K, D)
    sold = np.zeros((len(lam), capacity + 1, capacity + 1))  # [k, s, d]: P(sales = d | stock s)
    for s in range(capacity + 1):
        sold[:, s, :s] = pmf[:, :s]
        sold[:, s, s] = 1.0 - pmf[:, :s].sum(1)
    n = policies.shape[0]
    dist, total = np.zeros((n, capacity + 1)), np.zeros(n)
    dist[:, capacity] = 1.0
    for t in range(policies.shape[1]):
        new = np.zeros_like(dist)
        for s in range(capacity + 1):
            k = policies[:, t, s]
            probs = dist[:, s, None] * sold[k, s, :s + 1]  # (N, s+1) over units sold
            total += unit_margin[k] * (probs @ d[:s + 1])
            new[:, :s + 1] += probs[:, ::-1]  # selling d leaves s - d
        dist = new
    return total


@pytest.fixture(scope="module")
def tiny():
    """Stock 3, horizon 3, prices 4, 6, 8: mean demand 2.4, 1.6, 0.8, margins 2, 4, 6."""
    env, params = ecomrl_jax.make("DynamicPricing-v0", num_prices=3, min_price=4.0,
                                  max_price=8.0, linear_intercept=4.0, linear_slope=0.4,
                                  initial_stock=3.0, max_steps_in_episode=3)
    return env, params, np.array([2.4, 1.6, 0.8]), np.array([2.0, 4.0, 6.0])


def test_dp_matches_enumeration_of_all_policies(tiny):
    env, params, lam, unit_margin = tiny
    tables = P.dp_tables(env, params)
    assert tables.value.shape == (1, 4, 4) and tables.action.shape == (1, 3, 4)
    np.testing.assert_allclose(tables.prices[:, 0], [4.0, 6.0, 8.0])
    # every Markov policy over the reachable states (t=0: s=3; t=1, 2: s=0..3): 3**9 of them
    choices = np.array(list(itertools.product(range(3), repeat=9)))
    policies = np.zeros((len(choices), 3, 4), int)
    policies[:, 0, 3] = choices[:, 0]
    policies[:, 1], policies[:, 2] = choices[:, 1:5], choices[:, 5:]
    values = _exact_values(policies, lam, unit_margin, 3)
    best = values.max()
    np.testing.assert_allclose(tables.value[0, 0, 3], best, rtol=1e-5)
    dp_value = _exact_values(np.asarray(tables.action)[:1], lam, unit_margin, 3)[0]
    np.testing.assert_allclose(dp_value, best, rtol=1e-6)
    policy = P.dp_policy(env, params)  # looks the optimal index up by period and stock left
    for t, s in itertools.product(range(3), range(4)):
        action = policy(None, None, _state(env, stock=float(s), time=t), params)
        assert action.shape == () and int(action) == int(tables.action[0, t, s])
    fixed = _exact_values(np.broadcast_to(np.arange(3)[:, None, None], (3, 3, 4)), lam,
                          unit_margin, 3)
    assert best > fixed.max() + 0.05  # adapting the price to stock and time pays
    np.testing.assert_allclose(tables.value[0, -1], 0.0)
    # a continuous env's DP over the same three prices gives the same tables
    cont, cparams = ecomrl_jax.make("DynamicPricing-v0", continuous=True, min_price=4.0,
                                    max_price=8.0, linear_intercept=4.0, linear_slope=0.4,
                                    initial_stock=3.0, max_steps_in_episode=3)
    other = P.dp_tables(cont, cparams, num_prices=3)
    np.testing.assert_allclose(other.value, tables.value, rtol=1e-6)
    np.testing.assert_array_equal(other.action, tables.action)


def test_dp_beats_fixed_prices_and_its_value_is_realised():
    env, params = ecomrl_jax.make("DynamicPricing-v0", **SETTINGS["finite_stock"])
    tables = P.dp_tables(env, params)
    capacity, horizon = 120, 30
    lam = np.asarray(env.expected_demand(env.price_grid(params), _state(env), params))[:, 0]
    unit_margin = np.asarray(env.price_grid(params))[:, 0] - params.unit_cost
    v0 = float(tables.value[0, 0, capacity])
    fixed = _exact_values(np.broadcast_to(np.arange(env.num_prices)[:, None, None],
                                          (env.num_prices, horizon, capacity + 1)),
                          lam, unit_margin, capacity)
    assert v0 > fixed.max() + 5, (v0, fixed)  # ~706 vs ~695 for the best fixed price (8)
    assert np.all(np.diff(tables.value[0, 0]) >= -1e-3)  # more stock is never worse
    assert np.all(np.diff(tables.value[0, :, capacity]) <= 1e-3)  # nor is more time left
    n = 256
    result = evaluate(env, params, P.dp_policy(env, params), jax.random.key(3), n)
    ret = np.asarray(result["return"], np.float64)
    assert abs(ret.mean() - v0) < 4 * ret.std() / math.sqrt(n)
    np.testing.assert_array_equal(result["length"], horizon)
    assert np.all(result["sales"] <= capacity)


@pytest.mark.parametrize("overrides, field", [
    (dict(weekly_amplitude=0.1), "weekly_amplitude"),
    (dict(holiday_lift=0.5), "holiday_lift"),
    (dict(competitor_effect=1.0), "competitor_effect"),
    (dict(reference_loss=1.0), "reference_loss"),
    (dict(stochastic_demand=False), "stochastic_demand"),
    (dict(initial_stock=math.inf), "initial_stock"),
    (dict(initial_stock=10.5), "initial_stock"),
])
def test_dp_refuses_what_it_does_not_model(overrides, field):
    env, params = ecomrl_jax.make("DynamicPricing-v0", **SETTINGS["finite_stock"])
    with pytest.raises(ValueError, match=rf"params\.{field}"):
        P.dp_tables(env, params.replace(**overrides))


# --------------------------------------------------------------------------- predictive baseline


def test_predictive_baseline_recovers_near_oracle_profit():
    env, params = ecomrl_jax.make("DynamicPricing-v0", **SETTINGS["stationary"])
    oracle_return = 32.0 * params.max_steps_in_episode  # p* = 6 sells 8 at margin 4, every day
    key = jax.random.key(5)
    result = P.run_predictive(env, params, key, 64, explore_steps=10)
    ret = np.asarray(result["return"])
    assert ret.mean() > 0.88 * oracle_return and ret.max() <= oracle_return * 1.2
    assert set(result) >= {"return", "length", "revenue", "profit", "sales", "lost_sales"}
    np.testing.assert_array_equal(result["length"], params.max_steps_in_episode)
    np.testing.assert_allclose(result["return"], result["profit"], rtol=1e-5)
    again = P.run_predictive(env, params, key, 64, explore_steps=10)
    np.testing.assert_array_equal(again["return"], result["return"])  # same key, same episodes
    # too little exploration learns less
    short = P.run_predictive(env, params, key, 64, explore_steps=2)
    assert np.asarray(short["return"]).mean() < ret.mean()


@pytest.mark.parametrize("kwargs, match", [
    (dict(explore_steps=1), "explore_steps"),
    (dict(explore_steps=101), "explore_steps"),
    (dict(explore_steps=10, model="cubic"), "model"),
    (dict(explore_steps=10, num_episodes=0), "num_episodes"),
])
def test_run_predictive_rejects_bad_arguments(kwargs, match):
    env, params = ecomrl_jax.make("DynamicPricing-v0")
    kwargs = {"num_episodes": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        P.run_predictive(env, params, jax.random.key(0), **kwargs)


# --------------------------------------------------------------------------- bandit adapter


@pytest.mark.slow
def test_bandit_learns_the_revenue_optimal_grid_price():
    env, params = ecomrl_jax.make("DynamicPricing-v0", **SETTINGS["stationary"], reward_profit=0.0)
    algo = B.GaussianThompson(prior_std=100.0, noise_std=20.0)
    run = jax.jit(P.make_bandit_run(algo, env, params, 3000))
    state, rewards = run(jax.random.key(0))
    assert rewards.shape == (3000,) and np.all(np.isfinite(rewards)) and np.all(rewards >= 0)
    np.testing.assert_array_equal(run(jax.random.key(0))[1], rewards)  # same key, same run
    # revenue p (20 - 2p) peaks at p = 5 (grid index 4): played most, and the frozen policy
    # earns what the revenue oracle earns on the same episodes
    assert int(np.argmax(state.counts)) == 4 and state.counts[4] > 0.5 * 3000
    key = jax.random.key(1)
    frozen = evaluate(env, params, P.bandit_policy(algo, env, state), key, 16)["revenue"]
    oracle = evaluate(env, params, P.myopic_oracle(env, params), key, 16)["revenue"]
    assert frozen.mean() >= 0.99 * oracle.mean()


@pytest.mark.slow
def test_contextual_bandit_sees_calendar_and_competitor_and_uses_them():
    env, params = ecomrl_jax.make("DynamicPricing-v0", **SETTINGS["competitor"], reward_profit=0.0)
    obs, state = env.reset(jax.random.key(0), params)
    contexts = P.bandit_contexts(env, obs, contextual=True)
    assert contexts.shape == (env.num_prices, 7)
    np.testing.assert_array_equal(contexts[3], np.concatenate([[1.0], obs[:5], obs[13:14]]))
    np.testing.assert_allclose(obs[13] * params.max_price, state.competitor_price[0], rtol=1e-6)
    np.testing.assert_array_equal(P.bandit_contexts(env, obs, False), np.ones((12, 1)))
    # the best price follows the competitor's, which only the contextual bandit can see
    key = jax.random.key(1)
    scores = {}
    for name, algo, contextual in (("plain", B.GaussianThompson(prior_std=100.0, noise_std=20.0),
                                    False), ("linear", B.LinearThompson(v=20.0), True)):
        state, _ = jax.jit(P.make_bandit_run(algo, env, params, 4000, contextual))(key)
        scores[name] = evaluate(env, params, P.bandit_policy(algo, env, state, contextual), key,
                                16)["revenue"].mean()
    assert scores["linear"] > 1.02 * scores["plain"]


def test_bandit_adapter_rejects_what_it_cannot_run():
    env, params = ecomrl_jax.make("DynamicPricing-v0")
    with pytest.raises(ValueError, match="bounded rewards"):
        P.make_bandit_run(B.UCB1(), env, params, 10)
    with pytest.raises(ValueError, match="contextual"):
        P.make_bandit_run(B.LinUCB(), env, params, 10)
    with pytest.raises(ValueError, match="num_rounds"):
        P.make_bandit_run(B.EpsilonGreedy(), env, params, 0)
    for kwargs in (dict(continuous=True), dict(num_products=2)):
        other, other_params = ecomrl_jax.make("DynamicPricing-v0", **kwargs)
        with pytest.raises(ValueError, match="one product on a price grid"):
            P.make_bandit_run(B.EpsilonGreedy(), other, other_params, 10)
    with pytest.raises(ValueError, match="DynamicPricing"):
        P.bandit_policy(B.EpsilonGreedy(), gymnax.make("CartPole-v1")[0], None)
