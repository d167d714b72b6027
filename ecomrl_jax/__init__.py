"""ecomrl_jax: JAX reinforcement learning for e-commerce."""

from ecomrl_jax.envs.recommendation import ShopperRec
from ecomrl_jax.registry import list_envs, make, register

__version__ = "0.1.0"

register("ShopperRec-v0", ShopperRec)

__all__ = ["make", "list_envs", "register", "__version__"]
