"""experiments/pricing_rl.py end to end on a tiny budget (slow: it trains and evaluates)."""

import math

import pytest

from experiments import pricing_rl
from tests.helpers import run_quickly

POLICIES = {"oracle", "fixed price 7", "cost-plus (keystone)", "predictive (linear fit)", "PPO",
            "DQN"} | set(pricing_rl.BANDITS)


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy_for_both_oracles(tmp_path):
    # one setting per oracle (myopic with unlimited stock, DP with finite stock); the other
    # settings differ from "stationary" only in params
    results = run_quickly("experiments.pricing_rl", ["--seeds", "2", "--ppo-steps", "4096",
        "--dqn-steps", "4096", "--bandit-rounds", "500", "--episodes", "4", "--settings",
        "stationary", "finite_stock", "--out", str(tmp_path)])
    assert list(results) == ["stationary", "finite_stock"]
    table = (tmp_path / "pricing_rl.md").read_text()
    for setting, rows in results.items():
        assert set(rows) == POLICIES
        assert all(f"| {setting} | {name} |" in table for name in rows)
        assert rows["oracle"]["percent"] == (100.0, 100.0, 100.0)
        assert rows["oracle"]["revenue"][0] >= rows["fixed price 7"]["revenue"][0]
        for name, r in rows.items():
            mean, low, high = r["percent"]
            assert all(math.isfinite(x) for x in r["percent"]) and low <= mean <= high
            assert 0.0 <= mean <= 110.0  # 100 + noise at most: the oracle is optimal
            assert (r["seeds"] is None) == (name not in {"PPO", "DQN"} | set(pricing_rl.BANDITS))
            assert r["seeds"] is None or len(r["seeds"]) == 2
    assert ("Goal (best learner's mean revenue as % of the oracle's: >= 98% on stationary, "
            ">= 95% on seasonal): " in table)
    assert (tmp_path / "pricing_rl.png").stat().st_size > 0


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        pricing_rl.main(["--seeds", "1", "--out", str(tmp_path)])
