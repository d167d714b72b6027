"""experiments/obd_ope.py end to end on a tiny budget (slow: fits 2 x 3 x 3 x 3 reward models)."""

import numpy as np
import pytest

from experiments import obd_ope
from tests.helpers import run_quickly


@pytest.mark.slow
def test_writes_table_and_figure_with_errors_of_obps_size(tmp_path):
    out = run_quickly("experiments.obd_ope", ["--quick", "--resamples", "3", "--model-steps", "50",
                                              "--bts-samples", "10000", "--out", str(tmp_path)])
    assert set(out["results"]) == set(obd_ope.DIRECTIONS)
    for result in out["results"].values():
        assert 0.003 < result["truth"] < 0.005
        for name in obd_ope.ESTIMATORS:
            errors = result["errors"][name]
            assert errors.shape == (3,) and np.all(np.isfinite(errors)) and np.all(errors < 2), name
    table = (tmp_path / "obd_ope.md").read_text()
    assert "OBP published" in table and "0.157 ± 0.110" in table and "| dr-os-slope |" in table
    assert (tmp_path / "obd_ope.png").stat().st_size > 0


def test_rejects_bts_samples_off_the_chunk(tmp_path):
    with pytest.raises(SystemExit):
        obd_ope.main(["--bts-samples", "15000", "--out", str(tmp_path)])
