"""experiments/ope_accuracy.py end to end on a tiny budget (slow: compiles every env, estimator
and learner)."""

import numpy as np
import pytest

from experiments import ope_accuracy
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_tables_and_one_figure_per_env(tmp_path):
    out = run_quickly("experiments.ope_accuracy", ["--quick", "--max-rows", "1000", "--reps", "1", "--seeds", "2",
                                                   "--ppo-steps", "512", "--quiet", "--out", str(tmp_path)])
    assert set(out["results"]) == set(ope_accuracy.ENVS) == set(out["learned"])
    for result in out["results"].values():
        errors = [e for by_name in result["rows"][1000].values() for e in by_name]
        assert np.all(np.isfinite(errors)) and np.all(np.asarray(errors) >= 0)
    for values in out["learned"].values():
        assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in values.values())
    assert [name for name, _, _ in out["obd"]] == ["random", "bts"]
    table = (tmp_path / "ope_accuracy.md").read_text()
    assert "Offline policy learning" in table and "OBDClicks-v0" in table and "Goal (an offline-learned" in table
    assert table.count("Lowest mean error: ") == len(ope_accuracy.ENVS)
    for label in ope_accuracy.ENVS:
        assert (tmp_path / f"ope_accuracy_{label.replace(' ', '_')}.png").stat().st_size > 0


def test_rejects_a_log_below_1000_decisions(tmp_path):
    with pytest.raises(SystemExit):
        ope_accuracy.main(["--max-rows", "10", "--out", str(tmp_path)])
