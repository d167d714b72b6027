"""experiments/supply_chain.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import supply_chain
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy_and_both_variants(tmp_path):
    summary = run_quickly("experiments.supply_chain", ["--seeds", "2", "--total-steps", "7680",
        "--dqn-steps", "4096", "--episodes", "8", "--out", str(tmp_path)])
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


def test_table_cites_or_gym_figures_and_speaks_of_the_experiment_only(tmp_path):
    """The results table, from made-up results: OR-Gym's published figures with their source,
    and no sentence about how they were looked for."""
    names = [supply_chain.ORACLE, "base-stock (grid)", "PPO", "DQN"]
    summary = {n: {m: (400.0 + i, 390.0 + i, 410.0 + i) for m in supply_chain.METRICS}
               for i, n in enumerate(names)}
    results = {v: (summary, {n: "" for n in names}, None, 1.0) for v in supply_chain.VARIANTS}
    supply_chain.write_table(results, 2, 8, 8, tmp_path / "supply_chain.md")
    table = (tmp_path / "supply_chain.md").read_text()
    assert "notebooks/inv_management_plots.ipynb @ a092b92" in table and "arXiv:2008.06319" in table
    for figures in supply_chain.OR_GYM.values():
        assert all(f"| {value:.1f} |" in table for value in figures.values())
    for narrative in ("search", "found", "could not", "not included", "memory", "tool"):
        assert narrative not in table.replace("grid search", ""), narrative


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        supply_chain.main(["--seeds", "1", "--out", str(tmp_path)])
