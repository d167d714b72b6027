"""experiments/algorithms_shopper.py end to end on a tiny budget (slow: it trains and evaluates)."""

import math

import pytest

from experiments import algorithms_shopper
from tests.helpers import run_quickly

LEARNERS = {"PPO", "A2C", "REINFORCE", "DQN", "PPO (transformer-tiny)", "DQN (transformer-tiny)"}
BASELINES = {"myopic oracle", "popularity", "random"}


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = run_quickly("experiments.algorithms_shopper", ["--seeds", "2", "--total-steps",
        "8192", "--episodes", "50", "--out", str(tmp_path)])
    assert set(summary) == LEARNERS | BASELINES
    table = (tmp_path / "algorithms_shopper.md").read_text()
    timing = table.split("Training time")[1].split("A/B")[0]
    assert all(f"| {name} |" in table for name in summary)
    assert all(f"| {name} |" in timing for name in LEARNERS)
    assert "A/B on common random numbers" in table and "Tabular Q-learning and SARSA" in table
    assert (tmp_path / "algorithms_shopper.png").stat().st_size > 0
    for stats in summary.values():
        assert set(stats) == {"return", "clicks", "purchases", "revenue"}
        for mean, low, high in stats.values():
            assert all(map(math.isfinite, (mean, low, high))) and low <= mean <= high
    assert summary["myopic oracle"]["return"][0] > summary["random"]["return"][0]


def test_rejects_a_single_seed_or_a_budget_below_one_update(tmp_path):
    with pytest.raises(SystemExit):
        algorithms_shopper.main(["--seeds", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        algorithms_shopper.main(["--total-steps", "1000", "--out", str(tmp_path)])
