"""experiments/inventory_optimality.py end to end on a tiny budget (slow: it trains and evaluates)."""

import pytest

from experiments import inventory_optimality


@pytest.mark.slow
def test_writes_table_and_figure_with_every_policy(tmp_path):
    results = inventory_optimality.main(["--seeds", "2", "--total-steps", "8192", "--dqn-steps", "4096",
                                         "--episodes", "4", "--window", "20", "--lead-times", "0",
                                         "--out", str(tmp_path)])
    assert list(results) == ["L=0, lost sales", "L=0, backorders"]
    table = (tmp_path / "inventory_optimality.md").read_text()
    for instance, (best_cost, _, rows) in results.items():
        assert set(rows) == {"VI policy (optimal)", "base-stock", "(s, S)", "PPO", "DQN"}
        assert f"| {instance} | optimum (VI, exact) |" in table
        assert all(f"| {instance} | {name} |" in table for name in rows)
        assert best_cost < 0  # profitable: the optimal cost is negative
        for cost, gap, _ in rows.values():
            assert cost[1] <= cost[0] <= cost[2] and gap[1] <= gap[0] <= gap[2]
    assert "Goal (best learner's mean gap within 3% of the optimum on every instance)" in table
    assert (tmp_path / "inventory_optimality.png").stat().st_size > 0


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        inventory_optimality.main(["--seeds", "1", "--out", str(tmp_path)])
