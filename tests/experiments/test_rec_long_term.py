"""experiments/rec_long_term.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import rec_long_term
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = run_quickly("experiments.rec_long_term", ["--seeds", "2", "--total-steps", "40960",
        "--episodes", "50", "--out", str(tmp_path)])
    assert set(summary) == {"PPO", "myopic oracle", "popularity", "random"}
    table = (tmp_path / "rec_long_term.md").read_text()
    assert all(f"| {name} |" in table for name in summary) and "A/B on common random numbers" in table
    assert (tmp_path / "rec_long_term.png").stat().st_size > 0
    mean, low, high = summary["PPO"]["return"]
    assert low <= mean <= high and summary["PPO"]["return"][0] > summary["random"]["return"][0]


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        rec_long_term.main(["--seeds", "1", "--out", str(tmp_path)])
