"""The perfect-foresight oracle (ecomrl_jax/envs/inventory/foresight.py): its plan earns its
objective in the env, its demand is the env's, and it is the optimum of a tiny chain."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.inventory.foresight import (episode_demands, open_loop_policy,
                                                 perfect_foresight)
from ecomrl_jax.envs.inventory.inventory import Inventory
from ecomrl_jax.envs.inventory.supply_chain import EnvParams, SupplyChain
from ecomrl_jax.evaluation import evaluate


ENV, PARAMS = ecomrl_jax.make("SupplyChain-v1")  # one env object: evaluate compiles once


@pytest.mark.parametrize("backlog", [True, False])
def test_replaying_the_plan_earns_the_lp_objective(backlog):
    """OR-Gym's instance: the LP's orders for episode 0, replayed open loop on the same key, give
    exactly the LP's discounted and undiscounted profit; every episode's replayed demand is the
    demand evaluate meets."""
    params, key = PARAMS.replace(backlog=backlog), jax.random.key(7)
    demands = episode_demands(ENV, params, key, 4)
    solution = perfect_foresight(ENV, params, demands[0])
    out = evaluate(ENV, params, open_loop_policy(ENV, solution.orders), key, 4)
    np.testing.assert_allclose(out["discounted_profit"][0], solution.discounted_profit, rtol=1e-5)
    np.testing.assert_allclose(out["return"][0], solution.profit, rtol=1e-5)
    assert float(out["invalid_actions"][0]) == 0.0
    assert solution.orders.shape == (30, 3) and solution.profit > solution.discounted_profit
    assert demands.shape == (4, 30) and len(set(demands.sum(1))) == 4
    np.testing.assert_array_equal(demands.sum(1), out["demand"])


class _FixedDemand(SupplyChain):
    """Demand at step t is `demands[t]`."""

    def __init__(self, demands, **kwargs):
        super().__init__(**kwargs)
        self.demands = tuple(demands)

    def sample_demand(self, key, time, params):
        return jnp.asarray(self.demands, jnp.float32)[time]


TINY = _FixedDemand((2.0, 1.0, 3.0), lead_times=(1, 0))
TINY_PARAMS = EnvParams(initial_inventory=jnp.array([1.0, 1.0]),
                        unit_cost=jnp.array([1.0, 0.8, 0.5]),
                        shortage_cost=jnp.array([0.4, 0.2, 0.1]),
                        holding_cost=jnp.array([0.3, 0.1]), supply_capacity=jnp.array([2.0, 2.0]),
                        price=3.0, alpha=0.9, max_steps_in_episode=3)


@jax.jit
@functools.partial(jax.vmap, in_axes=(None, 0))
def _tiny_discounted_profit(params, orders):
    """OR-Gym's episode reward of each open-loop plan (3, 2) on the tiny chain."""
    _, state = TINY.reset(jax.random.key(0), params)

    def step(state, order):
        _, state, _, _, _, info = TINY.step(jax.random.key(0), state, order, params)
        return state, info["discounted_profit"]

    return jnp.sum(jax.lax.scan(step, state, orders)[1])


@pytest.mark.parametrize("backlog", [True, False])
def test_matches_brute_force_on_a_tiny_chain(backlog):
    """Two stages (lead times 1 and 0), capacities 2, three periods: the best of all 9**3
    whole order sequences, each run in the env, is the LP's value, and so is its plan's."""
    params = TINY_PARAMS.replace(backlog=backlog)
    solution = perfect_foresight(TINY, params, TINY.demands)
    plans = np.array(list(itertools.product(range(3), repeat=6)), np.float32).reshape(-1, 3, 2)
    values = _tiny_discounted_profit(params, np.concatenate([plans, solution.orders[None]]))
    np.testing.assert_allclose(float(jnp.max(values[:-1])), solution.discounted_profit, rtol=1e-5)
    np.testing.assert_allclose(float(values[-1]), solution.discounted_profit, rtol=1e-5)
    assert float(jnp.min(values)) < solution.discounted_profit - 1.0  # plans differ


def test_refuses_other_envs_and_bad_demand():
    with pytest.raises(ValueError, match="SupplyChain"):
        perfect_foresight(Inventory(), Inventory().default_params, np.ones(3))
    for demand in (np.ones((2, 3)), np.array([1.0, -1.0]), np.array([np.nan]), np.array([])):
        with pytest.raises(ValueError, match="demand"):
            perfect_foresight(ENV, PARAMS, demand)
