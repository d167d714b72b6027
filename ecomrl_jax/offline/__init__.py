"""Learning from logged data: the `LoggedBandit` pytree, off-policy estimators, reward models
and offline policy learning (see DESIGN §7)."""

from ecomrl_jax.offline.data import LoggedBandit, load_npz, save_npz, validate

__all__ = ["LoggedBandit", "load_npz", "save_npz", "validate"]
