"""experiments/online_adaptation.py: recovery counting, and end to end on a tiny budget (slow)."""

import jax
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.inventory.policies import table_policy, value_iteration
from ecomrl_jax.wrappers import Drift, DriftSchedule, drift_preset
from experiments import online_adaptation as oa
from tests.helpers import run_quickly


def test_recovery_counts_periods_after_the_change_until_the_smoothed_ratio_reaches_95():
    oracle = np.full(10, 10.0)
    curve = np.array([10, 10, 1, 5, 9.6, 9.4, 9.6, 9.7, 9.8, 9.9])  # change at period 2
    # smoothed over 3 periods from the change: 5.2, 8.0, 9.53 -> period 2 after the change
    assert oa.recovery_periods(curve, oracle, change=2) == 2
    assert oa.recovery_periods(np.full(10, 9.0), oracle, change=2) is None


def test_inventory_oracle_orders_by_the_optimum_of_the_params_in_force():
    inner, base = ecomrl_jax.make("Inventory-v0", lead_time=0)
    params = drift_preset(inner, "demand_jump", DriftSchedule(start=5.0), base)
    key = jax.random.key(0)
    obs, state = Drift(inner).reset(key, params)
    select = oa.oracle_action(inner, params)
    optimum = [table_policy(inner, value_iteration(inner, p)) for p in (params.base, params.target)]
    differ = 0
    for level in range(0, 21, 2):
        at = state.replace(env_state=state.env_state.replace(inventory=jax.numpy.float32(level)))
        before, after = (policy(key, obs, at.env_state, p)
                         for policy, p in zip(optimum, (params.base, params.target)))
        differ += int(before != after)
        assert select(key, obs, at.replace(clock=4)) == before
        assert select(key, obs, at.replace(clock=5)) == after
    assert differ  # twice the demand: larger orders somewhere


@pytest.mark.slow
def test_writes_table_and_a_figure_per_scenario(tmp_path):
    scenarios = ["pricing_demand_shift", "shopper_new_items", "inventory_demand_jump"]  # one per env
    results = run_quickly("experiments.online_adaptation", [
        "--seeds", "2", "--train-steps", "512", "--markets", "4", "--periods", "4", "--change", "2",
        "--scenarios", *scenarios, "--out", str(tmp_path)])
    assert list(results) == scenarios
    learners = {*oa.PPO_ONLINE, *oa.DQN_ONLINE, "scratch PPO", "frozen PPO", "frozen DQN", "oracle"}
    table = (tmp_path / "online_adaptation.md").read_text()
    for scenario, curves in results.items():
        bandits = set(oa.BANDITS) if scenario.startswith("pricing") else set()
        assert set(curves) == learners | bandits
        assert all(c.shape == (2, 4) for c in curves.values())
        assert np.isnan(curves["scratch PPO"][:, :2]).all()
        assert all(np.isfinite(c[:, 2:]).all() for c in curves.values())
        assert f"### {scenario}" in table
        assert (tmp_path / f"online_adaptation_{scenario}.png").stat().st_size > 0
    # the demand jump doubles what the inventory oracle earns; the pricing shift lowers it
    inventory = results["inventory_demand_jump"]["oracle"]
    pricing = results["pricing_demand_shift"]["oracle"]
    assert inventory[:, 2:].mean() > 1.5 * inventory[:, :2].mean()
    assert pricing[:, 2:].mean() < pricing[:, :2].mean()


def test_rejects_a_change_after_the_end(tmp_path):
    with pytest.raises(SystemExit):
        oa.main(["--periods", "4", "--change", "4", "--out", str(tmp_path)])
