"""Invariants of DynamicPricing-v0 (ecomrl_jax/envs/pricing/dynamic_pricing.py); see docs/envs/dynamic_pricing.md.

Rollouts share one jitted program per env (params are traced arguments, so new param values
reuse it); demand formulas are checked against hand-written numbers.
"""

import datetime
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.pricing.dynamic_pricing import (DEMAND_MODELS, MAX_COMPETITOR_RATIO, SETTINGS,
                                                     DynamicPricing, EnvState)
from ecomrl_jax.spaces import MultiDiscrete
from tests.helpers import to_numpy

NUM_ENVS, NUM_STEPS = 128, 80
LINEAR, LOGIT, ELASTIC = (DEMAND_MODELS[k] for k in ("linear", "logit", "constant_elasticity"))


def _state(env, day=0, competitor=7.0, reference=6.0):
    n, h = env.num_products, env.history_len
    full = lambda x: jnp.full((n,), x, jnp.float32)  # noqa: E731
    return EnvState(time=jnp.int32(0), day=jnp.int32(day), competitor_price=full(competitor),
                    reference_price=full(reference), stock=full(math.inf),
                    price_history=jnp.zeros((h, n)), sales_history=jnp.zeros((h, n)))


@pytest.fixture(scope="module")
def discrete():
    return ecomrl_jax.make("DynamicPricing-v0")


@pytest.fixture(scope="module")
def demand(discrete):
    return jax.jit(discrete[0].expected_demand)


@pytest.fixture(scope="module")
def continuous():
    return ecomrl_jax.make("DynamicPricing-v0", continuous=True)


@pytest.fixture(scope="module")
def pair():
    """Two products, continuous prices, per-product demand intercepts."""
    return ecomrl_jax.make("DynamicPricing-v0", num_products=2, continuous=True,
                           linear_intercept=jnp.array([20.0, 30.0]))


def _runner(env):
    """Jitted `(params, keys, actions) -> records`: per env key, reset and take the given actions
    with the public `env.step` (auto-reset included). Records hold per step the state before
    (`state`) and after (`next`), action, obs, reward, flags and info (`final` = pre-reset obs)."""

    def episode(params, key, actions):
        k_reset, k_steps = jax.random.split(key)
        obs0, state = env.reset(k_reset, params)

        def body(state, x):
            k, action = x
            obs, nxt, reward, term, trunc, info = env.step(k, state, action, params)
            info = dict(info)
            final = info.pop("final_observation")
            return nxt, dict(state=state, action=action, next=nxt, obs=obs, final=final,
                             reward=reward, terminated=term, truncated=trunc, info=info)

        keys = jax.random.split(k_steps, actions.shape[0])
        return obs0, jax.lax.scan(body, state, (keys, actions))[1]

    run = jax.jit(lambda params, keys, actions: jax.lax.map(
        lambda x: episode(params, *x), (keys, actions)))
    return lambda params, keys, actions: to_numpy(run(params, keys, actions))


@pytest.fixture(scope="module")
def run(discrete):
    return _runner(discrete[0])


@pytest.fixture(scope="module")
def run_pair(pair):
    return _runner(pair[0])


def _keys(seed, n=NUM_ENVS):
    return jax.random.split(jax.random.key(seed), n)


def _random_actions(seed):
    """Uniform grid indices of the default 12-price grid, (NUM_ENVS, NUM_STEPS)."""
    return jax.random.randint(jax.random.key(seed), (NUM_ENVS, NUM_STEPS), 0, 12)


@pytest.fixture(scope="module")
def stock_rollout(discrete, run):
    """Finite stock (C=120, T=30) with random prices: stock-outs, horizons and resets all occur."""
    params = discrete[1].replace(**SETTINGS["finite_stock"])
    return params, run(params, _keys(1), _random_actions(2))


@pytest.fixture(scope="module")
def market_rollout(discrete, run):
    """Every market feature on (seasonal, competitor, loss-averse reference price)."""
    params = discrete[1].replace(**SETTINGS["seasonal"], **SETTINGS["competitor"],
                                 reference_gain=0.5, reference_loss=1.0, random_start_day=True)
    return params, run(params, _keys(3), _random_actions(4))


# --------------------------------------------------------------------------- demand models


def _full_market(params, model):
    return params.replace(demand_model=model, holiday_lift=0.5, competitor_effect=1.5,
                          reference_gain=0.5, reference_loss=2.0)


@pytest.mark.parametrize("model, price, plain, full", [
    # plain: no market effects. full: holiday (x1.5), competitor 9 vs mean 7 (effect 1.5),
    # reference 5 (gain 0.5, loss 2.0).
    (LINEAR, 6.0, 20 - 2 * 6, 1.5 * 20 - 2 * 6 + 1.5 * 2 - 2.0 * 1),
    (LOGIT, 6.0, 16 / (1 + math.exp(-(3 - 0.5 * 6))),
     16 / (1 + math.exp(-(3 + math.log(1.5) - 0.5 * 6 + 1.5 * 2 - 2.0 * 1)))),
    (ELASTIC, 4.0, 120 * 4**-1.5, 1.5 * 120 * 4**-1.5 * (9 / 7) ** 1.5 * math.exp(0.5 * 1)),
])
def test_demand_matches_formula(discrete, demand, model, price, plain, full):
    env, params = discrete
    got = demand(jnp.full(1, price), _state(env), params.replace(demand_model=model))
    np.testing.assert_allclose(got, [plain], rtol=1e-5)
    holiday = int(params.holiday_days[0])
    got = demand(jnp.full(1, price), _state(env, day=holiday, competitor=9.0, reference=5.0),
                 _full_market(params, model))
    np.testing.assert_allclose(got, [full], rtol=1e-5)


@pytest.mark.parametrize("model", [LINEAR, LOGIT, ELASTIC])
@pytest.mark.parametrize("gain, loss", [(0.5, 2.0), (2.0, 0.5)])
def test_demand_decreases_in_price_and_is_non_negative(discrete, demand, model, gain, loss):
    env, params = discrete
    params = params.replace(demand_model=model, weekly_amplitude=0.3, yearly_amplitude=0.5,
                            holiday_lift=1.0, competitor_effect=1.0, reference_gain=gain,
                            reference_loss=loss)
    prices = jnp.linspace(params.min_price, params.max_price, 500)[:, None]
    rng = np.random.default_rng(model)
    for _ in range(5):
        state = _state(env, day=int(rng.integers(0, 365)), competitor=rng.uniform(3, 12),
                       reference=rng.uniform(2, 11))
        d = np.asarray(demand(prices, state, params))[:, 0]
        assert np.all(np.isfinite(d)) and np.all(d >= 0)
        assert np.all(np.diff(d) <= 1e-5 * d[:-1])
        coarse = d[::20]  # strictly decreasing away from zero and from logit saturation
        inside = (coarse[:-1] > 1e-3) & (coarse[:-1] < 0.99 * d.max())
        assert inside.sum() >= 3 and np.all(np.diff(coarse)[inside] < 0)


def test_demand_is_capped_and_finite_in_extreme_params(discrete, demand):
    env, params = discrete
    params = params.replace(demand_model=ELASTIC, elastic_scale=1e30, elasticity=30.0,
                            min_price=1e-3, reference_gain=50.0)
    d = demand(jnp.full((1, 1), 1e-3), _state(env, reference=12.0), params)
    np.testing.assert_array_equal(d, 1e6)


# --------------------------------------------------------------------------- market features


def test_card_states_the_default_holidays_as_dates(discrete):
    """The card's dates of the default holidays are the code's days, counted from 0 = 1 January
    of a 365-day year (day 358 is 25 December, not Christmas Eve)."""
    env, _ = discrete
    card = (Path(__file__).resolve().parents[3] / "docs" / "envs" / "dynamic_pricing.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| `holiday_days`"))
    stated = re.findall(r"(\d+) (January|February|March|April|May|June|July|August|September|"
                        r"October|November|December)", row.split("(default:")[1])
    days = np.asarray(env.default_params.holiday_days).tolist()
    assert f"`{days}`".replace(" ", "") in row.replace(" ", "")
    dates = [datetime.date(2001, 1, 1) + datetime.timedelta(days=d) for d in days]  # 365 days
    assert stated == [(str(d.day), d.strftime("%B")) for d in dates]


def test_season_multiplier_weekly_yearly_and_holidays(discrete):
    env, params = discrete
    params = params.replace(weekly_amplitude=0.3, yearly_amplitude=0.4, holiday_lift=1.0)
    days = jnp.arange(3 * 365)
    m = np.asarray(jax.vmap(lambda d: env.season_multiplier(d, params))(days))
    d = np.arange(3 * 365)
    holiday = np.isin(d % 365, [326, 358])
    expected = ((1 + 0.3 * np.sin(2 * np.pi * (d % 7) / 7))
                * (1 + 0.4 * np.sin(2 * np.pi * (d % 365) / 365)) * (1 + holiday))
    np.testing.assert_allclose(m, expected, rtol=1e-5)
    assert np.all(m > 0) and holiday.sum() == 6
    weekly = params.replace(yearly_amplitude=0.0, holiday_lift=0.0)
    w = np.asarray(jax.vmap(lambda d: env.season_multiplier(d, weekly))(days))
    np.testing.assert_allclose(w[7:], w[:-7], rtol=1e-6)
    assert w.max() - w.min() > 0.5


def test_observed_calendar_and_time_features(market_rollout):
    params, (obs0, r) = market_rollout
    day, obs = r["next"].day, r["obs"]
    np.testing.assert_allclose(obs[..., 0], np.sin(2 * np.pi * (day % 7) / 7), atol=1e-5)
    np.testing.assert_allclose(obs[..., 1], np.cos(2 * np.pi * (day % 7) / 7), atol=1e-5)
    np.testing.assert_allclose(obs[..., 2], np.sin(2 * np.pi * (day % 365) / 365), atol=1e-5)
    np.testing.assert_allclose(obs[..., 3], np.cos(2 * np.pi * (day % 365) / 365), atol=1e-5)
    np.testing.assert_array_equal(obs[..., 4], np.isin(day % 365, [326, 358]))
    np.testing.assert_allclose(obs[..., -1], 1 - r["next"].time / params.max_steps_in_episode,
                               atol=1e-6)
    assert obs[..., 4].any()
    starts = r["state"].day[:, 0]  # random start day, drawn at reset
    assert len(np.unique(starts)) > NUM_ENVS // 2 and starts.min() >= 0 and starts.max() < 365
    np.testing.assert_array_equal(r["next"].day - r["next"].time,
                                  np.broadcast_to(starts[:, None], r["next"].day.shape))


def test_competitor_price_is_log_ar1(discrete, run):
    env, params = discrete
    params = params.replace(competitor_mean=8.0, competitor_persistence=0.8,
                            competitor_volatility=0.25, max_steps_in_episode=1000)
    r = run(params, _keys(5), jnp.zeros((NUM_ENVS, NUM_STEPS), jnp.int32))[1]
    x = np.log(np.concatenate([r["state"].competitor_price[:, :, 0],
                               r["next"].competitor_price[:, -1:, 0]], axis=1)) - math.log(8.0)
    phi, sigma = 0.8, 0.25
    stationary_sd = sigma / math.sqrt(1 - phi**2)
    # reset draws from the stationary law: mean log(mean price), sd sigma / sqrt(1 - phi^2)
    assert abs(x[:, 0].mean()) < 4 * stationary_sd / math.sqrt(NUM_ENVS)
    assert abs(x[:, 0].std() / stationary_sd - 1) < 0.25
    assert abs(x.mean()) < 0.15 * stationary_sd and abs(x.std() / stationary_sd - 1) < 0.1
    # one-step regression recovers the persistence and the innovation sd
    prev, nxt = x[:, :-1].ravel(), x[:, 1:].ravel()
    slope = (prev @ nxt) / (prev @ prev)
    assert abs(slope - phi) < 0.025
    assert abs((nxt - slope * prev).std() / sigma - 1) < 0.03
    assert np.all(r["next"].competitor_price > 0)


def test_competitor_price_stays_within_the_numerical_guard(discrete, run):
    """A huge volatility drives the log-AR(1) to MAX_COMPETITOR_RATIO times (or over) the mean,
    and no further: prices, observations and rewards stay finite."""
    env, params = discrete
    params = params.replace(competitor_volatility=50.0, competitor_effect=1.0)
    _, r = run(params, _keys(5), _random_actions(6))
    comp = r["next"].competitor_price
    np.testing.assert_allclose([comp.min(), comp.max()],
                               [7.0 / MAX_COMPETITOR_RATIO, 7.0 * MAX_COMPETITOR_RATIO], rtol=1e-4)
    assert np.all(np.isfinite(r["obs"])) and np.all(np.isfinite(r["reward"]))


def test_reference_price_is_exponential_smoothing(market_rollout):
    params, (_, r) = market_rollout
    live = ~(r["terminated"] | r["truncated"])
    lam = params.reference_smoothing
    price = r["info"]["price_per_product"]
    expected = lam * r["state"].reference_price + (1 - lam) * price
    np.testing.assert_allclose(r["next"].reference_price[live], expected[live], rtol=1e-5)
    np.testing.assert_allclose(r["state"].reference_price[:, 0], params.reference_init)


# --------------------------------------------------------------------------- step bookkeeping


def test_rewards_sales_and_histories(discrete, stock_rollout):
    env, _ = discrete
    params, (_, r) = stock_rollout
    info, state, nxt = r["info"], r["state"], r["next"]
    live = ~(r["terminated"] | r["truncated"])
    price = np.asarray(env.price_grid(params))[r["action"], 0]
    np.testing.assert_allclose(info["price_per_product"][..., 0], price)
    sales = info["sales_per_product"][..., 0]
    np.testing.assert_allclose(info["sales"], sales)
    np.testing.assert_allclose(info["revenue"], price * sales, rtol=1e-6)
    np.testing.assert_allclose(info["profit"], (price - params.unit_cost) * sales, rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(r["reward"], info["profit"], rtol=1e-6)  # reward_profit = 1
    np.testing.assert_allclose(info["lost_sales"], info["demand"] - info["sales"])
    np.testing.assert_array_equal(sales, np.minimum(info["demand"], state.stock[..., 0]))
    np.testing.assert_array_equal(nxt.stock[live],
                                  state.stock[live] - info["sales_per_product"][live])
    np.testing.assert_array_equal(nxt.price_history[live][:, 0], info["price_per_product"][live])
    np.testing.assert_array_equal(nxt.price_history[live][:, 1:], state.price_history[live][:, :-1])
    np.testing.assert_array_equal(nxt.sales_history[live][:, 0], info["sales_per_product"][live])
    np.testing.assert_array_equal(info["invalid_actions"], 0.0)
    assert r["reward"].dtype == np.float32 and np.all(np.isfinite(r["reward"]))
    for name in ("revenue", "profit", "sales", "demand", "lost_sales", "invalid_actions"):
        assert info[name].shape == (NUM_ENVS, NUM_STEPS) and info[name].dtype == np.float32



def test_reward_is_revenue_without_profit_weight(discrete, run):
    env, params = discrete
    r = run(params.replace(reward_profit=0.0, unit_cost=3.0), _keys(13), _random_actions(14))[1]
    np.testing.assert_array_equal(r["reward"], r["info"]["revenue"])
    assert np.all(r["info"]["profit"] < r["info"]["revenue"] + 1e-6) and r["reward"].sum() > 0


def test_finite_stock_never_negative_and_episode_ends_at_horizon(stock_rollout):
    params, (obs0, r) = stock_rollout
    info, state, nxt = r["info"], r["state"], r["next"]
    horizon = params.max_steps_in_episode
    assert np.all(state.stock >= 0) and np.all(nxt.stock >= 0)
    assert np.all(info["sales"] <= state.stock[..., 0])
    assert (info["lost_sales"] > 0).any() and (state.stock == 0).any()  # stock-outs happen
    ended = r["terminated"]
    assert not r["truncated"].any()  # the season's end terminates (HorizonEndsEpisode)
    np.testing.assert_array_equal(ended, (state.time + 1) == horizon)
    np.testing.assert_array_equal(ended, np.broadcast_to((np.arange(NUM_STEPS) + 1) % horizon == 0,
                                                         ended.shape))
    np.testing.assert_array_equal(nxt.stock[ended], params.initial_stock)  # reset refills
    np.testing.assert_allclose(r["final"][ended][:, -1], 0.0)  # no time left at the horizon
    stock_obs = r["obs"][..., -2]  # remaining-stock fraction
    np.testing.assert_allclose(stock_obs, nxt.stock[..., 0] / params.initial_stock, rtol=1e-6)


def test_unlimited_stock_ends_only_at_the_horizon(discrete, run):
    env, params = discrete
    params = params.replace(max_steps_in_episode=25)
    r = run(params, _keys(6), _random_actions(7))[1]
    assert not r["truncated"].any() and r["terminated"].sum() == NUM_ENVS * 3
    np.testing.assert_array_equal(r["info"]["lost_sales"], 0.0)
    np.testing.assert_array_equal(r["obs"][..., -2], 1.0)
    assert np.all(np.isinf(r["next"].stock))


def test_poisson_demand_and_deterministic_switch(discrete, run):
    env, params = discrete
    action = jnp.full((NUM_ENVS, NUM_STEPS), 5, jnp.int32)  # price 6: mean demand 8
    d = run(params, _keys(8), action)[1]["info"]["demand"]
    assert set(np.unique(d)) <= set(range(60))
    se = math.sqrt(8 / d.size)
    assert abs(d.mean() - 8) < 4 * se and abs(d.var() / 8 - 1) < 0.06
    fixed = run(params.replace(stochastic_demand=False), _keys(8), action)[1]["info"]
    np.testing.assert_array_equal(fixed["demand"], 8.0)
    np.testing.assert_array_equal(fixed["sales"], 8.0)


# --------------------------------------------------------------------------- observation


def test_observation_space_and_columns(discrete, market_rollout):
    env, _ = discrete
    params, (obs0, r) = market_rollout
    space = env.observation_space(params)
    assert isinstance(space, spaces.Box) and space.shape == (5 + (2 * 4 + 3) + 1,)
    for obs in (obs0, r["obs"], r["final"]):
        assert obs.shape[-1:] == space.shape and obs.dtype == np.float32
        assert np.all(np.isfinite(obs)) and np.abs(obs).max() < 10  # scaled to O(1)
    nxt, o = r["next"], r["obs"]
    h = env.history_len
    np.testing.assert_allclose(o[..., 5:5 + h], nxt.price_history[..., 0] / 12.0, rtol=1e-6)
    np.testing.assert_allclose(o[..., 5 + h:5 + 2 * h], np.log1p(nxt.sales_history[..., 0]),
                               rtol=1e-6)
    np.testing.assert_allclose(o[..., 5 + 2 * h], nxt.competitor_price[..., 0] / 12.0, rtol=1e-6)
    np.testing.assert_allclose(o[..., 6 + 2 * h], nxt.reference_price[..., 0] / 12.0, rtol=1e-6)
    np.testing.assert_array_equal(obs0[:, 5:5 + 2 * h], 0.0)  # empty history at reset


def test_demand_coefficients_are_hidden(discrete, run):
    """Until something is sold, nothing observed depends on the demand model or coefficients."""
    env, params = discrete
    obs = [run(params.replace(demand_model=m, linear_slope=s), _keys(15), _random_actions(16))[0]
           for m, s in [(LINEAR, 2.0), (LOGIT, 2.0), (LINEAR, 3.0)]]
    np.testing.assert_array_equal(obs[0], obs[1])
    np.testing.assert_array_equal(obs[0], obs[2])


# --------------------------------------------------------------------------- actions


def test_action_spaces(discrete, continuous):
    env, params = discrete
    assert isinstance(env.action_space(params), spaces.Discrete)
    assert env.action_space(params).n == 12 and env.num_actions == 12
    multi, mp = ecomrl_jax.make("DynamicPricing-v0", num_products=3, num_prices=5)
    space = multi.action_space(mp)
    assert isinstance(space, MultiDiscrete) and space.shape == (3,) and space.n == 5
    for k in range(5):
        assert bool(space.contains(space.sample(jax.random.key(k))))
    assert not bool(space.contains(jnp.array([0, 5, 1]))) and not bool(space.contains(jnp.zeros(2)))
    env, params = continuous
    box = env.action_space(params)
    assert isinstance(box, spaces.Box) and box.shape == (1,) and env.num_actions == 1
    np.testing.assert_array_equal(box.low, [1.0])
    np.testing.assert_array_equal(box.high, [12.0])


def test_out_of_range_grid_index_is_clipped_and_counted(discrete, run):
    env, params = discrete
    index = np.resize([-1, -50, 0, 5, 11, 12, 99], (NUM_ENVS, NUM_STEPS)).astype(np.int32)
    r = run(params, _keys(10), jnp.asarray(index))[1]
    np.testing.assert_array_equal(r["info"]["price_per_product"][..., 0],
                                  np.clip(index, 0, 11) + 1.0)  # grid 1, 2, ..., 12
    np.testing.assert_array_equal(r["info"]["invalid_actions"], (index < 0) | (index > 11))
    assert np.all(np.isfinite(r["obs"])) and np.all(np.isfinite(r["reward"]))


def test_continuous_prices_are_clipped_and_counted(pair, run_pair):
    env, params = pair
    raw = np.array([-3.0, 0.5, 1.0, 4.25, 12.0, 12.5, 1e9, np.inf, -np.inf, np.nan], np.float32)
    actions = np.resize(raw, (NUM_ENVS, NUM_STEPS, 2))
    r = run_pair(params, _keys(9), jnp.asarray(actions))[1]
    expected = np.clip(np.nan_to_num(actions, nan=1.0), 1.0, 12.0)
    np.testing.assert_array_equal(r["info"]["price_per_product"], expected)
    invalid = ~((actions >= 1.0) & (actions <= 12.0))
    np.testing.assert_array_equal(r["info"]["invalid_actions"], invalid.sum(-1))
    assert r["info"]["invalid_actions"].max() == 2 and r["info"]["invalid_actions"].min() == 0
    assert np.all(np.isfinite(r["reward"])) and np.all(np.isfinite(r["obs"]))


def test_products_are_independent_with_per_product_params(pair, run_pair):
    env, params = pair
    params = params.replace(stochastic_demand=False)
    prices = np.stack([np.full((NUM_ENVS, NUM_STEPS), 6.0),
                       np.resize([6.0, 10.0, 1.0, 3.5], (NUM_ENVS, NUM_STEPS))], -1)
    r = run_pair(params, _keys(12), jnp.asarray(prices, jnp.float32))
    sales = r[1]["info"]["sales_per_product"]
    np.testing.assert_array_equal(sales[..., 0], 8.0)  # unaffected by the other product's price
    np.testing.assert_allclose(sales[..., 1], 30.0 - 2 * prices[..., 1])
    np.testing.assert_allclose(r[1]["info"]["sales"], sales.sum(-1))
    assert r[0].shape[-1] == env.observation_space(params).shape[0] == 5 + 11 * 2 + 1


@pytest.mark.parametrize("which, action, error, match", [
    ("discrete", jnp.array([3]), ValueError, r"\(\)"),
    ("discrete", jnp.array([[3]]), ValueError, r"\(\)"),
    ("discrete", jnp.float32(3.0), TypeError, "integer"),
    ("discrete", 3.0, TypeError, "integer"),
    ("discrete", jnp.bool_(True), TypeError, "integer"),
    ("continuous", jnp.float32(6.0), ValueError, r"\(1,\)"),
    ("continuous", jnp.zeros(2), ValueError, r"\(1,\)"),
    ("continuous", jnp.array([True]), TypeError, "number"),
    ("multi", jnp.int32(1), ValueError, r"\(3,\)"),
    ("multi", jnp.zeros(3), TypeError, "integer"),
])
def test_bad_actions_raise(request, which, action, error, match):
    if which == "multi":
        env, params = ecomrl_jax.make("DynamicPricing-v0", num_products=3)
    else:
        env, params = request.getfixturevalue(which)
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(error, match=match):
        env.step(jax.random.key(1), state, action, params)


# --------------------------------------------------------------------------- domain randomisation


def test_vmap_over_params_equals_loop(discrete, run):
    """Domain randomisation: reset + step vmapped over keys, actions and params equals each
    member's first step in the (unbatched, lax.map) rollout."""
    env, params = discrete
    members = [params.replace(demand_model=m, holiday_lift=lift, competitor_effect=0.5,
                              start_day=326)
               for m, lift in [(LINEAR, 0.0), (LOGIT, 0.5), (ELASTIC, 1.0), (LINEAR, 2.0)]]
    batch = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]), *members)
    keys, actions = _keys(11)[:4], jnp.array([0, 3, 7, 11], jnp.int32)

    def first_step(key, action, p):
        k_reset, k_steps = jax.random.split(key)
        _, state = env.reset(k_reset, p)
        return env.step(jax.random.split(k_steps, NUM_STEPS)[0], state, action, p)

    obs, _, reward, _, _, info = to_numpy(jax.jit(jax.vmap(first_step))(keys, actions, batch))
    for i, member in enumerate(members):
        r = run(member, _keys(11), jnp.full((NUM_ENVS, NUM_STEPS), actions[i]))[1]
        np.testing.assert_allclose(obs[i], r["obs"][i, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reward[i], r["reward"][i, 0], rtol=1e-5)
        for name in ("demand", "sales", "revenue"):
            np.testing.assert_allclose(info[name][i], r["info"][name][i, 0], rtol=1e-5)
    assert len(np.unique(info["demand"])) > 1


# --------------------------------------------------------------------------- params and make


def test_settings_and_make():
    for name, overrides in SETTINGS.items():
        env, params = ecomrl_jax.make("DynamicPricing-v0", **overrides)
        env.validate_params(params)
        for field, value in overrides.items():
            assert getattr(params, field) == value, (name, field)
    env, params = ecomrl_jax.make("DynamicPricing-v0", num_products=2, continuous=True,
                                  demand_model=LOGIT, unit_cost=3.0)
    assert (env.num_products, env.continuous, params.demand_model, params.unit_cost) == (
        2, True, LOGIT, 3.0)
    assert "DynamicPricing-v0" in ecomrl_jax.list_envs()


BAD_PARAMS = [
    ("demand_model", 3), ("demand_model", -1), ("demand_model", 1.0),
    ("linear_slope", 0.0), ("linear_intercept", -1.0), ("market_size", 0.0),
    ("logit_utility", math.nan), ("logit_price", -0.5), ("elastic_scale", 0.0),
    ("elasticity", 0.0), ("min_price", 0.0), ("max_price", -1.0), ("max_price", 0.5),
    ("unit_cost", -1.0), ("reward_profit", 1.5), ("weekly_amplitude", 1.0),
    ("yearly_amplitude", -0.1), ("holiday_lift", -1.0), ("competitor_mean", 0.0),
    ("competitor_persistence", 1.0), ("competitor_volatility", -0.1),
    ("competitor_effect", math.inf), ("reference_init", 0.0), ("reference_smoothing", 1.5),
    ("reference_gain", -1.0), ("reference_loss", -1.0), ("initial_stock", 0.0),
    ("initial_stock", math.nan), ("stochastic_demand", 2), ("start_day", -1),
    ("max_steps_in_episode", 0), ("max_steps_in_episode", 10.0),
    ("holiday_days", jnp.array([365])), ("holiday_days", jnp.array([1.0])),
    ("holiday_days", jnp.array([[1]])), ("linear_slope", jnp.ones(2)),
    ("demand_model", jnp.zeros(1, jnp.int32)),
]


@pytest.mark.parametrize("field, value", BAD_PARAMS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_PARAMS)])
def test_validate_params_names_field_and_range(discrete, field, value):
    env, params = discrete
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        env.validate_params(params.replace(**{field: value}))
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        ecomrl_jax.make("DynamicPricing-v0", **{field: value})


def test_valid_edge_params(discrete):
    env, params = discrete
    env.validate_params(params.replace(initial_stock=math.inf, unit_cost=0.0,
                                       holiday_days=jnp.zeros(0, jnp.int32),
                                       competitor_persistence=0.0, reference_smoothing=1.0))
    multi = DynamicPricing(num_products=2)
    multi.validate_params(multi.default_params.replace(min_price=jnp.array([1.0, 2.0]),
                                                       initial_stock=jnp.array([5.0, math.inf])))
    with pytest.raises(ValueError, match="shape"):
        multi.validate_params(multi.default_params.replace(unit_cost=jnp.ones(3)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_products=0), "num_products"), (dict(num_prices=0), "num_prices"),
    (dict(history_len=0), "history_len"), (dict(num_prices=2.0), "num_prices"),
    (dict(continuous=1), "continuous"),
])
def test_constructor_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicPricing(**kwargs)
