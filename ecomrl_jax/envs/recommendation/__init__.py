"""Recommendation: ShopperRec-v0 (single items and slates), ToyRec-v0 (tabular), OBDClicks-v0
(a click model fitted to the Open Bandit Dataset), InterestEvolution-v0 (a port of RecSim's
interest-evolution env); `policies` holds random, popularity and the oracles; `logs` writes
logged trajectories for pre-training."""

from ecomrl_jax.envs.recommendation.interest_evolution import InterestEvolution
from ecomrl_jax.envs.recommendation.obd_clicks import OBDClicks
from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec
from ecomrl_jax.envs.recommendation.toy_rec import ToyRec

__all__ = ["InterestEvolution", "OBDClicks", "ShopperRec", "ToyRec"]
