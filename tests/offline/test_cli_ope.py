"""`ecomrl ope`: estimates with intervals from the OBD sample, a CSV or a .npz log; bad input gives
one line naming the problem (exit code 2), never a NaN."""

import gzip
import json
import re
import shutil

import numpy as np
import pytest

from ecomrl_jax.cli import main
from ecomrl_jax.offline import load_obd, save_npz
from ecomrl_jax.offline.obd import SAMPLE_ROOT

QUICK = ["--bootstrap", "50", "--bts-samples", "2000", "--folds", "2"]


@pytest.mark.slow
def test_obd_bts_from_random_logs_writes_the_table_and_json(tmp_path, capsys):
    out = tmp_path / "ope.json"
    assert main(["ope", "--data", "obd", "--behavior", "random", "--policy", "bts",
                 "--estimators", "ipw,snipw,dm,dr,sndr,switch-dr,dr-os", "--json", str(out), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "10,000 rows logged by random" in printed and "| ipw |" in printed and "| dr-os |" in printed
    result = json.loads(out.read_text())
    assert result["n_rows"] == 10_000 and list(result["estimates"]) == [
        "ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os"]
    for name, e in result["estimates"].items():
        assert all(np.isfinite(v) for v in e.values()), name
        assert e["low"] <= e["value"] <= e["high"], name
        assert 0 < e["value"] < 0.02, name  # OBD click rates are well under 2%
    # DRos with obp's default lambda 0 is DM
    assert result["estimates"]["dr-os"]["value"] == pytest.approx(result["estimates"]["dm"]["value"], rel=1e-6)


def test_npz_log_with_an_npy_policy(tmp_path):
    """The behaviour policy evaluated on its own log: every weight is 1, IPW is the logged mean."""
    data = load_obd("random")
    save_npz(tmp_path / "log.npz", data)
    np.save(tmp_path / "uniform.npy", np.full((data.n_rows, 80, 3), 1 / 80, np.float32))
    out = tmp_path / "ope.json"
    assert main(["ope", "--data", str(tmp_path / "log.npz"), "--policy", str(tmp_path / "uniform.npy"),
                 "--estimators", "ipw", "--json", str(out), *QUICK]) == 0
    result = json.loads(out.read_text())
    assert result["estimates"]["ipw"]["value"] == pytest.approx(float(data.reward.mean()), rel=1e-5)
    assert result["reward_model"] is None


def _csv(tmp_path, edit=lambda cells, header: None):
    """The first 300 rows of the random sample as a CSV; `edit(cells, header)` changes row 1."""
    with gzip.open(SAMPLE_ROOT / "random/all/all.csv.gz", "rt") as f:
        lines = f.read().splitlines()[:301]
    header, cells = lines[0].split(","), lines[1].split(",")
    edit(cells, header)
    (tmp_path / "all.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    shutil.copy(SAMPLE_ROOT / "random/all/item_context.csv.gz", tmp_path)
    return str(tmp_path / "all.csv")


def _npy(tmp_path, array):
    path = tmp_path / "policy.npy"
    np.save(path, array.astype(np.float32))
    return str(path)


def _set(column, value):
    return lambda cells, header: cells.__setitem__(header.index(column), value)


@pytest.mark.parametrize("make_args, message", [
    (lambda p: ["--estimators", "ipw,ips"], r"unknown estimators \['ips'\]; choose from"),
    (lambda p: ["--data", _csv(p, _set("propensity_score", "0"))], r"propensity must lie in \(0, 1\], got 0.0"),
    (lambda p: ["--data", _csv(p, _set("propensity_score", "1.2"))], r"propensity must lie in \(0, 1\], got 1.2"),
    (lambda p: ["--data", str(p / "missing.csv")], "no such file"),
    (lambda p: ["--data", str(p / "log.parquet")], "--data must be 'obd', a CSV in OBD's layout or a .npz"),
    (lambda p: ["--data", _csv(p), "--policy", _npy(p, np.full((300, 80, 3), 0.02))],
     "action distribution must sum to 1 over the 80 items.*sums to 1.6"),
    (lambda p: ["--data", _csv(p), "--policy", _npy(p, np.full((299, 80, 3), 1 / 80))],
     r"must have shape \(n_rows, num_actions, len_list\) = \(300, 80, 3\), got \(299, 80, 3\)"),
    (lambda p: ["--bts-samples", "15000"], "--bts-samples must be a multiple of 10000"),
    (lambda p: ["--bootstrap", "0"], "--bootstrap and --folds must be positive"),
])
def test_bad_input_names_the_problem(tmp_path, capsys, make_args, message):
    assert main(["ope", *QUICK, *make_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecomrl: error:") and "nan" not in err.lower()
    assert re.search(message, err), err

