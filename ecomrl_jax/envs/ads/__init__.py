"""Ad budget pacing: AdBidding-v0; `policies` holds constant bids, linear pacing and the
hindsight oracle."""

from ecomrl_jax.envs.ads.ad_bidding import AdBidding

__all__ = ["AdBidding"]
