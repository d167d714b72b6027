"""experiments/rec_long_term.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import rec_long_term
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = run_quickly("experiments.rec_long_term", [
        "--seeds", "2", "--total-steps", "40960", "--slateq-steps", "4096", "--episodes", "50",
        "--out", str(tmp_path)])
    gaps = summary.pop("gaps")
    names = {"PPO", rec_long_term.KNOWN, rec_long_term.LEARNED, "patience lookahead",
             "myopic oracle", "popularity", "random"}
    assert set(summary) == names and set(gaps) == names - {"PPO"}
    table = (tmp_path / "rec_long_term.md").read_text()
    assert all(f"| {name} |" in table for name in summary) and "A/B on common random numbers" in table
    assert (tmp_path / "rec_long_term.png").stat().st_size > 0
    mean, low, high = summary["PPO"]["return"]
    assert low <= mean <= high and summary["PPO"]["return"][0] > summary["random"]["return"][0]
    rule, myopic = summary["patience lookahead"], summary["myopic oracle"]
    assert rule["return"][1] > myopic["return"][2]  # apart, on the same sessions
    assert rule["length"][0] > summary["random"]["length"][0]
    ppo_minus_random = summary["PPO"]["return"][0] - summary["random"]["return"][0]
    assert gaps["random"][0] == pytest.approx(ppo_minus_random, rel=1e-5)


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        rec_long_term.main(["--seeds", "1", "--out", str(tmp_path)])
