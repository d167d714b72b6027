"""experiments/inventory_optimality.py: the tabular state index, and the script end to end on a
tiny budget (slow: it trains and evaluates)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.envs.inventory.policies import table_policy, value_iteration
from ecomrl_jax.envs.inventory.inventory import EnvParams, Inventory
from experiments import inventory_optimality
from tests.helpers import run_quickly


def test_state_index_is_the_value_iteration_table_index():
    # small instance whose backlog outgrows the table (capped at 3), so clipping is exercised too
    env = Inventory(lead_time=2, max_order=4)
    params = EnvParams(demand_mean=3.0, backorders=True, storage_capacity=12.0,
                       initial_inventory=4.0, max_steps_in_episode=40)
    optimum = value_iteration(env, params, max_backlog=3)
    view = inventory_optimality.StateIndexView(env, optimum)
    assert view.observation_space(params).n == optimum.policy.size == 16 * 5 * 5
    vi_policy = table_policy(env, optimum)

    def step(carry, key):
        obs, state = carry
        k_act, k_step = jax.random.split(key)
        action = jax.random.randint(k_act, (), 0, env.max_order + 1)
        next_obs, next_state, _, _, truncated, info = view.step(k_step, state, action, params)
        out = (obs, vi_policy(k_act, None, state, params), state.inventory, info, next_obs, truncated)
        return (next_obs, next_state), out

    start = view.reset(jax.random.key(0), params)
    _, (obs, vi_action, inventory, info, next_obs, truncated) = jax.lax.scan(
        step, start, jax.random.split(jax.random.key(1), 100))
    assert obs.dtype == jnp.int32 and float(inventory.min()) < -3  # clipped to the lowest level
    # the table row the index picks holds the order table_policy reads from the env state
    np.testing.assert_array_equal(optimum.policy.ravel()[obs], vi_action)
    assert bool(truncated.any())
    final = np.asarray(info["final_observation"])
    np.testing.assert_array_equal(final[~truncated], np.asarray(next_obs)[~truncated])


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    results = run_quickly("experiments.inventory_optimality", ["--seeds", "2", "--total-steps",
        "8192", "--dqn-steps", "4096", "--tabular-steps", "3200", "--episodes", "4", "--window",
        "20", "--lead-times", "0", "--out", str(tmp_path)])
    assert list(results) == ["L=0, lost sales", "L=0, backorders"]
    table = (tmp_path / "inventory_optimality.md").read_text()
    for instance, (best_cost, _, rows) in results.items():
        assert set(rows) == {"VI policy (optimal)", "base-stock", "(s, S)", "PPO", "DQN",
                             "Q-learning (tabular)"}
        assert f"| {instance} | optimum (VI, exact) |" in table
        assert all(f"| {instance} | {name} |" in table for name in rows)
        assert best_cost < 0  # profitable: the optimal cost is negative
        for cost, gap, _ in rows.values():
            assert cost[1] <= cost[0] <= cost[2] and gap[1] <= gap[0] <= gap[2]
    assert "Goal (best learner's mean gap within 3% of the optimum on every instance)" in table
    assert (tmp_path / "inventory_optimality.png").stat().st_size > 0


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        inventory_optimality.main(["--seeds", "1", "--out", str(tmp_path)])
