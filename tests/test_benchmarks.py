"""Smoke runs of the benchmark scripts at tiny sizes: they run and write their tables."""

import json

import pytest

from benchmarks import ope_speed


@pytest.mark.slow
def test_ope_speed_writes_its_table(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # the script appends its device count to the user's flags
    result = ope_speed.main(["--rows", "2000", "--resamples", "20", "--devices", "1", "--out", str(tmp_path)])
    timings = result["jax"]["timings"]
    assert set(timings) == {"all seven, shared resamples", *ope_speed.NAMES}
    assert all(t["run_s"] > 0 and t["compile_s"] > 0 for t in timings.values())
    assert json.loads((tmp_path / "ope_speed.json").read_text())["rows"] == 2000
    assert "| ecomrl_jax, one bootstrap of all seven" in (tmp_path / "ope_speed.md").read_text()
