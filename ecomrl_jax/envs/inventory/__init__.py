"""Inventory and supply chain: Inventory-v0, SupplyChain-v1; `policies` holds the base-stock
family, grid search, the newsvendor solution and value iteration (exact optima); `foresight`
the perfect-foresight oracle of SupplyChain-v1."""

from ecomrl_jax.envs.inventory.inventory import Inventory
from ecomrl_jax.envs.inventory.supply_chain import SupplyChain

__all__ = ["Inventory", "SupplyChain"]
