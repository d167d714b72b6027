"""experiments/supply_chain.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import supply_chain


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy_and_both_variants(tmp_path):
    summary = supply_chain.main(["--seeds", "2", "--total-steps", "7680", "--dqn-steps", "4096",
                                 "--episodes", "8", "--out", str(tmp_path)])
    assert set(summary) == {"backlog", "lost sales"}
    table = (tmp_path / "supply_chain.md").read_text()
    assert "arXiv:2008.06319" in table and "not included" not in table
    assert "438.8" in table and "546.8" in table and "409.8" in table and "542.7" in table
    assert (tmp_path / "supply_chain.png").stat().st_size > 0
    for variant in summary.values():
        assert set(variant) == {"oracle (perfect foresight)", "base-stock (grid)", "PPO", "DQN"}
        assert all(f"| {name} |" in table for name in variant)
        for stats in variant.values():
            for mean, low, high in stats.values():
                assert low <= mean <= high
        oracle = variant["oracle (perfect foresight)"]["discounted_profit"][0]
        assert all(stats["discounted_profit"][0] <= oracle for stats in variant.values())
        assert variant["base-stock (grid)"]["discounted_profit"][0] > 300  # docs: about 379-390
        assert 500 < oracle < 650  # OR-Gym's oracle: 546.8 (backlog), 542.7 (lost sales)
    assert table.count("(the oracle bounds every policy)") == 2  # on every episode and seed


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        supply_chain.main(["--seeds", "1", "--out", str(tmp_path)])
