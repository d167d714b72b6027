"""Recommendation: ShopperRec-v0 (single items and slates), ToyRec-v0 (tabular); `policies`
holds random, popularity and the myopic oracle; `logs` writes logged trajectories for
pre-training."""

from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec
from ecomrl_jax.envs.recommendation.toy_rec import ToyRec

__all__ = ["ShopperRec", "ToyRec"]
