"""Invariants of SupplyChain-v1 (ecomrl_jax/envs/inventory/supply_chain.py); see docs/envs/supply_chain.md.

The env is checked against a plain NumPy transcription of OR-Gym InvManagement's sequence of
events (fed the env's own demand draws), against a hand-computed episode, and for stock
conservation. One jitted rollout program (params as arguments) serves the property tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.inventory.supply_chain import EnvParams, EnvState, SupplyChain
from tests.helpers import to_numpy, scripted_episode

NUM_ENVS, NUM_STEPS = 64, 40
ENV = SupplyChain()  # OR-Gym's three stages, lead times 3, 5, 10
BACKLOG = ENV.default_params
LOST = BACKLOG.replace(backlog=False, demand_dist=1, demand_shape=3.0)


_rollout = jax.jit(lambda params, keys, actions: jax.vmap(
    lambda k, a: scripted_episode(ENV, params, k, a))(keys, actions))


def _actions(seed):
    """Random fractional orders, some below 0 or above the capacities."""
    return jax.random.uniform(jax.random.key(seed), (NUM_ENVS, NUM_STEPS, 3), minval=-10.0,
                              maxval=110.0)


def _keys(seed):
    return jax.random.split(jax.random.key(seed), NUM_ENVS)


@pytest.fixture(scope="module")
def rollouts():
    return {"backlog": to_numpy(_rollout(BACKLOG, _keys(1), _actions(0))),
            "lost": to_numpy(_rollout(LOST, _keys(1), _actions(0)))}


@pytest.fixture(scope="module", params=["backlog", "lost"])
def case(request, rollouts):
    return {"backlog": BACKLOG, "lost": LOST}[request.param], rollouts[request.param]


def _live(r):
    return ~(r["terminated"] | r["truncated"])


# --------------------------------------------------------------------------- OR-Gym defaults


def test_defaults_are_or_gym_inv_management():
    p = ENV.default_params
    np.testing.assert_array_equal(p.initial_inventory, [100, 100, 200])  # I0
    np.testing.assert_allclose(p.unit_cost, [1.5, 1.0, 0.75, 0.5])  # r
    np.testing.assert_allclose(p.shortage_cost, [0.10, 0.075, 0.05, 0.025])  # k
    np.testing.assert_allclose(p.holding_cost, [0.15, 0.10, 0.05])  # h
    np.testing.assert_array_equal(p.supply_capacity, [100, 90, 80])  # c
    assert ENV.lead_times == (3, 5, 10)  # L
    assert (p.price, p.demand_mean, p.demand_dist, p.backlog, p.alpha, p.max_steps_in_episode) == (
        2.0, 20.0, 0, True, 0.97, 30)  # p, dist=1 with mu=20, backlog, alpha, periods
    two = SupplyChain(lead_times=(1, 2)).default_params
    np.testing.assert_allclose(two.unit_cost, [1.5, 1.0, 0.75])
    five = SupplyChain(lead_times=(1,) * 5).default_params
    np.testing.assert_array_equal(five.supply_capacity, [100, 90, 80, 80, 80])
    np.testing.assert_allclose(five.shortage_cost, [0.10, 0.075, 0.05, 0.025, 0.025, 0.025])


def _or_gym_reference(params, lead_times, orders, demands):
    """OR-Gym InvManagement's period, written out with NumPy for one episode.

    orders: (T, n) whole requested quantities; demands: (T,) customer demand. Returns per-period
    dicts. Shipments are kept as a history indexed by period, as OR-Gym does.
    """
    n, T = len(lead_times), len(demands)
    p = np.append(params.price, np.asarray(params.unit_cost)[:-1])  # sale price at each stage
    r, k = np.asarray(params.unit_cost, float), np.asarray(params.shortage_cost, float)
    h = np.append(np.asarray(params.holding_cost, float), 0.0)
    c = np.asarray(params.supply_capacity, float)
    inv = np.asarray(params.initial_inventory, float).copy()
    shipped_hist = np.zeros((T, n))
    backlog = np.zeros(n + 1)
    out = []
    for t in range(T):
        requested = orders[t] + (backlog[1:] if params.backlog else 0.0)
        supplier = np.append(inv[1:], np.inf)
        shipped = np.minimum(np.minimum(requested, c), supplier)
        shipped_hist[t] = shipped
        arrivals = np.array([shipped_hist[t - lead_times[i], i] if t >= lead_times[i] else 0.0
                             for i in range(n)])
        inv = inv + arrivals
        wanted = demands[t] + (backlog[0] if params.backlog else 0.0)
        sold = min(inv[0], wanted)
        inv = inv - np.append(sold, shipped[:-1])
        unmet = np.append(wanted - sold, requested - shipped)
        backlog = unmet if params.backlog else np.zeros(n + 1)
        units = np.append(sold, shipped)
        bought = np.append(shipped, shipped[-1])
        profit = np.sum(p * units - r * bought - k * unmet - h * np.append(inv, 0.0))
        out.append(dict(on_hand=inv.copy(), shipped=shipped, arrivals=arrivals, unmet=unmet,
                        sales=sold, profit=profit, reward=params.alpha ** t * profit))  # OR-Gym's
    return out


def test_matches_or_gym_reference_step_by_step(case):
    params, r = case
    T = int(params.max_steps_in_episode)
    orders = np.clip(np.floor(np.asarray(_actions(0))), 0, np.asarray(params.supply_capacity))
    for e in range(0, NUM_ENVS, 8):
        ref = _or_gym_reference(params, ENV.lead_times, orders[e, :T], r["info"]["demand"][e, :T])
        for t, want in enumerate(ref):
            np.testing.assert_allclose(r["info"]["stage_shipped"][e, t], want["shipped"])
            np.testing.assert_allclose(r["info"]["stage_arrivals"][e, t], want["arrivals"])
            np.testing.assert_allclose(r["info"]["stage_unmet"][e, t], want["unmet"])
            assert r["info"]["sales"][e, t] == want["sales"]
            np.testing.assert_allclose(r["info"]["profit"][e, t], want["profit"], rtol=1e-5,
                                       atol=1e-3)
            np.testing.assert_allclose(r["info"]["discounted_profit"][e, t], want["reward"],
                                       rtol=1e-5, atol=1e-3)
            if t < T - 1:
                np.testing.assert_array_equal(r["next"].on_hand[e, t], want["on_hand"])
    # OR-Gym's horizon ends the problem: the last period terminates (HorizonEndsEpisode)
    assert r["terminated"][:, T - 1].all() and not r["terminated"][:, :T - 1].any()
    assert not r["truncated"].any()


# --------------------------------------------------------------------------- hand-computed episode


def _hand_env_and_params(backlog):
    env = _TwoStage((4, 1, 6), lead_times=(1, 0))
    params = EnvParams(initial_inventory=jnp.array([3.0, 2.0]),
                       unit_cost=jnp.array([4.0, 3.0, 1.0]),
                       shortage_cost=jnp.array([2.0, 1.0, 0.5]), holding_cost=jnp.array([1.0, 0.5]),
                       supply_capacity=jnp.array([5.0, 4.0]), price=10.0, backlog=backlog,
                       alpha=0.5, max_steps_in_episode=3)
    return env, params


class _TwoStage(SupplyChain):
    """Two stages whose demand at step t is `demands[t]`."""

    def __init__(self, demands, **kwargs):
        super().__init__(**kwargs)
        self.demands = tuple(demands)

    def sample_demand(self, key, time, params):
        return jnp.asarray(self.demands, jnp.float32)[time]


@pytest.mark.parametrize("backlog, expected", [
    # per step: (discounted profit, profit = reward, shipped, on_hand after, unmet, sales)
    (True, [(20.5, 20.5, [2, 3], [0, 3], [1, 3, 0], 3), (6.0, 12.0, [3, 4], [0, 4], [0, 2, 0], 2),
            (5.75, 23.0, [2, 0], [0, 2], [3, 0, 0], 3)]),
    (False, [(20.5, 20.5, [2, 3], [0, 3], [1, 3, 0], 3), (1.25, 2.5, [2, 4], [1, 5], [0, 0, 0], 1),
             (5.375, 21.5, [0, 0], [0, 5], [3, 0, 0], 3)]),
])
def test_hand_computed_two_stage_episode(backlog, expected):
    """Two stages (lead times 1 and 0), I0 = (3, 2), c = (5, 4), demands 4, 1, 6, orders
    (5, 3), (2, 4), (0, 0), alpha = 0.5.

    Step 0: stage 1 holds only 2, so stage 0 gets 2 of its 5 (3 unmet) and the raw-material
    supplier ships 3; stage 0 sells its 3 units of 4 demanded. Profit 10*3 - 1*3 (raw
    material) - 0.5*3 (holding at stage 1) - (2*1 + 1*3) (shortage) = 20.5. With backlog, step
    1 asks 2 + 3 of stage 1 (which has 3 to ship) and serves 1 + 1 customers: profit
    20 - 4 - 0.5*4 - 1*2 = 12 (the reward), discounted 0.5 * 12. With lost sales the unmet
    units vanish.
    """
    env, params = _hand_env_and_params(backlog)
    _, state = env.reset(jax.random.key(0), params)
    for t, (action, row) in enumerate(zip(([5.0, 3.0], [2.0, 4.0], [0.0, 0.0]), expected,
                                          strict=True)):
        _, state, reward, terminated, truncated, info = env.step(jax.random.key(t), state,
                                                                 jnp.array(action), params)
        assert float(info["discounted_profit"]) == row[0], t
        assert float(reward) == float(info["profit"]) == row[1], t
        assert info["stage_shipped"].tolist() == row[2], t
        assert float(info["invalid_actions"]) == 0.0
        if t < 2:
            assert state.on_hand.tolist() == row[3], t
        assert info["stage_unmet"].tolist() == row[4] and float(info["sales"]) == row[5], t
        assert (bool(terminated), bool(truncated)) == (t == 2, False)


# --------------------------------------------------------------------------- conservation


def test_stock_is_conserved_at_every_stage(case):
    params, r = case
    s, n, i, live = r["state"], r["next"], r["info"], _live(r)
    shipped, arrivals = i["stage_shipped"], i["stage_arrivals"]
    outflow = np.concatenate([i["sales"][..., None], shipped[..., :-1]], -1)
    stock = s.on_hand + s.pipeline.sum(-1)
    np.testing.assert_array_equal((stock + shipped - outflow)[live],
                                  (n.on_hand + n.pipeline.sum(-1))[live])
    np.testing.assert_array_equal((s.on_hand + arrivals - outflow)[live], n.on_hand[live])
    # the whole chain: stock + sold = stock before + raw material shipped
    np.testing.assert_array_equal((stock.sum(-1) + shipped[..., -1])[live],
                                  ((n.on_hand + n.pipeline.sum(-1)).sum(-1) + i["sales"])[live])
    # customers: demand + old backlog = sold + lost + new backlog
    np.testing.assert_array_equal(i["demand"] + s.backlog[..., 0],
                                  i["sales"] + i["lost_sales"] + i["backorders"])
    # a supplier ships at most its capacity and the stock it had at the start of the period
    assert np.all(shipped <= params.supply_capacity)
    assert np.all(shipped[..., :-1] <= s.on_hand[..., 1:])
    assert np.all(n.on_hand >= 0) and np.all(n.pipeline >= 0) and np.all(n.backlog >= 0)


def test_pipeline_delivers_after_each_stage_lead_time(case):
    _, r = case
    i, live = r["info"], _live(r)
    for stage, lead in enumerate(ENV.lead_times):
        t = np.arange(NUM_STEPS - lead)
        ok = np.ones_like(live[:, t])
        for j in range(lead):
            ok &= live[:, t + j]
        np.testing.assert_array_equal(i["stage_arrivals"][:, t + lead, stage][ok],
                                      i["stage_shipped"][:, t, stage][ok])
        np.testing.assert_array_equal(i["stage_arrivals"][:, :lead, stage], 0.0)


def test_backlog_and_lost_sales_semantics(rollouts):
    b, lost = rollouts["backlog"], rollouts["lost"]
    live = _live(b)
    np.testing.assert_array_equal(b["next"].backlog[live], b["info"]["stage_unmet"][live])
    np.testing.assert_array_equal(b["info"]["lost_sales"], 0.0)
    assert b["info"]["backorders"].sum() > 0 and b["info"]["stage_unmet"][..., 1:].sum() > 0
    np.testing.assert_array_equal(lost["next"].backlog, 0.0)
    np.testing.assert_array_equal(lost["info"]["lost_sales"], lost["info"]["stage_unmet"][..., 0])
    assert lost["info"]["lost_sales"].sum() > 0


def test_reward_is_undiscounted_profit(case):
    """The learner sees the profit; OR-Gym's alpha**t * profit is the discounted_profit metric."""
    params, r = case
    i = r["info"]
    np.testing.assert_allclose(i["profit"], i["revenue"] - i["ordering_cost"] - i["holding_cost"]
                               - i["shortage_cost"], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(r["reward"], i["profit"])
    np.testing.assert_allclose(i["discounted_profit"],
                               params.alpha ** r["state"].time * i["profit"], rtol=1e-5, atol=1e-3)
    assert np.any(r["state"].time > 0) and not np.allclose(i["discounted_profit"], i["profit"])
    np.testing.assert_allclose(i["revenue"], params.price * i["sales"], rtol=1e-6)
    live = _live(r)
    np.testing.assert_allclose(i["holding_cost"][live],
                               (r["next"].on_hand * params.holding_cost).sum(-1)[live], rtol=1e-5)
    np.testing.assert_allclose(i["shortage_cost"],
                               (i["stage_unmet"] * params.shortage_cost).sum(-1),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(i["ordering_cost"],
                               params.unit_cost[-1] * i["stage_shipped"][..., -1],
                               rtol=1e-6)
    assert r["reward"].dtype == np.float32 and np.all(np.isfinite(r["reward"]))


def test_orders_are_rounded_down_and_clipped(case):
    params, r = case
    a = np.asarray(_actions(0))
    expected = np.clip(np.floor(a), 0, np.asarray(params.supply_capacity))
    live = _live(r)
    requested = r["info"]["stage_shipped"] + r["info"]["stage_unmet"][..., 1:]
    carried = r["state"].backlog[..., 1:] if params.backlog else 0.0
    np.testing.assert_array_equal(requested, expected + carried)
    np.testing.assert_array_equal(r["info"]["orders"], expected.sum(-1))
    clipped = ((a < 0) | (a >= np.asarray(params.supply_capacity) + 1)).sum(-1)
    np.testing.assert_array_equal(r["info"]["invalid_actions"], clipped)
    assert live.any() and clipped.sum() > 0


def test_observation_matches_state_and_space(case):
    params, r = case
    space = ENV.observation_space(params)
    assert space.shape == (3 + 3 * 10 + 4 + 1,)
    s = r["state"]
    scale = np.max(params.supply_capacity)
    pipeline = s.pipeline.reshape(*s.pipeline.shape[:2], -1)
    time = (s.time / params.max_steps_in_episode)[..., None]
    expected = np.concatenate([s.on_hand / scale, pipeline / scale, s.backlog / scale, time], -1)
    np.testing.assert_allclose(r["obs"], expected, rtol=1e-6, atol=1e-6)
    for obs in (r["obs"], r["final"]):
        assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
        assert bool(jax.vmap(jax.vmap(space.contains))(obs).all())


# --------------------------------------------------------------------------- jit, vmap, keys


def test_demand_is_independent_poisson(rollouts):
    d = rollouts["backlog"]["info"]["demand"]
    assert not np.array_equal(d[0], d[1])
    assert abs(d.mean() - 20.0) < 0.3  # Poisson(20)


# --------------------------------------------------------------------------- discrete variant


def test_discrete_grid_decodes_digits_per_stage():
    _, params = _hand_env_and_params(True)
    grid = _TwoStage((4, 1, 6), lead_times=(1, 0), order_grid=(0, 2, 5))
    space = grid.action_space(params)
    assert isinstance(space, spaces.Discrete) and space.n == 9 == grid.num_actions
    _, state = grid.reset(jax.random.key(0), params)
    for index, quantities in ((0, [0, 0]), (1, [2, 0]), (5, [5, 2]), (7, [2, 5]), (8, [5, 5])):
        assert grid.order_quantity(jnp.int32(index), params)[0].tolist() == quantities
        assert int(grid.order_action(jnp.array(quantities, jnp.float32), params)) == index
    for bad, clipped_to in ((-1, 0), (9, 8), (100, 8)):
        order, clipped = grid.order_quantity(jnp.int32(bad), params)
        assert order.tolist() == grid.order_quantity(jnp.int32(clipped_to), params)[0].tolist()
        assert float(clipped) == 1.0
    with pytest.raises(TypeError, match="integer"):
        grid.step(jax.random.key(1), state, jnp.float32(5), params)


# --------------------------------------------------------------------------- errors and make


@pytest.mark.parametrize("action, error, match", [
    (jnp.zeros(2), ValueError, r"\(3,\)"), (jnp.zeros((1, 3)), ValueError, r"\(3,\)"),
    (jnp.float32(1.0), ValueError, r"\(3,\)"),
    (jnp.array([True, False, True]), TypeError, "numbers"),
])
def test_bad_actions_raise(action, error, match):
    _, state = ENV.reset(jax.random.key(0), BACKLOG)
    with pytest.raises(error, match=match):
        ENV.step(jax.random.key(1), state, action, BACKLOG)


def test_nan_and_infinite_orders_are_clipped_and_counted():
    env, params = _hand_env_and_params(True)
    order, clipped = env.order_quantity(jnp.array([jnp.nan, jnp.inf]), params)
    assert order.tolist() == [0.0, 4.0] and float(clipped) == 2.0


BAD_PARAMS = [
    ("initial_inventory", jnp.array([100.0, 100.0])),
    ("initial_inventory", jnp.array([1.0, -1.0, 2.0])),
    ("initial_inventory", jnp.array([1.5, 1.0, 2.0])), ("unit_cost", jnp.ones(3)),
    ("unit_cost", jnp.array([1.0, jnp.nan, 1.0, 1.0])), ("shortage_cost", -jnp.ones(4)),
    ("holding_cost", jnp.ones(4)), ("supply_capacity", jnp.array([100.0, 0.0, 80.0])),
    ("supply_capacity", jnp.array([100.0, 90.5, 80.0])), ("price", -2.0), ("price", float("inf")),
    ("demand_mean", -1.0), ("demand_mean", 5000.0), ("demand_dist", 3), ("demand_shape", 0.0),
    ("alpha", 0.0), ("alpha", 1.5), ("backlog", 2), ("max_steps_in_episode", 0),
    ("max_steps_in_episode", 30.0),
]


@pytest.mark.parametrize("field, value", BAD_PARAMS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_PARAMS)])
def test_validate_params_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        ENV.validate_params(BACKLOG.replace(**{field: value}))


def test_make_builds_env_and_params():
    env, params = ecomrl_jax.make("SupplyChain-v1", lead_times=(2, 0), backlog=False, alpha=1.0)
    assert isinstance(env, SupplyChain) and env.num_stages == 2 and env.lead_times == (2, 0)
    obs, state = env.reset(jax.random.key(0), params)
    assert isinstance(state, EnvState) and state.pipeline.shape == (2, 2)
    assert obs.shape == env.observation_space(params).shape == (2 + 4 + 3 + 1,)
    box = env.action_space(params)
    assert isinstance(box, spaces.Box) and box.shape == (2,)
    np.testing.assert_array_equal(box.high, [100.0, 90.0])
    with pytest.raises(ValueError, match="alpha"):
        ecomrl_jax.make("SupplyChain-v1", alpha=2.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lead_times=()), "lead_times"), (dict(lead_times=(1, -1)), "lead_times"),
    (dict(lead_times=(1.5,)), "lead_times"), (dict(order_grid=()), "order_grid"),
    (dict(order_grid=(0, 2.5)), "order_grid"), (dict(order_grid=(-1, 2)), "order_grid"),
])
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SupplyChain(**kwargs)
