"""Ad budget pacing: AdBidding-v1; `policies` holds constant bids, linear pacing, the
hindsight multiplier policy and the hindsight upper bound on a day's value; `pacing_residual`
wraps the env so a learner's action is a factor on linear pacing's bid."""

from ecomrl_jax.envs.ads.ad_bidding import AdBidding

__all__ = ["AdBidding"]
