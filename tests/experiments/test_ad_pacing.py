"""experiments/ad_pacing.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import ad_pacing
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = run_quickly("experiments.ad_pacing", ["--seeds", "2", "--total-steps", "12288",
        "--runs", "2", "--days", "8", "--out", str(tmp_path)])
    rules = {"constant bid 1.0 (the value)", "constant bid 0.7 (best constant)", "linear pacing",
             "hindsight multiplier, on the grid", "linear pacing, continuous"}
    assert set(summary) == {"PPO", "A2C", "DQN", "PPO, pacing residual"} | rules
    table = (tmp_path / "ad_pacing.md").read_text()
    assert all(f"| {name} |" in table for name in summary) and "A/B on common random numbers" in table
    assert (tmp_path / "ad_pacing.png").stat().st_size > 0
    for stats in summary.values():
        mean, low, high = stats["bound_pct"]
        assert low <= mean <= high and 0.0 <= mean <= 100.0  # an upper bound on every day
        assert stats["spent_pct"][0] <= 100.0 + 1e-3
    assert summary["linear pacing"]["bound_pct"][0] > summary["constant bid 1.0 (the value)"]["bound_pct"][0]


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        ad_pacing.main(["--seeds", "1", "--out", str(tmp_path)])
