"""Invariants of Inventory-v0 (ecomrl_jax/envs/inventory/inventory.py); see docs/envs/inventory.md.

Compiling the demand samplers takes seconds on CPU, so one jitted rollout program (vmap over
envs, scan over steps, params as arguments) serves every property test; hand-computed
episodes use a subclass with fixed demand, which compiles in a fraction of that.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.inventory.inventory import EnvParams, EnvState, Inventory
from tests.helpers import to_numpy, scripted_episode

NUM_ENVS, NUM_STEPS = 256, 60
ENV = Inventory(lead_time=2, max_order=10)
# Lost sales with Poisson demand; backorders with negative binomial, seasonal demand and a
# small store (so that arrivals get discarded). Short episodes exercise auto-reset.
LOST = EnvParams(max_steps_in_episode=25, fixed_cost=3.0)
BACKORDER = EnvParams(backorders=True, demand_dist=1, demand_shape=2.0, demand_mean=5.0,
                      season_amplitude=0.5, season_period=8.0, storage_capacity=15.0,
                      max_steps_in_episode=25)


_rollout = jax.jit(lambda params, keys, actions: jax.vmap(
    lambda k, a: scripted_episode(ENV, params, k, a))(keys, actions))


def _actions(seed):
    """Random orders, about a third of them outside [0, max_order]."""
    return jax.random.randint(jax.random.key(seed), (NUM_ENVS, NUM_STEPS), -3, 14)


def _keys(seed):
    return jax.random.split(jax.random.key(seed), NUM_ENVS)


@pytest.fixture(scope="module")
def rollouts():
    return {"lost": to_numpy(_rollout(LOST, _keys(1), _actions(0))),
            "backorder": to_numpy(_rollout(BACKORDER, _keys(1), _actions(0)))}


@pytest.fixture(scope="module", params=["lost", "backorder"])
def case(request, rollouts):
    return {"lost": LOST, "backorder": BACKORDER}[request.param], rollouts[request.param]


def _live(r):
    """Steps after which `next` is the stepped state (no auto-reset)."""
    return ~(r["terminated"] | r["truncated"])


# --------------------------------------------------------------------------- stock accounting


def test_stock_is_conserved_every_step(case):
    params, r = case
    s, n, i = r["state"], r["next"], r["info"]
    on_hand = np.maximum(s.inventory, 0)
    backlog = np.maximum(-s.inventory, 0)
    # physical stock: what was there and what arrived is sold, discarded or still on hand
    np.testing.assert_array_equal(on_hand + i["arrivals"],
                                  i["on_hand"] + i["sales"] + i["discarded"])
    # demand: sold, lost or added to the backorders
    np.testing.assert_array_equal(i["demand"] + backlog,
                                  i["sales"] + i["lost_sales"] + i["backorders"])
    # with the pipeline: initial + orders = on hand + in transit + sold + discarded
    live = _live(r)
    np.testing.assert_array_equal((on_hand + s.pipeline.sum(-1) + i["orders"])[live],
                                  (np.maximum(n.inventory, 0) + n.pipeline.sum(-1)
                                   + i["sales"] + i["discarded"])[live])
    np.testing.assert_array_equal(n.inventory[live], (i["on_hand"] - i["backorders"])[live])
    assert np.all(i["on_hand"] >= 0) and np.all(i["on_hand"] <= params.storage_capacity)
    assert np.all((i["on_hand"] == 0) | (i["backorders"] == 0))
    for name in ("sales", "lost_sales", "backorders", "arrivals", "discarded", "demand"):
        assert np.all(i[name] >= 0) and np.all(i[name] == np.floor(i[name])), name


def test_episode_totals_balance(case):
    """Summed over a whole episode: initial stock + orders = final stock + sold + discarded."""
    params, r = case
    i = r["info"]
    first_end = int(params.max_steps_in_episode)  # every env truncates after this many steps
    assert np.all(r["truncated"][:, first_end - 1])
    assert not np.any(r["truncated"][:, :first_end - 1])
    last = r["state"]  # state before the truncating step, then that step's info
    k = first_end - 1
    in_transit = last.pipeline[:, k].sum(-1) + i["orders"][:, k] - i["arrivals"][:, k]
    end_stock = i["on_hand"][:, k] + in_transit
    totals = {name: i[name][:, :first_end].sum(1) for name in ("orders", "sales", "discarded",
                                                               "demand", "lost_sales")}
    np.testing.assert_array_equal(params.initial_inventory + totals["orders"],
                                  end_stock + totals["sales"] + totals["discarded"])
    np.testing.assert_array_equal(totals["demand"],
                                  totals["sales"] + totals["lost_sales"] + i["backorders"][:, k])


def test_lost_sales_and_backorder_semantics(rollouts):
    lost, back = rollouts["lost"], rollouts["backorder"]
    np.testing.assert_array_equal(lost["info"]["backorders"], 0.0)
    assert np.all(lost["next"].inventory >= 0) and lost["info"]["lost_sales"].sum() > 100
    np.testing.assert_array_equal(back["info"]["lost_sales"], 0.0)
    assert back["info"]["backorders"].sum() > 100 and np.any(back["next"].inventory < 0)
    # backorders are served first from the next arrivals
    s, i = back["state"], back["info"]
    backlog = np.maximum(-s.inventory, 0)
    filled = np.minimum(i["arrivals"], backlog)
    np.testing.assert_array_equal(i["backorders"],
                                  backlog - filled + i["demand"] - (i["sales"] - filled))
    assert np.any((backlog > 0) & (filled > 0))
    assert back["info"]["discarded"].sum() > 0  # the small store overflows


def test_pipeline_shifts_by_one_each_step(case):
    params, r = case
    s, n, i, live = r["state"], r["next"], r["info"], _live(r)
    np.testing.assert_array_equal(i["arrivals"], s.pipeline[..., 0])
    np.testing.assert_array_equal(n.pipeline[..., 0][live], s.pipeline[..., 1][live])
    np.testing.assert_array_equal(n.pipeline[..., 1][live], i["orders"][live])
    # an order placed at step t arrives at step t + lead_time
    t = np.arange(NUM_STEPS - 2)
    np.testing.assert_array_equal(i["arrivals"][:, t + 2][live[:, t] & live[:, t + 1]],
                                  i["orders"][:, t][live[:, t] & live[:, t + 1]])


def test_orders_are_invalid_actions_and_counted(case):
    _, r = case
    a, i = r["action"], r["info"]
    np.testing.assert_array_equal(i["orders"], np.clip(a, 0, 10))
    np.testing.assert_array_equal(i["invalid_actions"], ((a < 0) | (a > 10)).astype(np.float32))
    assert 0.2 < i["invalid_actions"].mean() < 0.5


def test_reward_is_revenue_minus_costs(case):
    params, r = case
    i = r["info"]
    np.testing.assert_allclose(i["revenue"], params.price * i["sales"], rtol=1e-6)
    np.testing.assert_allclose(i["ordering_cost"], params.unit_cost * i["orders"]
                               + params.fixed_cost * (i["orders"] > 0), rtol=1e-6)
    np.testing.assert_allclose(i["holding_cost"], params.holding_cost * i["on_hand"], rtol=1e-6)
    np.testing.assert_allclose(i["shortage_cost"],
                               params.shortage_cost * (i["lost_sales"] + i["backorders"]),
                               rtol=1e-6)
    np.testing.assert_allclose(r["reward"], i["revenue"] - i["ordering_cost"] - i["holding_cost"]
                               - i["shortage_cost"], rtol=1e-5, atol=1e-4)
    assert r["reward"].dtype == np.float32 and np.all(np.isfinite(r["reward"]))
    assert set(i) == {"demand", "sales", "lost_sales", "backorders", "on_hand", "orders",
                      "arrivals", "discarded", "invalid_actions", "revenue", "ordering_cost",
                      "holding_cost", "shortage_cost"}


def test_observation_matches_state_and_space(case):
    params, r = case
    space = ENV.observation_space(params)
    assert space.shape == (ENV.lead_time + 4,)
    for obs, state in ((r["obs"], r["state"]), (r["final"], None)):
        assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
        assert bool(jax.vmap(jax.vmap(space.contains))(obs).all())
    s = r["state"]
    phase = 2 * np.pi * s.time / params.season_period
    expected = np.concatenate([s.inventory[..., None] / 10, s.pipeline / 10,
                               np.stack([s.time / params.max_steps_in_episode, np.sin(phase),
                                         np.cos(phase)], -1)], -1)
    np.testing.assert_allclose(r["obs"], expected, rtol=1e-5, atol=1e-5)
    # truncation: the final observation has time 1, the returned one is the reset state's
    ended = r["truncated"]
    np.testing.assert_allclose(r["final"][..., ENV.lead_time + 1][ended], 1.0)
    np.testing.assert_array_equal(r["next"].inventory[ended], params.initial_inventory)
    np.testing.assert_array_equal(r["next"].pipeline[ended], 0.0)


def test_demand_moments_match_the_distribution(rollouts):
    d = rollouts["lost"]["info"]["demand"]
    assert abs(d.mean() - 4.0) < 0.05 and abs(d.var() - 4.0) < 0.15  # Poisson(4)
    r = rollouts["backorder"]
    d, t = r["info"]["demand"], r["state"].time
    mean = 5.0 * (1 + 0.5 * np.sin(2 * np.pi * t / 8.0))
    for phase in range(8):  # seasonal mean at each phase of the 8-step season
        m = (t % 8) == phase
        se = np.sqrt((mean[m] + mean[m] ** 2 / 2.0).mean() / m.sum())
        assert abs(d[m].mean() - mean[m].mean()) < 5 * se, phase
    # negative binomial: variance = mean + mean^2 / shape (Poisson would leave -mean^2 / 2)
    resid = (d - mean) ** 2 - (mean + mean ** 2 / 2.0)
    assert abs(resid.mean()) < 5 * resid.std() / np.sqrt(resid.size)
    assert abs(resid.mean()) < 0.1 * (mean ** 2 / 2.0).mean()


# --------------------------------------------------------------------------- exact episodes


class FixedDemand(Inventory):
    """Inventory whose demand at step t is `demands[t]`."""

    def __init__(self, demands, **kwargs):
        super().__init__(**kwargs)
        self.demands = tuple(demands)

    def sample_demand(self, key, time, params):
        return jnp.asarray(self.demands, jnp.float32)[time]


HAND = EnvParams(price=10.0, unit_cost=4.0, fixed_cost=3.0, holding_cost=1.0, shortage_cost=2.0,
                 storage_capacity=8.0, initial_inventory=5.0, max_steps_in_episode=3)
HAND_ENV = FixedDemand((7, 3, 2), lead_time=1)


@pytest.mark.parametrize("backorders, expected", [
    # per step: (reward, sales, lost_sales, backorders, on_hand, arrivals, discarded, holding,
    #            shortage, ordering)
    (True, [(19, 5, 0, 2, 0, 0, 0, 0, 4, 27), (6, 5, 0, 0, 1, 6, 0, 1, 0, 43),
            (14, 2, 0, 0, 6, 10, 3, 6, 0, 0)]),
    (False, [(19, 5, 2, 0, 0, 0, 0, 0, 4, 27), (-16, 3, 0, 0, 3, 6, 0, 3, 0, 43),
             (14, 2, 0, 0, 6, 10, 5, 6, 0, 0)]),
])
def test_hand_computed_three_step_episode(backorders, expected):
    """Start with 5 on hand, lead time 1, demands 7, 3, 2, orders 6, 10, 0, store of 8.

    Backorders: step 0 sells 5 and backorders 2 (revenue 50, order 4*6+3, shortage 2*2);
    step 1 receives 6, fills the 2 backorders and sells 3, 1 left; step 2 receives 10, keeps 8
    (3 discarded), sells 2. Lost sales: the 2 are lost; step 1 has 6 units, sells 3, keeps 3;
    step 2 receives 10 on top of 3, keeps 8 (5 discarded), sells 2.
    """
    params = HAND.replace(backorders=backorders)
    _, state = HAND_ENV.reset(jax.random.key(0), params)
    names = ("sales", "lost_sales", "backorders", "on_hand", "arrivals", "discarded",
             "holding_cost", "shortage_cost", "ordering_cost")
    for t, (action, row) in enumerate(zip((6, 10, 0), expected, strict=True)):
        obs, state, reward, terminated, truncated, info = HAND_ENV.step(
            jax.random.key(t), state, jnp.int32(action), params)
        assert float(reward) == row[0], t
        assert [float(info[k]) for k in names] == list(row[1:]), t
        assert float(info["revenue"]) == 10 * row[1]
        assert not bool(terminated) and bool(truncated) == (t == 2)
    assert float(state.inventory) == 5.0 and state.time == 0  # auto-reset after 3 steps


def test_zero_lead_time_order_arrives_before_demand():
    env = FixedDemand((3, 3), lead_time=0)
    params = HAND.replace(initial_inventory=0.0, fixed_cost=0.0)
    _, state = env.reset(jax.random.key(0), params)
    assert state.pipeline.shape == (0,)
    _, state, reward, _, _, info = env.step(jax.random.key(1), state, jnp.int32(5), params)
    assert float(info["arrivals"]) == 5 and float(info["sales"]) == 3
    assert float(state.inventory) == 2 and float(reward) == 30 - 20 - 2


# --------------------------------------------------------------------------- jit, vmap, keys


# --------------------------------------------------------------------------- actions


CONTINUOUS = FixedDemand((4,), lead_time=1, continuous=True)


@pytest.mark.parametrize("action, order, clipped", [
    (3.7, 3, 0), (0.0, 0, 0), (10.0, 10, 0), (10.9, 10, 0), (-0.5, 0, 1), (12.0, 10, 1),
    (float("nan"), 0, 1), (float("inf"), 10, 1), (float("-inf"), 0, 1),
])
def test_continuous_action_rounds_down_and_clips(action, order, clipped):
    params = HAND.replace(max_steps_in_episode=5)
    _, state = CONTINUOUS.reset(jax.random.key(0), params)
    _, nxt, reward, _, _, info = CONTINUOUS.step(jax.random.key(1), state,
                                                 jnp.array([action], jnp.float32), params)
    assert float(info["orders"]) == order and float(info["invalid_actions"]) == clipped
    assert float(nxt.pipeline[0]) == order and np.isfinite(float(reward))


def test_action_spaces():
    space = ENV.action_space(LOST)
    assert isinstance(space, spaces.Discrete) and space.n == 11 and ENV.num_actions == 11
    box = CONTINUOUS.action_space(HAND)
    assert isinstance(box, spaces.Box) and box.shape == (1,) and float(box.high) == 10.0
    assert CONTINUOUS.num_actions == 1
    assert ENV.name == CONTINUOUS.name == "Inventory-v0"


@pytest.mark.parametrize("env, action, error, match", [
    (ENV, jnp.float32(3.0), TypeError, "integer"),
    (ENV, 3.0, TypeError, "integer"),
    (ENV, jnp.bool_(True), TypeError, "integer"),
    (ENV, jnp.array([3], jnp.int32), ValueError, r"\(\)"),
    (CONTINUOUS, jnp.float32(3.0), ValueError, r"\(1,\)"),
    (CONTINUOUS, jnp.array([1.0, 2.0]), ValueError, r"\(1,\)"),
    (CONTINUOUS, jnp.array([True]), TypeError, "numbers"),
])
def test_bad_actions_raise(env, action, error, match):
    _, state = env.reset(jax.random.key(0), HAND)
    with pytest.raises(error, match=match):
        env.step(jax.random.key(1), state, action, HAND)


# --------------------------------------------------------------------------- params and make


def test_make_builds_env_and_params():
    env, params = ecomrl_jax.make("Inventory-v0", lead_time=3, max_order=5, continuous=True,
                                  backorders=True, demand_mean=2.5)
    assert isinstance(env, Inventory) and env.lead_time == 3 and env.max_order == 5
    assert env.continuous and params.backorders and params.demand_mean == 2.5
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (7,) and isinstance(state, EnvState) and state.pipeline.shape == (3,)
    assert "Inventory-v0" in ecomrl_jax.list_envs()


BAD_PARAMS = [
    ("demand_mean", -1.0), ("demand_mean", 1001.0), ("demand_dist", 2), ("demand_shape", 0.0),
    ("season_amplitude", 1.5),
    ("season_amplitude", -0.1), ("season_period", 0.0), ("backorders", 2), ("price", -1.0),
    ("unit_cost", -1.0), ("fixed_cost", -0.5), ("holding_cost", -0.1), ("shortage_cost", -2.0),
    ("storage_capacity", -1.0), ("storage_capacity", 10.5), ("initial_inventory", 2.5),
    ("initial_inventory", 50.0), ("max_steps_in_episode", 0), ("max_steps_in_episode", 10.0),
]


@pytest.mark.parametrize("field, value", BAD_PARAMS, ids=[f"{f}={v}" for f, v in BAD_PARAMS])
def test_validate_params_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        ENV.validate_params(EnvParams().replace(**{field: value}))
    with pytest.raises(ValueError, match=field):
        ecomrl_jax.make("Inventory-v0", **{field: value})


@pytest.mark.parametrize("kwargs, match", [
    (dict(lead_time=-1), "lead_time"), (dict(lead_time=1.0), "lead_time"),
    (dict(max_order=0), "max_order"), (dict(max_order=True), "max_order"),
    (dict(continuous=1), "continuous"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Inventory(**kwargs)
