"""Classic inventory policies, grid search, value iteration and the newsvendor solution
(ecomrl_jax/envs/inventory/policies.py).

Every simulation uses the same (env, num_episodes, max_steps), so each policy family compiles
once; param values are traced, so the instances below reuse those programs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.envs.inventory.policies import (base_stock_policy, demand_pmf, grid_search, newsvendor,
                                         product_grid, r_q_policy, s_S_policy, table_policy,
                                         value_iteration)
from ecomrl_jax.envs.inventory.inventory import EnvParams, EnvState, Inventory
from ecomrl_jax.envs.inventory.supply_chain import EnvState as ChainState
from ecomrl_jax.envs.inventory.supply_chain import SupplyChain
from ecomrl_jax.evaluation import evaluate

EPISODES, STEPS = 256, 400
SIM_ENV = Inventory(lead_time=1, max_order=8)
# Lost sales, Poisson(3) demand; starts near its steady state so the start-up transient is small.
SIM = EnvParams(demand_mean=3.0, storage_capacity=20.0, initial_inventory=6.0, fixed_cost=0.0,
                max_steps_in_episode=STEPS)
# Backorders without fixed cost: the setting where base-stock is optimal.
NEWSVENDOR = EnvParams(demand_mean=3.0, backorders=True, fixed_cost=0.0, storage_capacity=30.0)


def _per_period(returns):
    return np.asarray(returns) / STEPS


# --------------------------------------------------------------------------- exact optima


@pytest.mark.parametrize("lead_time", [0, 2])
def test_value_iteration_agrees_with_newsvendor(lead_time):
    env = Inventory(lead_time=lead_time, max_order=12)
    vi = value_iteration(env, NEWSVENDOR, tol=1e-4)
    nv = newsvendor(env, NEWSVENDOR)
    assert vi.span < 1e-4 and vi.iterations < 1000
    # demand above max_order = 12 (P < 1e-5) is the only thing the newsvendor formula ignores
    assert abs(vi.gain - nv.average_profit) < 1e-3, (vi.gain, nv)
    # the VI policy is base-stock: order up to S on the inventory position, within max_order
    levels = np.arange(vi.policy.shape[0]) + vi.min_level
    pipeline = np.indices(vi.policy.shape[1:]).sum(0) if lead_time else 0
    position = levels.reshape((-1,) + (1,) * lead_time) + pipeline
    base_stock = np.clip(nv.level - position, 0, env.max_order)
    near = np.broadcast_to(levels.reshape((-1,) + (1,) * lead_time) >= -10, vi.policy.shape)
    np.testing.assert_array_equal(vi.policy[near], base_stock[near])


def test_newsvendor_level_is_the_critical_fractile():
    env = Inventory(lead_time=0, max_order=12)
    for holding, shortage in ((0.5, 2.0), (1.0, 1.0), (2.0, 0.5), (0.1, 9.9)):
        params = NEWSVENDOR.replace(holding_cost=holding, shortage_cost=shortage)
        level = newsvendor(env, params).level
        cdf = np.cumsum(demand_pmf(params))
        ratio = shortage / (shortage + holding)
        assert cdf[level] >= ratio and (level == 0 or cdf[level - 1] < ratio)
    # more lead time, more safety stock: the level covers lead_time + 1 periods of demand
    levels = [newsvendor(Inventory(lead_time=lead, max_order=12), NEWSVENDOR).level
              for lead in range(4)]
    assert levels == sorted(levels) and levels[3] > 3 * 3.0


def test_newsvendor_refuses_when_the_order_limit_or_storage_binds():
    """Poisson(4) demand exceeds max_order = 6 in 11% of periods: base-stock cannot always order
    back up, so the formula's profit (the same instance with a limit that does not bind) is
    above the exact optimum; newsvendor refuses rather than report it."""
    params = NEWSVENDOR.replace(demand_mean=4.0)
    capped = Inventory(lead_time=0, max_order=6)
    optimum = value_iteration(capped, params, tol=1e-4).gain
    assert newsvendor(Inventory(lead_time=0, max_order=20), params).average_profit > optimum + 0.1
    with pytest.raises(ValueError, match=r"max_order=6 with probability 0\.11"):
        newsvendor(capped, params)
    with pytest.raises(ValueError, match="storage_capacity"):  # level 6 > capacity 5
        newsvendor(Inventory(lead_time=0, max_order=20), params.replace(storage_capacity=5.0))
    # the default max_order 10 binds with probability 0.0028: a warning, and 0.0009 above the optimum
    default_limit = Inventory(lead_time=0, max_order=10)
    with pytest.warns(UserWarning, match=r"max_order=10 with probability 0\.0028"):
        solution = newsvendor(default_limit, params)
    gap = solution.average_profit - value_iteration(default_limit, params, tol=1e-5).gain
    assert 0.0 <= gap < 2e-3


def test_demand_pmf_matches_moments():
    for params, var in ((EnvParams(demand_mean=4.0), 4.0),
                        (EnvParams(demand_mean=5.0, demand_dist=1, demand_shape=2.0), 17.5)):
        pmf = demand_pmf(params)
        k = np.arange(pmf.size)
        assert abs(pmf.sum() - 1.0) < 1e-12 and np.all(pmf >= 0)
        assert abs(pmf @ k - params.demand_mean) < 1e-6
        assert abs(pmf @ (k - params.demand_mean) ** 2 - var) < 1e-5
    # three periods of Poisson(4) are Poisson(12)
    np.testing.assert_allclose(demand_pmf(EnvParams(demand_mean=4.0), periods=3),
                               demand_pmf(EnvParams(demand_mean=12.0)), atol=1e-12)


@pytest.fixture(scope="module")
def vi_sim():
    """VI on the lost-sales instance and its policy simulated in the env."""
    vi = value_iteration(SIM_ENV, SIM)
    sim = evaluate(SIM_ENV, SIM, table_policy(SIM_ENV, vi), jax.random.key(0), EPISODES, STEPS)
    return vi, _per_period(sim["return"])


def test_vi_gain_is_what_its_policy_earns_in_the_env(vi_sim):
    """The VI model is the env: simulating the optimal table earns the computed gain."""
    vi, sim = vi_sim
    se = sim.std(ddof=1) / np.sqrt(sim.size)
    assert abs(sim.mean() - vi.gain) < 4 * se + 0.02, (sim.mean(), vi.gain, se)
    assert vi.policy.shape == (21, 9) and vi.min_level == 0
    assert vi.policy[0, 0] > 0 and vi.policy[20, 8] == 0  # empty: order; full: do not


# --------------------------------------------------------------------------- grid search


def test_grid_searched_base_stock_is_near_the_optimum(vi_sim):
    vi, vi_returns = vi_sim
    levels = product_grid(np.concatenate([np.arange(0, 25), [9.0, 9.0]]))  # two duplicates
    result = grid_search(SIM_ENV, SIM, base_stock_policy, levels, jax.random.key(0), EPISODES,
                         STEPS)
    assert result.returns.shape == (27, EPISODES)
    assert result.best_index == int(np.argmax(result.mean_return))
    assert result.best[0] == levels[0][result.best_index]
    np.testing.assert_array_equal(result.returns[25], result.returns[26])  # common random numbers
    np.testing.assert_array_equal(result.returns[25], result.returns[9])
    best = _per_period(result.returns[result.best_index])
    gap = vi_returns - best  # same keys: paired difference
    assert gap.mean() < 0.01 * vi.gain  # base-stock is near-optimal with lost sales, L = 1
    assert gap.mean() > -4 * gap.std(ddof=1) / np.sqrt(gap.size)  # and never beats the optimum
    assert _per_period(result.mean_return).min() < 0.5 * vi.gain  # the grid spans bad levels


@pytest.mark.slow
def test_s_S_beats_base_stock_with_a_fixed_order_cost(vi_sim):  # noqa: N802
    params = SIM.replace(fixed_cost=4.0)
    vi = value_iteration(SIM_ENV, params)
    key = jax.random.key(1)
    vi_returns = _per_period(evaluate(SIM_ENV, params, table_policy(SIM_ENV, vi), key, EPISODES,
                                      STEPS)["return"])
    s, S = product_grid(np.arange(-2, 20), np.arange(0, 25))
    ss = grid_search(SIM_ENV, params, s_S_policy, (s[S > s], S[S > s]), key, EPISODES, STEPS)
    bs = grid_search(SIM_ENV, params, base_stock_policy, product_grid(np.arange(0, 25)), key,
                     EPISODES, STEPS)
    ss_best = _per_period(ss.returns[ss.best_index])
    bs_best = _per_period(bs.returns[bs.best_index])
    assert abs((vi_returns - ss_best).mean()) < 0.01 * vi.gain
    assert ss_best.mean() > bs_best.mean() + 0.1 * vi.gain  # ordering every period costs K
    assert ss.best[1] - ss.best[0] > 1  # batches larger than one period's worth


def test_grid_search_maximises_the_named_metric():
    levels = product_grid(np.arange(0, 25, 4))
    most_stock = grid_search(SIM_ENV, SIM, base_stock_policy, levels, jax.random.key(0), 8, 40,
                             metric="on_hand")
    assert most_stock.best[0] == 24.0
    np.testing.assert_array_equal(most_stock.mean_return, most_stock.returns.mean(1))
    assert np.all(np.diff(most_stock.mean_return) >= 0)  # more stock with a higher level


def test_grid_search_rejects_bad_candidates():
    for candidates in ((), (np.zeros((0,)),), (np.zeros(3), np.zeros(4)), (np.float32(2.0),)):
        with pytest.raises(ValueError, match="candidates"):
            grid_search(SIM_ENV, SIM, s_S_policy, candidates, jax.random.key(0), 2, 3)


# --------------------------------------------------------------------------- policy rules


def _state(inventory, pipeline):
    return EnvState(time=jnp.int32(0), inventory=jnp.float32(inventory),
                    pipeline=jnp.asarray(pipeline, jnp.float32))


@pytest.mark.parametrize("inventory, pipeline, base, ss, rq", [
    # position = inventory + pipeline; base-stock 12, (s, S) = (5, 14), (R, Q) = (6, 7)
    (3.0, [2.0, 0.0], 7, 9, 7),
    (-4.0, [1.0, 2.0], 10, 10, 7),  # 15 and 17 capped at max_order = 10
    (6.0, [0.0, 0.0], 6, 0, 7),
    (7.0, [3.0, 1.0], 1, 0, 0),
    (20.0, [0.0, 0.0], 0, 0, 0),
])
def test_policies_order_from_the_inventory_position(inventory, pipeline, base, ss, rq):
    state = _state(inventory, pipeline)
    for continuous in (False, True):
        env = Inventory(lead_time=2, max_order=10, continuous=continuous)
        params = env.default_params
        for policy, expected in ((base_stock_policy(env, 12.0), base),
                                 (s_S_policy(env, 5.0, 14.0), ss), (r_q_policy(env, 6.0, 7.0), rq)):
            action = policy(jax.random.key(0), None, state, params)
            assert env.action_space(params).contains(action)
            assert float(env.order_quantity(action)[0]) == expected


def test_base_stock_on_the_supply_chain_uses_echelon_positions():
    env = SupplyChain(lead_times=(1, 2))
    params = env.default_params
    state = ChainState(time=jnp.int32(0), on_hand=jnp.array([10.0, 30.0]),
                       pipeline=jnp.array([[5.0, 0.0], [4.0, 6.0]]),
                       backlog=jnp.array([3.0, 2.0, 7.0]))
    # echelon positions: stock at stages 0..i, minus customer backlog 3, plus stage i's
    # unfilled order: stage 0: 10 + 5 - 3 + 2 = 14; stage 1: 15 + 30 + 10 - 3 + 7 = 59
    np.testing.assert_array_equal(env.inventory_position(state), [14.0, 59.0])
    policy = base_stock_policy(env, jnp.array([40.0, 200.0]))
    action = policy(jax.random.key(0), None, state, params)
    np.testing.assert_array_equal(action, [26.0, 90.0])  # 141 capped at capacity 90


def test_policies_compile_once_per_family():
    a, b = base_stock_policy(SIM_ENV, 3.0), base_stock_policy(SIM_ENV, 9.0)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.structure(a) != jax.tree.structure(s_S_policy(SIM_ENV, 3.0, 9.0))


# --------------------------------------------------------------------------- errors


def test_exact_solvers_refuse_what_they_cannot_solve():
    with pytest.raises(ValueError, match="season_amplitude"):
        value_iteration(SIM_ENV, SIM.replace(season_amplitude=0.3))
    with pytest.raises(ValueError, match="Inventory-v0"):
        value_iteration(SupplyChain(), SupplyChain().default_params)
    with pytest.raises(ValueError, match="backorders"):
        newsvendor(SIM_ENV, SIM)
    with pytest.raises(ValueError, match="fixed_cost"):
        newsvendor(SIM_ENV, NEWSVENDOR.replace(fixed_cost=1.0))
    with pytest.raises(ValueError, match=r"params\.holding_cost"):
        value_iteration(SIM_ENV, SIM.replace(holding_cost=-1.0))
    with pytest.raises(ValueError, match="inventory policies"):
        base_stock_policy(object(), 3.0)
    with pytest.raises(ValueError, match="does not fit"):
        table_policy(Inventory(lead_time=2, max_order=8), value_iteration(SIM_ENV, SIM))
