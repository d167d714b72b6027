"""Dynamic pricing: DynamicPricing-v0; `policies` holds fixed, cost-plus and predictive
pricing, the myopic and DP oracles, and the adapter that lets bandit learners price."""

from ecomrl_jax.envs.pricing.dynamic_pricing import DynamicPricing

__all__ = ["DynamicPricing"]
