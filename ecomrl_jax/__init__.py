"""ecomrl_jax: JAX reinforcement learning for e-commerce."""

from ecomrl_jax.xla import add_cpu_flags, unroll_cpu_threefry

add_cpu_flags()  # first: importing gymnax below starts jax's backend, which reads XLA_FLAGS once
unroll_cpu_threefry()

from ecomrl_jax.envs.ads import AdBidding  # noqa: E402
from ecomrl_jax.envs.bandits import (  # noqa: E402
    BernoulliBandit, ContextualLinearBandit, GaussianBandit, PricingBandit)
from ecomrl_jax.envs.crm import CouponCRM  # noqa: E402
from ecomrl_jax.envs.inventory import Inventory, SupplyChain  # noqa: E402
from ecomrl_jax.envs.pricing import DynamicPricing  # noqa: E402
from ecomrl_jax.envs.recommendation import (  # noqa: E402
    InterestEvolution, OBDClicks, ShopperRec, ToyRec)
from ecomrl_jax.registry import list_envs, make, register  # noqa: E402

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
register("AdBidding-v1", AdBidding)
register("OBDClicks-v0", OBDClicks)
register("InterestEvolution-v0", InterestEvolution)

__all__ = ["make", "list_envs", "register", "__version__"]
