"""experiments/slateq_interest_evolution.py end to end on a tiny budget (slow: it trains and
evaluates)."""

import math

import pytest

from experiments import slateq_interest_evolution
from tests.helpers import run_quickly

LEARNERS = {"SlateQ", "myopic SlateQ", "SlateQ (learned choice model)", "slate DQN", "PPO"}
BASELINES = {"quality oracle", "random"}


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = run_quickly("experiments.slateq_interest_evolution",
                          ["--seeds", "2", "--total-steps", "8192", "--episodes", "20",
                           "--num-candidates", "5", "--out", str(tmp_path)])
    gap = summary.pop("gap")
    assert set(summary) == LEARNERS | BASELINES
    table = (tmp_path / "slateq_interest_evolution.md").read_text()
    timing = table.split("Training time")[1].split("A/B")[0]
    assert all(f"| {name} |" in table for name in summary)
    assert all(f"| {name} |" in timing for name in LEARNERS)
    assert "SlateQ - myopic SlateQ" in table and "(5 candidates, slate 2)" in table
    assert (tmp_path / "slateq_interest_evolution.png").stat().st_size > 0
    for interval in [gap, *(v for stats in summary.values() for v in stats.values())]:
        mean, low, high = interval
        assert all(map(math.isfinite, interval)) and low <= mean <= high
    assert summary["quality oracle"]["return"][0] > summary["random"]["return"][0]


@pytest.mark.parametrize("argv", [["--seeds", "1"], ["--total-steps", "1000"],
                                  ["--num-candidates", "3", "--slate-size", "4"]])
def test_rejects_bad_sizes(argv, tmp_path):
    with pytest.raises(SystemExit):
        slateq_interest_evolution.main([*argv, "--out", str(tmp_path)])
