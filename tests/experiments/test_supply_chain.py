"""experiments/supply_chain.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import supply_chain


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    summary = supply_chain.main(["--seeds", "2", "--total-steps", "7680", "--dqn-steps", "4096",
                                 "--episodes", "8", "--out", str(tmp_path)])
    assert set(summary) == {"base-stock (grid)", "PPO", "DQN"}
    table = (tmp_path / "supply_chain.md").read_text()
    assert all(f"| {name} |" in table for name in summary) and "OR-Gym paper" in table
    assert (tmp_path / "supply_chain.png").stat().st_size > 0
    for stats in summary.values():
        for mean, low, high in stats.values():
            assert low <= mean <= high
    assert summary["base-stock (grid)"]["return"][0] > 300  # docs: about 379 at levels (90, 225, 450)


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        supply_chain.main(["--seeds", "1", "--out", str(tmp_path)])
