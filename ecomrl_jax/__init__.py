"""ecomrl_jax: JAX reinforcement learning for e-commerce."""

from ecomrl_jax.envs.ads import AdBidding
from ecomrl_jax.envs.bandits import (BernoulliBandit, ContextualLinearBandit, GaussianBandit,
                                     PricingBandit)
from ecomrl_jax.envs.crm import CouponCRM
from ecomrl_jax.envs.inventory import Inventory, SupplyChain
from ecomrl_jax.envs.pricing import DynamicPricing
from ecomrl_jax.envs.recommendation import ShopperRec, ToyRec
from ecomrl_jax.registry import list_envs, make, register

__version__ = "0.1.0"

register("ShopperRec-v0", ShopperRec)
register("Inventory-v0", Inventory)
register("SupplyChain-v1", SupplyChain)
register("DynamicPricing-v0", DynamicPricing)
register("BernoulliBandit-v0", BernoulliBandit)
register("GaussianBandit-v0", GaussianBandit)
register("ContextualLinearBandit-v0", ContextualLinearBandit)
register("PricingBandit-v0", PricingBandit)
register("ToyRec-v0", ToyRec)
register("CouponCRM-v0", CouponCRM)
register("AdBidding-v0", AdBidding)

__all__ = ["make", "list_envs", "register", "__version__"]
