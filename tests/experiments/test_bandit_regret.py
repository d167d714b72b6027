"""experiments/bandit_regret.py end to end on a tiny budget (slow: compiles every algorithm)."""

import numpy as np
import pytest

from experiments import bandit_regret
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_figure_checks_and_throughput(tmp_path):
    out = run_quickly("experiments.bandit_regret", ["--quick", "--runs", "6", "--rounds", "400",
        "--long-rounds", "400", "--out", str(tmp_path)])
    assert set(out["results"]) == {bandit_regret.BERNOULLI, bandit_regret.LONG, "PricingBandit-v0",
                                   "ContextualLinearBandit-v0"}
    rows = out["results"][bandit_regret.BERNOULLI]["rows"]
    assert "Thompson (Beta-Bernoulli)" in rows and "UCB1 (c=1)" in rows
    for result in out["results"].values():
        for r in result["rows"].values():
            mean, low, high = r["final"]
            assert low <= mean <= high and mean >= 0 and r["band"].shape == (bandit_regret.NUM_POINTS, 3)
            assert np.all(np.diff(r["band"][:, 0]) >= -1e-6)  # cumulative regret never falls
    assert len(out["checks"]) == 6 and all("sub-linear" in t or "below" in t for t, _ in out["checks"])
    assert all(r["rounds_per_s"] > 0 for r in out["throughput"].values())
    table = (tmp_path / "bandit_regret.md").read_text()
    assert "## Checks" in table and "Lai-Robbins" in table and "long horizon" in table
    assert (tmp_path / "bandit_regret.png").stat().st_size > 0


def test_rejects_too_few_rounds(tmp_path):
    with pytest.raises(SystemExit):
        bandit_regret.main(["--rounds", "10", "--out", str(tmp_path)])
