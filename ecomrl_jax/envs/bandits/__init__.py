"""Bandits: Bernoulli, Gaussian, contextual linear and pricing bandits, with regret in `info`."""

from ecomrl_jax.envs.bandits.bandit_envs import (BanditEnv, BernoulliBandit, ContextualLinearBandit,
                                                 GaussianBandit, PricingBandit)

__all__ = ["BanditEnv", "BernoulliBandit", "ContextualLinearBandit", "GaussianBandit",
           "PricingBandit"]
