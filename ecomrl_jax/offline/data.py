"""`LoggedBandit`: bandit feedback logged by a behaviour policy, as one pytree of arrays.

A row is one impression: the context the policy saw, the item it showed, the slate position
it showed it at (0 for single-item logs), the reward (a click, a purchase, revenue) and the
behaviour policy's probability of showing that item at that position (OBP's position-wise
propensity). `validate` checks a log outside jit; `save_npz`/`load_npz` store one.
"""

import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class LoggedBandit:
    context: jax.Array  # (n, d) float32 user/context features
    action: jax.Array  # (n,) int32 item shown, in [0, num_actions)
    position: jax.Array  # (n,) int32 slate position, in [0, len_list)
    reward: jax.Array  # (n,) float32
    propensity: jax.Array  # (n,) float32 behaviour probability of (action | context, position), in (0, 1]
    action_context: jax.Array | None = None  # (num_actions, d_a) float32 item features, if known
    num_actions: int = struct.field(pytree_node=False, default=1)
    len_list: int = struct.field(pytree_node=False, default=1)

    @property
    def n_rows(self) -> int:
        return self.action.shape[0]


def validate(data: LoggedBandit) -> LoggedBandit:
    """Raise ValueError naming the first problem (shapes, ranges, non-finite values); return `data`."""
    n = data.action.shape[0] if np.ndim(data.action) == 1 else -1
    if n < 1:
        raise ValueError(f"LoggedBandit.action must be a non-empty 1-D array, got shape {np.shape(data.action)}")
    if np.ndim(data.context) != 2 or np.shape(data.context)[0] != n:
        raise ValueError(f"LoggedBandit.context must have shape (n_rows={n}, d), got {np.shape(data.context)}")
    for name in ("position", "reward", "propensity"):
        if np.shape(getattr(data, name)) != (n,):
            raise ValueError(f"LoggedBandit.{name} must have shape ({n},) like action, "
                             f"got {np.shape(getattr(data, name))}")
    if data.action_context is not None and (np.ndim(data.action_context) != 2
                                            or np.shape(data.action_context)[0] != data.num_actions):
        raise ValueError(f"LoggedBandit.action_context must have shape (num_actions={data.num_actions}, d_a), "
                         f"got {np.shape(data.action_context)}")
    for name, size in (("action", data.num_actions), ("position", data.len_list)):
        values = np.asarray(getattr(data, name))
        if not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= size:
            raise ValueError(f"LoggedBandit.{name} must hold integers in [0, {size}), got dtype "
                             f"{values.dtype}, range [{values.min()}, {values.max()}]")
    for name in ("context", "reward", "propensity", "action_context"):
        values = getattr(data, name)
        if values is not None and not np.isfinite(np.asarray(values)).all():
            raise ValueError(f"LoggedBandit.{name} holds NaN or inf")
    propensity = np.asarray(data.propensity)
    if propensity.min() <= 0 or propensity.max() > 1:
        bad = int(np.flatnonzero((propensity <= 0) | (propensity > 1))[0])
        raise ValueError(f"LoggedBandit.propensity must lie in (0, 1], got {propensity[bad]} at row {bad}")
    return data


_ARRAYS = ("context", "action", "position", "reward", "propensity")


def take_rows(data: LoggedBandit, rows: jax.Array) -> LoggedBandit:
    """The log restricted to (or resampled at) the row indices `rows`; item features kept (jittable)."""
    return data.replace(**{name: getattr(data, name)[rows] for name in _ARRAYS})


def save_npz(path: str | Path, data: LoggedBandit) -> None:
    """Write `data` to a compressed `.npz` (arrays plus `num_actions` and `len_list`)."""
    extra = {} if data.action_context is None else {"action_context": np.asarray(data.action_context)}
    np.savez_compressed(path, **{k: np.asarray(getattr(data, k)) for k in _ARRAYS}, **extra,
                        num_actions=data.num_actions, len_list=data.len_list)


def load_npz(path: str | Path) -> LoggedBandit:
    """Read a log written by `save_npz`; a missing or corrupt file raises ValueError."""
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # missing, truncated or not an .npz
        raise ValueError(f"cannot read LoggedBandit from {path}: {e}") from e
    missing = [k for k in (*_ARRAYS, "num_actions", "len_list") if k not in stored]
    if missing:
        raise ValueError(f"{path} lacks {missing}; a LoggedBandit .npz holds "
                         f"{[*_ARRAYS, 'num_actions', 'len_list']} (and optionally action_context)")
    # validated as stored, then cast: a float or negative action must be refused, not truncated
    data = validate(LoggedBandit(**{k: stored[k] for k in _ARRAYS},
                                 action_context=stored.get("action_context"),
                                 num_actions=int(stored["num_actions"]), len_list=int(stored["len_list"])))
    dtypes = {"context": jnp.float32, "action": jnp.int32, "position": jnp.int32,
              "reward": jnp.float32, "propensity": jnp.float32}
    return data.replace(**{k: jnp.asarray(getattr(data, k), dtypes[k]) for k in _ARRAYS},
                        action_context=None if data.action_context is None
                        else jnp.asarray(data.action_context, jnp.float32))
