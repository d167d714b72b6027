"""Learning from logged data: the `LoggedBandit` pytree, off-policy estimators, reward models
and offline policy learning (see DESIGN §7)."""

from ecomrl_jax.offline.data import LoggedBandit, load_npz, save_npz, take_rows, validate
from ecomrl_jax.offline.obd import load_obd, read_obd_csv

__all__ = ["LoggedBandit", "load_npz", "load_obd", "read_obd_csv", "save_npz", "take_rows", "validate"]
