"""experiments/crm_lifetime_value.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import crm_lifetime_value
from tests.helpers import run_quickly

RULES = {"never contact", "always discount 10%", "RFM rules", "RFM rules (tuned: 2 / 3 weeks)",
         "myopic uplift (knows latents)"}


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = run_quickly("experiments.crm_lifetime_value", ["--seeds", "2", "--total-steps",
        "40960", "--runs", "2", "--episodes", "50", "--out", str(tmp_path)])
    assert set(summary) == {"PPO", "A2C", "DQN"} | RULES
    table = (tmp_path / "crm_lifetime_value.md").read_text()
    assert all(f"| {name} |" in table for name in summary)
    assert "A/B on common random numbers" in table and "Goal (" in table
    assert (tmp_path / "crm_lifetime_value.png").stat().st_size > 0
    for stats in summary.values():
        mean, low, high = stats["return"]
        assert low <= mean <= high and 0.0 <= stats["churned"][0] <= 1.0
    assert summary["never contact"]["contacts"][0] == 0.0


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        crm_lifetime_value.main(["--seeds", "1", "--out", str(tmp_path)])
