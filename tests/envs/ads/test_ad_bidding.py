"""Invariants of AdBidding-v1 (ecomrl_jax/envs/ads/ad_bidding.py); see docs/envs/ad_bidding.md.

Tests share one jitted rollout program (fixture `run`) batched with `lax.map` and jitted
steps; `vmap` is tested on its own.
"""

import dataclasses

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.ads.ad_bidding import AdBidding, EnvState, normal_pairs, settle
from tests.helpers import to_numpy

NUM_ENVS = 16
# Small days keep compilation and rollouts cheap: 24 steps of 50 auction slots.
SIZES = dict(num_auctions=50, num_steps=24)
SMALL_BUDGET = 3.0  # about what bidding the value (multiplier 1) spends in such a day


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def ads():
    return ecomrl_jax.make("AdBidding-v1", daily_budget=SMALL_BUDGET, **SIZES)


@pytest.fixture(scope="module")
def ads_cont():
    return ecomrl_jax.make("AdBidding-v1", daily_budget=SMALL_BUDGET, continuous=True, **SIZES)


def _runner(env):
    """Jitted `(params, keys, actions) -> (first obs, records)`: per env key, reset and take
    one public step per action (auto-reset included)."""

    def episode(params, key, actions):
        k_reset, k_steps = jax.random.split(key)
        obs0, state = env.reset(k_reset, params)

        def body(state, x):
            k, action = x
            obs, nxt, reward, term, trunc, info = env.step(k, state, action, params)
            info = {k: v for k, v in info.items() if k not in ("final_observation", "terminated",
                                                                "truncated")}
            return nxt, dict(state=state, action=action, next=nxt, obs=obs, reward=reward,
                             terminated=term, truncated=trunc, info=info)

        keys = jax.random.split(k_steps, actions.shape[0])
        return obs0, jax.lax.scan(body, state, (keys, actions))[1]

    fn = jax.jit(lambda params, keys, actions: jax.lax.map(
        lambda x: episode(params, *x), (keys, actions)))

    def call(params, keys, actions, num_steps=40):
        actions = jnp.broadcast_to(jnp.asarray(actions, jnp.int32), (keys.shape[0], num_steps))
        return to_numpy(fn(params, keys, actions))

    return call


@pytest.fixture(scope="module")
def run(ads):
    return _runner(ads[0])


@pytest.fixture(scope="module")
def step(ads):
    return jax.jit(ads[0].step_env)


@pytest.fixture(scope="module")
def step_cont(ads_cont):
    return jax.jit(ads_cont[0].step_env)


@pytest.fixture(scope="module")
def auctions(ads):
    """Jitted `(day_key, t, params) -> auctions` of one step, as numpy."""
    fn = jax.jit(ads[0].auctions)
    return lambda *args: to_numpy(fn(*args))


def _keys(seed, n=NUM_ENVS):
    return jax.random.split(jax.random.key(seed), n)


@pytest.fixture(scope="module")
def rollout(ads, run):
    """Uniformly random grid indices (a few out of range)."""
    env, params = ads
    actions = jax.random.randint(jax.random.key(0), (NUM_ENVS, 40), -1, env.num_actions + 1)
    return run(params, _keys(1), actions)


# --------------------------------------------------------------------------- second price, budget


def test_settle_second_price_hand_computed():
    bids = jnp.array([1.0, 0.5, 2.0, 0.7, 3.0])
    prices = jnp.array([0.6, 0.7, 1.5, 0.7, 0.2])
    active = jnp.array([True, True, True, True, False])
    # 0 wins at 0.6; 1 loses (0.5 < 0.7); 2 wins at 1.5 (its competitor's bid, not its own 2.0);
    # 3 ties and loses; 4 is not an auction
    wins, spend, blocked = settle(bids, prices, active, jnp.float32(10.0))
    np.testing.assert_array_equal(wins, [True, False, True, False, False])
    np.testing.assert_allclose(spend, 2.1, rtol=1e-6)
    assert not blocked
    # budget 2.0: the win at 1.5 would overshoot (0.6 + 1.5 > 2.0), so it and all later are lost
    bids = bids.at[3].set(0.8)  # 3 now beats 0.7, but comes after the blocked auction
    wins, spend, blocked = settle(bids, prices, active, jnp.float32(2.0))
    np.testing.assert_array_equal(wins, [True, False, False, False, False])
    np.testing.assert_allclose(spend, 0.6, rtol=1e-6)
    assert blocked
    wins, spend, blocked = settle(bids, prices, active, jnp.float32(2.1))
    np.testing.assert_array_equal(wins, [True, False, True, False, False])
    assert blocked and spend <= 2.1  # auction 3 (0.7 more) no longer fits


def test_step_pays_second_price_for_each_win(ads, step, auctions):
    env, params = ads
    _, state = env.reset(jax.random.key(3), params)
    state = state.replace(time=jnp.int32(20), budget_left=jnp.float32(1e6))
    auc = auctions(state.day_key, state.time, params)
    for index in (8, 12, 20):
        m = float(params.bid_multipliers[index])
        _, post, reward, term, info = to_numpy(step(jax.random.key(0), state, jnp.int32(index), params))
        wins = auc["active"] & (np.float32(m) * auc["value"] > auc["price"])
        assert wins.sum() > 0 and (auc["active"] & ~wins).sum() > 0
        assert info["impressions_won"] == wins.sum()
        np.testing.assert_allclose(info["spend"], auc["price"][wins].sum(), rtol=1e-5)
        np.testing.assert_allclose(info["expected_value"], auc["value"][wins].sum(), rtol=1e-5)
        np.testing.assert_allclose(post.budget_left, 1e6 - info["spend"], rtol=1e-6)
        assert not term and info["clicks"] <= wins.sum() and info["conversions"] <= info["clicks"]
        np.testing.assert_allclose(reward, params.value_per_click * info["clicks"]
                                   + params.value_per_conversion * info["conversions"])


def test_budget_never_negative_and_day_ends_when_exhausted(ads, run):
    env, params = ads
    _, rec = run(params, _keys(2), env.num_actions - 1)  # the highest multiplier
    info, s, nxt = rec["info"], rec["state"], rec["next"]
    done = rec["terminated"] | rec["truncated"]
    assert rec["terminated"].sum() >= NUM_ENVS  # every day runs out of budget
    assert np.all(s.budget_left >= 0) and np.all(info["spend"] <= s.budget_left)
    np.testing.assert_allclose(s.spend + s.budget_left, SMALL_BUDGET, rtol=1e-5)
    np.testing.assert_allclose((s.budget_left - info["spend"])[~done], nxt.budget_left[~done])
    # budget_left is reported on the day's last step only: the day's unspent budget
    np.testing.assert_array_equal(info["budget_left"][~done], 0.0)
    np.testing.assert_allclose(info["budget_left"][done], (s.budget_left - info["spend"])[done],
                               rtol=1e-6, atol=1e-7)
    # a day's total spend never exceeds the budget
    for i in range(NUM_ENVS):
        ends = np.flatnonzero(done[i]) + 1
        for day in np.split(info["spend"][i], ends)[:-1]:
            assert day.sum() <= SMALL_BUDGET * (1 + 1e-6)
    np.testing.assert_array_equal(nxt.time[done], 0)
    np.testing.assert_allclose(nxt.budget_left[done], SMALL_BUDGET)


def test_day_ends_terminated_at_its_last_step_with_unspent_budget(ads, run):
    env, params = ads
    _, rec = run(params, _keys(3), 4)  # multiplier 0.4: never spends the budget
    assert not rec["truncated"].any()  # the day's end is the problem's end (HorizonEndsEpisode)
    expected = np.broadcast_to((np.arange(40) + 1) % env.num_steps == 0, rec["terminated"].shape)
    np.testing.assert_array_equal(rec["terminated"], expected)
    assert np.all(rec["info"]["budget_left"][expected] > 0)
    np.testing.assert_allclose(rec["obs"][..., 0], rec["next"].time / env.num_steps)


# --------------------------------------------------------------------------- observations, infos


def test_observation_space_and_values(ads, rollout):
    env, params = ads
    space = env.observation_space(params)
    assert isinstance(space, spaces.Box) and space.shape == (6,) and space.dtype == jnp.float32
    obs0, rec = rollout
    for obs in (obs0, rec["obs"]):
        assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
        assert bool(space.contains(jnp.asarray(obs)))
    np.testing.assert_array_equal(obs0, np.broadcast_to([0, 1, 0, 0, 0, 0], obs0.shape))
    nxt = rec["next"]
    np.testing.assert_allclose(rec["obs"][..., 1], nxt.budget_left / SMALL_BUDGET, rtol=1e-6)
    assert np.all((nxt.recent_win_rate >= 0) & (nxt.recent_win_rate <= 1))
    assert rec["obs"][..., 3].max() > 0.05 and rec["obs"][..., 5].max() > 0.1
    assert set(rec["info"]) == {"spend", "value", "expected_value", "clicks", "conversions",
                                "impressions_won", "budget_left", "invalid_actions"}
    for v in rec["info"].values():
        assert v.dtype == np.float32 and np.all(np.isfinite(v)) and np.all(v >= 0)
    assert rec["reward"].dtype == np.float32
    np.testing.assert_array_equal(rec["reward"], rec["info"]["value"])


def test_auctions_are_valid_and_follow_the_daily_pattern(ads):
    env, params = ads
    days = to_numpy(jax.jit(jax.vmap(lambda k: env.day_auctions(
        jax.random.bits(k, (2,), jnp.uint32), params)))(_keys(4, 64)))
    for name in ("ctr", "cvr"):
        assert np.all((days[name] > 0) & (days[name] <= 1))
    assert np.all(days["price"] > 0) and np.all(np.isfinite(days["price"]))
    np.testing.assert_array_equal(days["value"][~days["active"]], 0.0)
    np.testing.assert_allclose(days["value"], days["active"] * days["ctr"], rtol=1e-6)
    traffic = days["active"].mean((0, 2))  # by step
    assert traffic[int(0.8 * env.num_steps)] > 3 * traffic[int(0.3 * env.num_steps)]
    log_price = np.log(days["price"]).mean((0, 2))
    assert log_price[env.num_steps // 2] - log_price[0] > 0.5  # competition peaks at midday
    # days differ in level: per-day traffic has a spread beyond binomial noise
    assert days["active"].mean((1, 2)).std() > 0.05


def test_continuous_actions_are_clipped_and_counted(ads_cont, step_cont):
    env, params = ads_cont
    space = env.action_space(params)
    assert isinstance(space, spaces.Box) and space.shape == () and space.high == 2.0
    step = step_cont
    _, state = env.reset(jax.random.key(3), params)
    for action, equivalent, invalid in [(-1.0, 0.0, 1.0), (5.0, 2.0, 1.0), (jnp.inf, 2.0, 1.0),
                                        (jnp.nan, 0.0, 1.0), (1.3, 1.3, 0.0), (2.0, 2.0, 0.0)]:
        out = step(jax.random.key(1), state, jnp.float32(action), params)
        ref = step(jax.random.key(1), state, jnp.float32(equivalent), params)
        assert out[4]["invalid_actions"] == invalid and ref[4]["invalid_actions"] == 0.0
        for x, y in zip(jax.tree.leaves(out[:4]), jax.tree.leaves(ref[:4]), strict=True):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(TypeError, match="numbers"):
        env.step(jax.random.key(1), state, jnp.bool_(True), params)
    with pytest.raises(ValueError, match=r"\(\)"):
        env.step(jax.random.key(1), state, jnp.array([1.0]), params)


def test_continuous_equals_discrete_at_grid_points(ads, step, step_cont, rollout):
    env, params = ads
    for i, t in [(0, 2), (5, 17), (9, 30)]:
        state = _index(rollout[1]["state"], (i, t))
        for index in (3, 7, 15):
            disc = step(jax.random.key(t), state, jnp.int32(index), params)
            cont = step_cont(jax.random.key(t), state, params.bid_multipliers[index], params)
            for x, y in zip(jax.tree.leaves(disc), jax.tree.leaves(cont), strict=True):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad", [-1, 21, 500])
def test_out_of_range_index_sits_the_step_out(ads, step, bad):
    env, params = ads
    _, state = env.reset(jax.random.key(3), params)
    out = to_numpy(step(jax.random.key(1), state, jnp.int32(bad), params))
    ref = to_numpy(step(jax.random.key(1), state, jnp.int32(0), params))  # multiplier 0
    assert out[4]["invalid_actions"] == 1.0 and out[4]["impressions_won"] == 0
    for x, y in zip(jax.tree.leaves(out[:4]), jax.tree.leaves(ref[:4]), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bad_discrete_actions_raise(ads):
    env, params = ads
    _, state = env.reset(jax.random.key(0), params)
    for action in (jnp.float32(1.0), 1.0):
        with pytest.raises(TypeError, match="integer"):
            env.step(jax.random.key(1), state, action, params)
    for action in ([1], [[1]]):
        with pytest.raises(ValueError, match=r"\(\)"):
            env.step(jax.random.key(1), state, jnp.asarray(action, jnp.int32), params)


# --------------------------------------------------------------------------- v1's draws vs v0's


def auctions_v0(env, day_key, t, params):
    """AdBidding-v0's sampler (split keys, jax.random.normal), kept here to check that v1 draws
    the same distributions."""
    n = env.num_auctions
    k_day, k_steps = jax.random.split(jax.random.wrap_key_data(day_key, impl="threefry2x32"))
    day_traffic, day_price = jax.random.normal(k_day, (2,))
    k_arrive, k_ctr, k_cvr, k_price = jax.random.split(jax.random.fold_in(k_steps, t), 4)
    phase = 2.0 * jnp.pi * t / env.num_steps
    traffic = params.traffic_base * jnp.exp(params.day_traffic_sigma * day_traffic) * (
        1.0 + params.traffic_amplitude * jnp.cos(phase - 2.0 * jnp.pi * params.traffic_peak))
    ctr = jnp.minimum(
        params.ctr_median * jnp.exp(params.ctr_sigma * jax.random.normal(k_ctr, (n,))), 1.0)
    cvr = jnp.minimum(
        params.cvr_median * jnp.exp(params.cvr_sigma * jax.random.normal(k_cvr, (n,))), 1.0)
    log_price = (jnp.log(params.price_median) + params.day_price_sigma * day_price
                 + params.price_value_corr * jnp.log(ctr / params.ctr_median)
                 + params.competition_amplitude
                 * jnp.cos(phase - 2.0 * jnp.pi * params.competition_peak)
                 + params.price_sigma * jax.random.normal(k_price, (n,)))
    return {"active": jax.random.uniform(k_arrive, (n,)) < traffic, "ctr": ctr, "cvr": cvr,
            "price": jnp.exp(log_price)}


def test_normal_pairs_are_cos_and_sin_of_the_angle_under_jit_and_vmap():
    u = jnp.linspace(0.0, 1.0, 100_001)[:-1]
    unit_radius = jnp.full_like(u, 1.0 - np.exp(-0.5))  # sqrt(-2 log(1 - u)) = 1
    cos, sin = jax.jit(jax.vmap(normal_pairs))(unit_radius, u)
    np.testing.assert_allclose(cos, np.cos(2 * np.pi * np.asarray(u, np.float64)), atol=1e-6)
    np.testing.assert_allclose(sin, np.sin(2 * np.pi * np.asarray(u, np.float64)), atol=1e-6)
    u = jax.random.uniform(jax.random.key(0), (2, 100_000))
    z = np.asarray(jax.jit(normal_pairs)(u[0], u[1]))
    assert scipy.stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < 0.015  # 4.7 standard errors
    assert np.all(np.isfinite(np.asarray(normal_pairs(jnp.array([0.0, 1 - 2**-23]),
                                                      jnp.array([0.0, 1 - 2**-23])))))


def test_auctions_draw_the_distributions_of_v0(ads):
    """Two-sample tests over 2,000 days, one step each. Days are independent; the slots of a day
    share its traffic and price level, so those are compared one value per day and the slots
    by their deviation from their day's mean."""
    env, params = ads
    t = jnp.int32(env.num_steps // 2)
    day_keys = jax.random.bits(jax.random.key(0), (2000, 2), jnp.uint32)
    v1, v0 = (to_numpy(jax.jit(jax.vmap(lambda k: fn(k, t, params)))(day_keys))
              for fn in (env.auctions, lambda *a: auctions_v0(env, *a)))
    by_day, by_slot, corr = [], [], []
    for d in (v1, v0):
        log_price = np.log(d["price"])
        deviation = log_price - log_price.mean(1, keepdims=True)
        by_day.append({"arrivals": d["active"].sum(1), "log price": log_price.mean(1)})
        by_slot.append({"ctr": d["ctr"].ravel(), "cvr": d["cvr"].ravel(),
                        "log price deviation": deviation.ravel()})
        corr.append(np.corrcoef(np.log(d["ctr"]).ravel(), deviation.ravel())[0, 1])
    for samples in (by_day, by_slot):
        for name in samples[0]:
            assert scipy.stats.ks_2samp(samples[0][name], samples[1][name]).pvalue > 1e-3, name
    for name in by_day[0]:  # the day-level spreads (KS is weak on scale): variances within 4 SE
        log_ratio = np.log(np.var(by_day[0][name], dtype=np.float64)
                           / np.var(by_day[1][name], dtype=np.float64))
        assert abs(log_ratio) < 4 * np.sqrt(4 / (day_keys.shape[0] - 1)), name
    assert abs(np.arctanh(corr[0]) - np.arctanh(corr[1])) < 4 * np.sqrt(2 / v1["ctr"].size)


def test_one_uniform_draws_click_then_conversion(ads):
    """v1 decides click and conversion with one uniform: P(click) = ctr and P(conversion) =
    ctr x cvr as v0's two draws, and no conversion without a click."""
    env, params = ads
    params = params.replace(cvr_median=0.3)
    _, state = env.reset(jax.random.key(8), params)
    state = state.replace(time=jnp.int32(18), budget_left=jnp.float32(1e6))
    auc = to_numpy(env.auctions(state.day_key, state.time, params))
    m = jnp.int32(20)  # bids 2x the value: wins a known set of slots
    wins = auc["active"] & (2.0 * auc["value"] > auc["price"])
    info = to_numpy(jax.jit(jax.vmap(lambda k: env.step_env(k, state, m, params)[4]))(
        jax.random.split(jax.random.key(1), 4000)))
    np.testing.assert_array_equal(info["impressions_won"], wins.sum())
    assert np.all(info["conversions"] <= info["clicks"])
    for name, p in (("clicks", auc["ctr"]), ("conversions", auc["ctr"] * auc["cvr"])):
        expected, var = p[wins].sum(), (p * (1 - p))[wins].sum()
        assert abs(info[name].mean() - expected) < 4 * np.sqrt(var / 4000), name


# --------------------------------------------------------------------------- conversions


def test_conversion_value_counts_in_reward(ads, step, auctions):
    env, params = ads
    params = params.replace(value_per_click=0.0, value_per_conversion=50.0, cvr_median=0.5)
    _, state = env.reset(jax.random.key(8), params)
    state = state.replace(time=jnp.int32(18), budget_left=jnp.float32(1e6))
    auc = auctions(state.day_key, state.time, params)
    np.testing.assert_allclose(auc["value"], 50.0 * auc["active"] * auc["ctr"] * auc["cvr"],
                               rtol=1e-5)
    conversions = 0.0
    for k in range(20):
        _, _, reward, _, info = step(jax.random.key(k), state, jnp.int32(20), params)
        np.testing.assert_allclose(reward, 50.0 * info["conversions"])
        conversions += float(info["conversions"])
    assert conversions > 0


# --------------------------------------------------------------------------- params, constructor


def test_state_and_default_params(ads):
    env, params = ads
    _, state = env.reset(jax.random.key(0), params)
    assert isinstance(state, EnvState)
    assert state.day_key.shape == (2,) and state.day_key.dtype == jnp.uint32
    for f in dataclasses.fields(state):
        if f.name not in ("day_key", "time", "exhausted"):
            assert getattr(state, f.name).dtype == jnp.float32, f.name
    np.testing.assert_allclose(params.bid_multipliers, np.linspace(0, 2, 21), atol=1e-6)
    assert params.max_steps_in_episode == env.num_steps == 24
    assert env.name == "AdBidding-v1" and env.num_actions == 21


BAD_PARAMS = [
    ("bid_multipliers", lambda p: p.bid_multipliers[:5]),
    ("bid_multipliers", lambda p: p.bid_multipliers.at[0].set(-1.0)),
    ("bid_multipliers", lambda p: p.bid_multipliers.at[0].set(jnp.nan)),
    ("daily_budget", lambda p: 0.0),
    ("daily_budget", lambda p: float("inf")),
    ("max_multiplier", lambda p: -1.0),
    ("price_median", lambda p: 0.0),
    ("ctr_median", lambda p: -0.1),
    ("price_sigma", lambda p: -0.1),
    ("value_per_conversion", lambda p: -1.0),
    ("traffic_base", lambda p: 0.0),
    ("traffic_base", lambda p: 1.5),
    ("day_price_sigma", lambda p: -1.0),
    ("max_steps_in_episode", lambda p: 0),
    ("max_steps_in_episode", lambda p: 25),
    ("max_steps_in_episode", lambda p: 10.0),
]


@pytest.mark.parametrize("field, make_bad", BAD_PARAMS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_PARAMS)])
def test_validate_params_rejects_and_names_field(ads, field, make_bad):
    env, params = ads
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        env.validate_params(params.replace(**{field: make_bad(params)}))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_auctions=0), "num_auctions"), (dict(num_steps=-1), "num_steps"),
    (dict(num_multipliers=2.5), "num_multipliers"), (dict(continuous=1), "continuous"),
    (dict(daily_budget=-1.0), "daily_budget"),
])
def test_make_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ecomrl_jax.make("AdBidding-v1", **kwargs)


def test_constructor_sizes():
    env = AdBidding(num_auctions=7, num_steps=12, num_multipliers=5)
    params = env.default_params
    assert params.bid_multipliers.shape == (5,) and params.max_steps_in_episode == 12
    shapes = jax.eval_shape(env.auctions, jnp.zeros(2, jnp.uint32), 0, params)
    assert all(x.shape == (7,) for x in shapes.values())  # an odd count: a padded normal pair
    with pytest.raises(ValueError, match="32-bit counter"):
        AdBidding(num_auctions=100_000, num_steps=20_000)


def test_registered_here_and_in_gymnax():
    assert "AdBidding-v1" in ecomrl_jax.list_envs()
    env, params = gymnax.make("AdBidding-v1", continuous=True)
    assert isinstance(env, AdBidding) and env.continuous
