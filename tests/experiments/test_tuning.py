"""experiments/tuning.py end to end on a tiny budget (slow: it runs every search)."""

import pytest

from experiments import tuning
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_with_every_method(tmp_path):
    summaries = run_quickly("experiments.tuning", [
        "--trials", "4", "--batch", "2", "--total-steps", "6144", "--repeats", "2",
        "--episodes", "4", "--envs", "ShopperRec-v0", "AdBidding-v1", "--out", str(tmp_path)])
    assert set(summaries) == {"ShopperRec-v0", "AdBidding-v1"}
    table = (tmp_path / "tuning.md").read_text()
    assert "linear pacing" in table and (tmp_path / "tuning.png").stat().st_size > 0
    for name, rows in summaries.items():
        assert list(rows) == list(tuning.METHODS)
        config = tuning.ppo.PPOConfig(**tuning.make_task(name, 6144).base)
        budget = 4 * config.num_updates * config.batch_size  # the same for every method
        for method, row in rows.items():
            assert f"| {method} |" in table
            mean, low, high = row["held_out"]
            assert low <= mean <= high
            assert row["total"] == budget
            assert 0 <= row["reached"] <= 2 and len(row["picks"]) == 2
            for pick in row["picks"]:
                assert 1e-4 <= pick["lr"] <= 1e-2 and 0.0 <= pick["ent_coef"] <= 0.05
        assert max(row["reached"] for row in rows.values()) >= 1  # the best method reaches 95% of itself
    assert all(0.0 < rows["bound_pct"][0] <= 100.0
               for rows in summaries["AdBidding-v1"].values())


def test_rejects_a_trial_count_the_grid_cannot_split(tmp_path):
    with pytest.raises(SystemExit):
        tuning.main(["--trials", "6", "--out", str(tmp_path)])
