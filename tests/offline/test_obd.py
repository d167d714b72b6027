"""OBD loader: the vendored sample reads as obp 0.4.1 preprocesses it; bad files give clear errors."""

import gzip
import shutil

import numpy as np
import pytest

from ecomrl_jax.offline import load_npz, save_npz, take_rows
from ecomrl_jax.offline.obd import SAMPLE_ROOT, load_obd, read_obd_csv


@pytest.fixture(scope="module")
def random_log():
    return load_obd("random")


def test_vendored_samples_have_obds_sizes(random_log):
    for data in (random_log, load_obd("bts")):
        assert data.n_rows == 10_000 and data.num_actions == 80 and data.len_list == 3
        assert set(np.unique(data.position)) == {0, 1, 2}
        assert data.action_context.shape == (80, 5)
        np.testing.assert_array_equal(data.action_context[:, 0], np.arange(80))  # item_id first
    np.testing.assert_allclose(random_log.propensity, 1 / 80)  # uniform random over 80 items
    assert 0.002 < float(np.mean(random_log.reward)) < 0.01  # OBD's click rate is well under 1%


def test_context_is_one_hot_per_user_feature_with_first_category_dropped(random_log):
    """obp's get_dummies(drop_first=True) over 4 user features: each row has at most 4 ones,
    and every column is used (a dropped category is the all-zero pattern of its group)."""
    context = np.asarray(random_log.context)
    assert set(np.unique(context)) == {0.0, 1.0}
    assert context.sum(axis=1).max() <= 4
    assert context.sum(axis=0).min() > 0


def test_plain_csv_subset_and_npz_round_trip(tmp_path, random_log):
    """An uncompressed copy of the first rows reads to the same rows; save_npz/load_npz keep it."""
    head = _write_csv(tmp_path, lambda lines: lines[:201])
    subset = read_obd_csv(head)
    assert subset.n_rows == 200
    np.testing.assert_array_equal(subset.action, random_log.action[:200])
    np.testing.assert_array_equal(subset.reward, random_log.reward[:200])
    save_npz(tmp_path / "log.npz", subset)
    again = load_npz(tmp_path / "log.npz")
    np.testing.assert_array_equal(again.context, subset.context)
    np.testing.assert_array_equal(again.action_context, subset.action_context)
    picked = take_rows(subset, np.array([5, 0, 5]))
    assert picked.n_rows == 3 and picked.action_context is subset.action_context
    np.testing.assert_array_equal(picked.context, subset.context[np.array([5, 0, 5])])
    np.testing.assert_array_equal(picked.propensity, subset.propensity[np.array([5, 0, 5])])


def _write_csv(tmp_path, edit):
    """The random sample's CSV, its lines passed through `edit`, with item_context beside it."""
    with gzip.open(SAMPLE_ROOT / "random/all/all.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    path = tmp_path / "all.csv"
    path.write_text("\n".join(edit(lines)) + "\n")
    shutil.copy(SAMPLE_ROOT / "random/all/item_context.csv.gz", tmp_path / "item_context.csv.gz")
    return path


def _replace_cell(lines, column, value, row=1):
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    return [*lines[:row], ",".join(cells), *lines[row + 1:50]]


@pytest.mark.parametrize("edit, message", [
    (lambda lines: [lines[0].replace("propensity_score", "pscore"), *lines[1:50]],
     r"lacks columns \['propensity_score'\]"),
    (lambda lines: _replace_cell(lines, "propensity_score", "0"), r"propensity must lie in \(0, 1\], got 0.0 at row"),
    (lambda lines: _replace_cell(lines, "propensity_score", "1.5"), r"propensity must lie in \(0, 1\], got 1.5"),
    (lambda lines: _replace_cell(lines, "item_id", "80"), r"action must hold integers in \[0, 80\)"),
    (lambda lines: _replace_cell(lines, "item_id", "3.5"), r"column 'item_id' must hold whole numbers; got '3.5'"),
    (lambda lines: _replace_cell(lines, "click", "yes"), r"column 'click' must hold numbers"),
    (lambda lines: lines[:1], "is empty"),
])
def test_bad_csv_names_the_problem(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        read_obd_csv(_write_csv(tmp_path, edit))


def test_missing_files_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match=r"no such file: .*nope.csv"):
        read_obd_csv(tmp_path / "nope.csv")
    path = _write_csv(tmp_path, lambda lines: lines[:20])
    (tmp_path / "item_context.csv.gz").unlink()
    with pytest.raises(ValueError, match="item_context.csv.*item features beside all.csv"):
        read_obd_csv(path)
    with pytest.raises(ValueError, match=r"behavior must be one of \['random', 'bts'\]"):
        load_obd("greedy")
    with pytest.raises(ValueError, match="holds campaign 'all' only"):
        load_obd("random", "men")
    with pytest.raises(ValueError, match="<root>/bts/men/men.csv"):
        load_obd("bts", "men", root=tmp_path)


def test_bad_npz_names_the_problem(tmp_path, random_log):
    """A log stored with fractional actions is refused, not truncated; missing keys and a corrupt
    file are named."""
    save_npz(tmp_path / "log.npz", random_log)
    stored = dict(np.load(tmp_path / "log.npz"))
    np.savez(tmp_path / "float_action.npz", **{**stored, "action": stored["action"] + 0.5})
    with pytest.raises(ValueError, match=r"action must hold integers in \[0, 80\), got dtype float"):
        load_npz(tmp_path / "float_action.npz")
    np.savez(tmp_path / "no_reward.npz", **{k: v for k, v in stored.items() if k != "reward"})
    with pytest.raises(ValueError, match=r"lacks \['reward'\]"):
        load_npz(tmp_path / "no_reward.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read LoggedBandit from"):
        load_npz(tmp_path / "corrupt.npz")
