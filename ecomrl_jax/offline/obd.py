"""Open Bandit Dataset (OBD) loader: ZOZOTOWN's logged clicks as a `LoggedBandit`.

OBD (Saito et al., "Open Bandit Dataset and Pipeline", NeurIPS 2021 Datasets & Benchmarks; CC BY 4.0)
logs 80 fashion items shown in 3 slate positions by two behaviour policies, uniform random and
Bernoulli Thompson sampling (`random`, `bts`), in three campaigns (`all`, `men`, `women`). The full
dataset's directory layout is `<root>/<behavior>/<campaign>/<campaign>.csv` plus `item_context.csv`
beside it; the package ships the 10,000-row 'all' sample of both policies in that layout (gzipped,
`obd_sample/`, with its licence). Preprocessing follows obp 0.4.1's `OpenBanditDataset` so
estimates match obp's: rows sorted by timestamp, positions dense-ranked from 0, context the
one-hot user features (`pandas.get_dummies(drop_first=True)`: per feature, categories sorted and
the first dropped), action_context the label-encoded item features 1-3 after the item id and the
numeric item feature 0 last.
"""

import csv
import gzip
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ecomrl_jax.offline.data import LoggedBandit, validate

SAMPLE_ROOT = Path(__file__).parent / "obd_sample"
BEHAVIORS = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")
ITEM_COLUMNS = ("item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
USER_FEATURE_PREFIX = "user_feature"


def load_obd(behavior: str = "random", campaign: str = "all", root: str | Path | None = None) -> LoggedBandit:
    """The OBD log of `behavior` in `campaign` under `root` (default: the vendored 'all' sample)."""
    if behavior not in BEHAVIORS:
        raise ValueError(f"OBD behavior must be one of {list(BEHAVIORS)}, got {behavior!r}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"OBD campaign must be one of {list(CAMPAIGNS)}, got {campaign!r}")
    if root is None and campaign != "all":
        raise ValueError(f"the vendored OBD sample holds campaign 'all' only; pass root= the full "
                         f"dataset's directory for campaign {campaign!r}")
    directory = Path(root or SAMPLE_ROOT) / behavior / campaign
    return read_obd_csv(_existing(directory / f"{campaign}.csv",
                                  f"expected OBD's layout <root>/{behavior}/{campaign}/{campaign}.csv"))


def read_obd_csv(path: str | Path) -> LoggedBandit:
    """A log in OBD's CSV layout (`.csv` or `.csv.gz`) with `item_context.csv` beside it."""
    path = _existing(Path(path), "expected a CSV file in OBD's layout")
    header, rows = _read_table(path, LOG_COLUMNS)
    user_columns = [i for i, name in enumerate(header) if name.startswith(USER_FEATURE_PREFIX)]
    if not user_columns:
        raise ValueError(f"{path} has no {USER_FEATURE_PREFIX}_* columns; OBD logs hold the user "
                         f"features the context is built from")
    order = np.argsort(rows[:, header.index("timestamp")], kind="stable")
    rows = rows[order]
    action = _integers(rows[:, header.index("item_id")], path, "item_id")
    raw_position = _numbers(rows[:, header.index("position")], path, "position")
    position = np.unique(raw_position, return_inverse=True)[1]  # dense rank, 0-based (obp)
    reward = _numbers(rows[:, header.index("click")], path, "click")
    propensity = _numbers(rows[:, header.index("propensity_score")], path, "propensity_score")
    context = np.concatenate([_one_hot_drop_first(rows[:, i]) for i in user_columns], axis=1)
    item_path = _existing(path.parent / "item_context.csv", f"OBD keeps item features beside {path.name}")
    action_context = _item_features(item_path)
    data = LoggedBandit(context=jnp.asarray(context, jnp.float32), action=jnp.asarray(action, jnp.int32),
                        position=jnp.asarray(position, jnp.int32), reward=jnp.asarray(reward, jnp.float32),
                        propensity=jnp.asarray(propensity, jnp.float32),
                        action_context=jnp.asarray(action_context, jnp.float32),
                        num_actions=action_context.shape[0], len_list=int(position.max()) + 1)
    try:
        return validate(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _existing(path: Path, hint: str) -> Path:
    """`path` or its gzipped twin `path.gz`, whichever exists; else a ValueError with `hint`."""
    for candidate in (path, Path(f"{path}.gz")) if path.suffix != ".gz" else (path,):
        if candidate.is_file():
            return candidate
    raise ValueError(f"no such file: {path} (nor {path}.gz); {hint}")


def _read_table(path: Path, required: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Header and string cells of a CSV whose first column is pandas' unnamed index (dropped)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            cells = [row[1:] for row in reader if row]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if header is None or not cells:
        raise ValueError(f"{path} is empty; expected a header and at least one row")
    header = header[1:]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; OBD's layout needs {list(required)}")
    if any(len(row) != len(header) for row in cells):
        bad = next(i for i, row in enumerate(cells) if len(row) != len(header))
        raise ValueError(f"{path} row {bad + 1} has {len(cells[bad]) + 1} cells, the header {len(header) + 1}")
    return header, np.array(cells, dtype=str)


def _numbers(cells: np.ndarray, path: Path, column: str) -> np.ndarray:
    try:
        return cells.astype(np.float64)
    except ValueError:
        raise ValueError(f"{path} column {column!r} must hold numbers") from None


def _integers(cells: np.ndarray, path: Path, column: str) -> np.ndarray:
    """The cells as int64, or a ValueError naming the first that is not a whole number."""
    values = _numbers(cells, path, column)
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        bad = int(np.argmin(whole))
        raise ValueError(f"{path} column {column!r} must hold whole numbers; got {str(cells[bad])!r}")
    return values.astype(np.int64)


def _one_hot_drop_first(cells: np.ndarray) -> np.ndarray:
    """One column per category except the first in sorted order (pandas.get_dummies(drop_first=True))."""
    categories, codes = np.unique(cells, return_inverse=True)
    return (codes[:, None] == np.arange(1, len(categories))[None, :]).astype(np.float32)


def _item_features(path: Path) -> np.ndarray:
    """(num_actions, 5) obp's action_context: label codes of item_id and item features 1-3, then
    item feature 0; row i is item i."""
    header, rows = _read_table(path, ITEM_COLUMNS)
    item_id = _integers(rows[:, header.index("item_id")], path, "item_id")
    if not np.array_equal(np.sort(item_id), np.arange(len(item_id))):
        raise ValueError(f"{path} item_id must number the items 0..{len(item_id) - 1} once each")
    rows = rows[np.argsort(item_id)]
    codes = [np.unique(rows[:, header.index(c)], return_inverse=True)[1]
             for c in ("item_feature_1", "item_feature_2", "item_feature_3")]
    feature_0 = _numbers(rows[:, header.index("item_feature_0")], path, "item_feature_0")
    return np.stack([np.arange(len(item_id)), *codes, feature_0], axis=1).astype(np.float32)
