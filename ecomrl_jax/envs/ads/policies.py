"""Policies for AdBidding-v1: constant bid, linear budget pacing and a hindsight multiplier
policy, and the upper bound on a day's value (`hindsight_bound`; `evaluated_bounds` for the days
an `evaluate` call plays).

Each factory returns `policy_fn(key, obs, env_state, env_params) -> action` for one
unbatched env; on the Discrete variant a multiplier becomes the nearest grid index.
"""

import jax
import jax.numpy as jnp

from ecomrl_jax.envs.ads.ad_bidding import AdBidding
from ecomrl_jax.evaluation import initial_states


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
        return _as_action(env, params, pacing_multiplier(obs[0], obs[1], base, gain))

    return policy_fn


def pacing_multiplier(elapsed, budget_left, base=1.0, gain=10.0) -> jax.Array:
    """Linear pacing's multiplier `base * exp(gain * (elapsed - spent))` from the elapsed
    fraction of the day and the budget left as a fraction of the daily budget."""
    return base * jnp.exp(gain * (elapsed - (1.0 - budget_left)))


def hindsight_bound(env, day_key, params) -> jax.Array:
    """Upper bound on the value any policy can win on the day keyed by `day_key`: the
    fractional-knapsack (LP relaxation) value of the day.

    Any policy wins a set of the day's impressions whose prices sum to at most the budget
    (`settle` never overspends), so its summed value is at most the 0/1 knapsack optimum with
    values v, weights p and capacity `daily_budget`, and that at most the LP value: sort the
    impressions by v / p, take the longest prefix that fits and the fitting fraction of the
    next one. The LP value exceeds the knapsack optimum by less than one impression's value.
    Jittable; steps at or after `params.max_steps_in_episode` are left out.
    """
    _require_ads(env, "hindsight_bound")
    ranked = _ranked_impressions(env, day_key, params)
    budget = jnp.asarray(params.daily_budget, jnp.float32)
    spent_before = jnp.cumsum(ranked["price"]) - ranked["price"]
    taken = jnp.clip((budget - spent_before) / ranked["price"], 0.0, 1.0)
    return jnp.sum(jnp.where(ranked["eligible"], taken * ranked["value"], 0.0))


def evaluated_bounds(env, params, key, num_days: int) -> jax.Array:
    """(num_days,) `hindsight_bound` of each day `evaluation.evaluate(env, params, policy_fn,
    key, num_days)` plays (their first states: `evaluation.initial_states`), to score a policy
    as a share of the bound on the very days it played."""
    _require_ads(env, "evaluated_bounds")
    day_keys = initial_states(env, params, key, num_days)[1].day_key
    return jax.jit(jax.vmap(lambda k: hindsight_bound(env, k, params)))(day_keys)


def hindsight_multiplier(env, day_key, params) -> dict:
    """A constant bid multiplier for the day keyed by `day_key`, chosen knowing every auction:
    the one that wins the longest prefix of the impressions ranked by value per unit price
    whose prices fit the budget (the LP solution of `hindsight_bound` without its fractional
    impression; the limit bisection on a Lagrange multiplier converges to).

    Its value is achievable, not an upper bound: a per-step policy can also win cheaper
    impressions further down the ranking, or spend the leftover budget late in the day.
    Returns `value` (sum of the prefix's values), `spend`, `multiplier` (wins exactly the
    prefix; it may exceed max_multiplier; 0, with `lam` inf, when not even the first impression
    fits) and `lam` = 1 / multiplier. Jittable; steps at or after
    `params.max_steps_in_episode` are left out.
    """
    _require_ads(env, "hindsight_multiplier")
    ranked = _ranked_impressions(env, day_key, params)
    threshold, eligible, price = ranked["threshold"], ranked["eligible"], ranked["price"]
    fits = eligible & (jnp.cumsum(price) <= params.daily_budget)
    k = jnp.sum(fits)  # fits is a prefix: cumulative spend only grows
    last = threshold[jnp.maximum(k - 1, 0)]
    following = threshold[jnp.minimum(k, threshold.size - 1)]
    multiplier = jnp.where(k == 0, 0.0, jnp.where((k < threshold.size) & jnp.isfinite(following),
                                                  0.5 * (last + following), 2.0 * last))
    return {"value": jnp.sum(jnp.where(fits, ranked["value"], 0.0)),
            "spend": jnp.sum(jnp.where(fits, price, 0.0)),
            "multiplier": multiplier.astype(jnp.float32),
            "lam": (1.0 / multiplier).astype(jnp.float32)}


def _ranked_impressions(env, day_key, params) -> dict:
    """The day's impressions sorted by `threshold` = price / value, ascending (best value per
    unit price first): `threshold` (inf for ineligible), `value`, `price` (0 for ineligible)
    and `eligible` (arrived, within the episode, value > 0), each flat."""
    auc = env.day_auctions(day_key, params)
    in_day = (jnp.arange(env.num_steps) < params.max_steps_in_episode)[:, None]
    eligible = (auc["active"] & in_day & (auc["value"] > 0)).ravel()
    value, price = auc["value"].ravel(), auc["price"].ravel()
    threshold = jnp.where(eligible, price / jnp.where(eligible, value, 1.0), jnp.inf)
    order = jnp.argsort(threshold)
    return {"threshold": threshold[order], "value": value[order], "eligible": eligible[order],
            "price": jnp.where(eligible, price, 0.0)[order]}


def hindsight_policy(env, env_params):
    """Bid `hindsight_multiplier` for the current day (read from `env_state.day_key`) all day.
    On the continuous variant the day's summed `info["expected_value"]` then equals its value
    (if the multiplier is within max_multiplier); on the grid it is rounded to the nearest
    multiplier. A policy that peeks at the day, not an upper bound (see `hindsight_bound`).
    Recomputes the day's solution every step."""
    _require_ads(env, "hindsight_policy")

    def policy_fn(key, obs, env_state, params):
        multiplier = hindsight_multiplier(env, env_state.day_key, params)["multiplier"]
        return _as_action(env, params, multiplier)

    return policy_fn


def _as_action(env: AdBidding, params, multiplier: jax.Array) -> jax.Array:
    """`multiplier` as the env's action: itself (continuous) or the nearest grid index."""
    if env.continuous:
        return jnp.asarray(multiplier, jnp.float32)
    return jnp.argmin(jnp.abs(params.bid_multipliers - multiplier)).astype(jnp.int32)


def _require_ads(env, name: str) -> None:
    if not isinstance(env, AdBidding):
        raise ValueError(f"{name} supports only an unwrapped AdBidding-v1 env, "
                         f"got {type(env).__name__}")
