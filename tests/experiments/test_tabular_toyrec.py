"""experiments/tabular_toyrec.py end to end on a tiny budget (slow: it trains and evaluates)."""

import numpy as np
import pytest

from experiments import tabular_toyrec
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_curves_that_approach_the_optimum(tmp_path):
    results = run_quickly("experiments.tabular_toyrec", ["--seeds", "2", "--total-steps", "64000",
        "--points", "4", "--out", str(tmp_path)])
    assert set(results) == set(tabular_toyrec.ALGOS)
    table = (tmp_path / "tabular_toyrec.md").read_text()
    assert all(f"| {name} |" in table for name in results)
    assert (tmp_path / "tabular_toyrec.png").stat().st_size > 0
    for r in results.values():
        assert r["j"].shape == (2, 4) and np.all(np.diff(r["steps"]) > 0)
        # greedy value starts below and ends above the first point on average: learning happens
        assert r["j"][:, -1].mean() > r["j"][:, 0].mean() - 1e-6
        assert np.all(np.isfinite(r["err_visited"]))


def test_rejects_a_single_seed(tmp_path):
    with pytest.raises(SystemExit):
        tabular_toyrec.main(["--seeds", "1", "--out", str(tmp_path)])
