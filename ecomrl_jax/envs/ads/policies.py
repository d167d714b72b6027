"""Policies for AdBidding-v0: constant bid, linear budget pacing, and the hindsight-optimal
oracle value of a day.

Each factory returns `policy_fn(key, obs, env_state, env_params) -> action` for one
unbatched env; on the Discrete variant a multiplier becomes the nearest grid index.
"""

import jax
import jax.numpy as jnp

from ecomrl_jax.envs.ads.ad_bidding import AdBidding


def constant_bid(env, env_params, multiplier: float = 1.0):
    """Bid `multiplier` x value all day (1.0 bids the value itself)."""
    _require_ads(env, "constant_bid")

    def policy_fn(key, obs, env_state, params):
        return _as_action(env, params, jnp.float32(multiplier))

    return policy_fn


def linear_pacing(env, env_params, base: float = 1.0, gain: float = 10.0):
    """Track a spend target proportional to elapsed time: bid
    `base * exp(gain * (elapsed fraction - spent fraction))`, higher when behind schedule."""
    _require_ads(env, "linear_pacing")

    def policy_fn(key, obs, env_state, params):
        behind = obs[0] - (1.0 - obs[1])
        return _as_action(env, params, base * jnp.exp(gain * behind))

    return policy_fn


def hindsight_oracle(env, day_key, params) -> dict:
    """Best value of the day keyed by `day_key` (a state's `day_key`), knowing every auction.

    Winning an impression of value v at price p (the highest competing bid) is a knapsack
    item; its Lagrangian relaxation max sum v x - lam (sum p x - budget) wins exactly the
    impressions with v / lam > p, i.e. a constant multiplier 1 / lam on the value. The best
    such threshold is found exactly by sorting the impressions by p / v and taking the longest
    prefix whose prices fit the budget (the limit bisection on lam converges to). Returns
    `value` (sum of won values), `spend`, `multiplier` (a constant bid multiplier that wins
    exactly that set; it may exceed max_multiplier; 0, with `lam` inf, when not even the first
    impression fits) and `lam`. Jittable; steps at or after `params.max_steps_in_episode` are
    left out.
    """
    _require_ads(env, "hindsight_oracle")
    auc = env.day_auctions(day_key, params)
    in_day = (jnp.arange(env.num_steps) < params.max_steps_in_episode)[:, None]
    eligible = (auc["active"] & in_day & (auc["value"] > 0)).ravel()
    value, price = auc["value"].ravel(), auc["price"].ravel()
    threshold = jnp.where(eligible, price / jnp.where(eligible, value, 1.0), jnp.inf)
    order = jnp.argsort(threshold)
    threshold, value, price = threshold[order], value[order], price[order]
    fits = jnp.isfinite(threshold) & (jnp.cumsum(jnp.where(jnp.isfinite(threshold), price, 0.0))
                                      <= params.daily_budget)
    k = jnp.sum(fits)  # fits is a prefix: cumulative spend only grows
    last = threshold[jnp.maximum(k - 1, 0)]
    following = threshold[jnp.minimum(k, threshold.size - 1)]
    multiplier = jnp.where(k == 0, 0.0, jnp.where((k < threshold.size) & jnp.isfinite(following),
                                                  0.5 * (last + following), 2.0 * last))
    return {"value": jnp.sum(jnp.where(fits, value, 0.0)),
            "spend": jnp.sum(jnp.where(fits, price, 0.0)),
            "multiplier": multiplier.astype(jnp.float32),
            "lam": (1.0 / multiplier).astype(jnp.float32)}


def hindsight_policy(env, env_params):
    """Bid the hindsight oracle's multiplier for the current day (read from `env_state.day_key`)
    all day. On the continuous variant the day's summed `info["expected_value"]` then equals
    `hindsight_oracle`'s value (if the multiplier is within max_multiplier); on the grid it is
    rounded to the nearest multiplier. Recomputes the day's solution every step."""
    _require_ads(env, "hindsight_policy")

    def policy_fn(key, obs, env_state, params):
        oracle = hindsight_oracle(env, env_state.day_key, params)
        return _as_action(env, params, oracle["multiplier"])

    return policy_fn


def _as_action(env: AdBidding, params, multiplier: jax.Array) -> jax.Array:
    """`multiplier` as the env's action: itself (continuous) or the nearest grid index."""
    if env.continuous:
        return jnp.asarray(multiplier, jnp.float32)
    return jnp.argmin(jnp.abs(params.bid_multipliers - multiplier)).astype(jnp.int32)


def _require_ads(env, name: str) -> None:
    if not isinstance(env, AdBidding):
        raise ValueError(f"{name} supports only an unwrapped AdBidding-v0 env, "
                         f"got {type(env).__name__}")
