"""AdBidding: pace a daily ad budget over a day of second-price auctions.

Each step (e.g. 15 minutes) a batch of auctions arrives; the agent picks a bid multiplier,
bids multiplier x (estimated value) in each, and wins where its bid beats the highest
competing bid, paying that bid (second price) while the budget lasts. Traffic and
competition follow a daily pattern, so spending evenly is not optimal. The day's auctions
are a deterministic function of a day key kept in the state, so hindsight can see them
(`ecomrl_jax.envs.ads.policies.hindsight_bound`, the upper bound on a day's value, and
`hindsight_multiplier`). See docs/envs/ad_bidding.md.

v1 draws the same distributions as v0 from fewer, cheaper random numbers: counter-based threefry
words (no key split per step) and Box-Muller normals (`normal_pairs`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces
from jax.extend.random import threefry_2x32

from ecomrl_jax.envs._base import CompareByArgs, HorizonEndsEpisode, check_shapes
from ecomrl_jax.rules import (FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, check, check_value,
                              in_range)
from ecomrl_jax.spaces import check_action

RECENT_DECAY = 0.7  # smoothing of the observed recent win rate and cost
NUM_OBS = 6


@struct.dataclass
class EnvState(environment.EnvState):
    day_key: jax.Array  # (2,) uint32 threefry key; the day's auctions are a function of it
    budget_left: jax.Array  # () >= 0
    spend: jax.Array  # () spent so far today
    recent_win_rate: jax.Array  # () smoothed fraction of arriving auctions won
    recent_spend: jax.Array  # () smoothed spend per step / (daily_budget / num_steps)
    recent_cost: jax.Array  # () smoothed price per won impression / price_median
    exhausted: jax.Array  # () bool: a won auction could not be paid for


@struct.dataclass
class EnvParams:
    bid_multipliers: jax.Array  # (num_multipliers,) the Discrete action grid, >= 0
    daily_budget: float = 15.0
    max_multiplier: float = 2.0
    ctr_median: float = 0.02
    ctr_sigma: float = 0.6
    cvr_median: float = 0.05
    cvr_sigma: float = 0.5
    value_per_click: float = 1.0
    value_per_conversion: float = 0.0
    price_median: float = 0.02
    price_sigma: float = 0.5
    price_value_corr: float = 0.7
    competition_amplitude: float = 0.4
    competition_peak: float = 0.5
    traffic_base: float = 0.5
    traffic_amplitude: float = 0.8
    traffic_peak: float = 0.8
    day_traffic_sigma: float = 0.3
    day_price_sigma: float = 0.3
    max_steps_in_episode: int = 96


# Valid values of every field (checked by `validate_params`, outside jit).
PARAM_RULES = {
    "bid_multipliers": NON_NEGATIVE,
    "daily_budget": POSITIVE,
    "max_multiplier": POSITIVE,
    "ctr_median": POSITIVE,
    "ctr_sigma": NON_NEGATIVE,
    "cvr_median": POSITIVE,
    "cvr_sigma": NON_NEGATIVE,
    "value_per_click": NON_NEGATIVE,
    "value_per_conversion": NON_NEGATIVE,
    "price_median": POSITIVE,
    "price_sigma": NON_NEGATIVE,
    "price_value_corr": FINITE,
    "competition_amplitude": NON_NEGATIVE,
    "competition_peak": FINITE,
    "traffic_base": in_range(0, 1, low_open=True),
    "traffic_amplitude": NON_NEGATIVE,
    "traffic_peak": FINITE,
    "day_traffic_sigma": NON_NEGATIVE,
    "day_price_sigma": NON_NEGATIVE,
    "max_steps_in_episode": POSITIVE_INT,  # and <= num_steps
}


class AdBidding(HorizonEndsEpisode, CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """Budget pacing. Discrete action: an index into `params.bid_multipliers`; with
    `continuous=True` a float multiplier, clipped to [0, params.max_multiplier]."""

    out_of_range_action = "ignore"  # an invalid index bids 0 (see `multiplier`)
    param_rules = PARAM_RULES

    def __init__(self, num_auctions: int = 100, num_steps: int = 96, num_multipliers: int = 21,
                 continuous: bool = False):
        sizes = dict(num_auctions=num_auctions, num_steps=num_steps,
                     num_multipliers=num_multipliers)
        for name, value in sizes.items():
            check_value(value, POSITIVE_INT, f"AdBidding.{name}")
        if (num_steps + 1) * words_per_step(num_auctions) >= 2**32:
            raise ValueError(f"AdBidding: num_steps x num_auctions must stay below about 1e9 (a "
                             f"day's draws are numbered by a 32-bit counter), got {num_steps} x "
                             f"{num_auctions}")
        if not isinstance(continuous, bool):
            raise ValueError(f"AdBidding.continuous must be a bool, got {continuous!r}")
        self.num_auctions = num_auctions
        self.num_steps = num_steps
        self.num_multipliers = num_multipliers
        self.continuous = continuous

    @property
    def name(self) -> str:
        return "AdBidding-v1"

    @property
    def num_actions(self) -> int:
        return 1 if self.continuous else self.num_multipliers

    @property
    def default_params(self) -> EnvParams:
        """Multipliers evenly spaced on [0, 2], horizon `num_steps`; other fields as declared."""
        grid = jnp.linspace(0.0, 2.0, self.num_multipliers, dtype=jnp.float32)
        return EnvParams(bid_multipliers=grid, max_steps_in_episode=self.num_steps)

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        n = self.num_multipliers
        check_shapes(params, {"bid_multipliers": (n,)}, "AdBidding.params", f"num_multipliers={n}")
        check(params, PARAM_RULES, "AdBidding.params")
        if np.any(np.asarray(params.max_steps_in_episode) > self.num_steps):
            raise ValueError(f"AdBidding.params.max_steps_in_episode must be <= num_steps="
                             f"{self.num_steps}, got {params.max_steps_in_episode}")

    def auctions(self, day_key: jax.Array, t: jax.Array, params: EnvParams) -> dict:
        """The `num_auctions` auction slots of step `t` of the day keyed by `day_key` ((2,)
        uint32): `active` (slot holds an auction), `ctr`, `cvr`, `value` (estimated value,
        0 where inactive) and `price` (highest competing bid), each (num_auctions,).

        Counters 0 and 1 under `day_key` draw the day's traffic and price levels; step `t`
        reads the `words_per_step` counters from (t + 1) x words_per_step: its arrivals, then
        the Box-Muller pairs of its ctr, cvr and price normals."""
        n = self.num_auctions
        day_traffic, day_price = normal_pairs(*uniforms(day_key, jnp.arange(2, dtype=jnp.uint32)))
        words = words_per_step(n)
        first = (jnp.asarray(t, jnp.uint32) + 1) * words
        u = uniforms(day_key, first + jnp.arange(words, dtype=jnp.uint32))
        pairs = (words - n) // 2
        z = jnp.concatenate(normal_pairs(u[n:n + pairs], u[n + pairs:]))[:3 * n].reshape(3, n)
        phase = 2.0 * jnp.pi * t / self.num_steps
        traffic = params.traffic_base * jnp.exp(params.day_traffic_sigma * day_traffic) * (
            1.0 + params.traffic_amplitude * jnp.cos(phase - 2.0 * jnp.pi * params.traffic_peak))
        active = u[:n] < traffic
        ctr = jnp.minimum(params.ctr_median * jnp.exp(params.ctr_sigma * z[0]), 1.0)
        cvr = jnp.minimum(params.cvr_median * jnp.exp(params.cvr_sigma * z[1]), 1.0)
        value = active * ctr * (params.value_per_click + params.value_per_conversion * cvr)
        log_price = (jnp.log(params.price_median) + params.day_price_sigma * day_price
                     + params.price_value_corr * jnp.log(ctr / params.ctr_median)
                     + params.competition_amplitude
                     * jnp.cos(phase - 2.0 * jnp.pi * params.competition_peak)
                     + params.price_sigma * z[2])
        return {"active": active, "ctr": ctr, "cvr": cvr, "value": value.astype(jnp.float32),
                "price": jnp.exp(log_price).astype(jnp.float32)}

    def day_auctions(self, day_key: jax.Array, params: EnvParams) -> dict:
        """Every step's auctions of one day: each entry (num_steps, num_auctions)."""
        return jax.vmap(lambda t: self.auctions(day_key, t, params))(jnp.arange(self.num_steps))

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        zero = jnp.float32(0.0)
        state = EnvState(time=jnp.int32(0), day_key=jax.random.bits(key, (2,), jnp.uint32),
                         budget_left=jnp.asarray(params.daily_budget, jnp.float32), spend=zero,
                         recent_win_rate=zero, recent_spend=zero, recent_cost=zero,
                         exhausted=jnp.bool_(False))
        return self.get_obs(state, params), state

    def multiplier(self, action: jax.Array, params: EnvParams):
        """The bid multiplier an action sets and 1.0 if the action was invalid.

        Discrete: an index outside [0, num_multipliers) bids 0 (sits the step out).
        Continuous: clipped to [0, max_multiplier]; NaN bids 0.
        """
        if self.continuous:
            action = check_action(self.name, action, (), integer=False).astype(jnp.float32)
            m = jnp.clip(jnp.nan_to_num(action, nan=0.0), 0.0, params.max_multiplier)
            return m, (m != action).astype(jnp.float32)
        action = check_action(self.name, action, (), integer=True)
        valid = (action >= 0) & (action < self.num_multipliers)
        index = jnp.clip(action, 0, self.num_multipliers - 1)
        m = jnp.where(valid, params.bid_multipliers[index], 0.0)
        return m.astype(jnp.float32), (~valid).astype(jnp.float32)

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        m, invalid = self.multiplier(action, params)
        auc = self.auctions(state.day_key, state.time, params)
        wins, spend, blocked = settle(m * auc["value"], auc["price"], auc["active"],
                                      state.budget_left)
        # One uniform per slot decides both: P(click) = ctr, P(conversion | click) = cvr.
        slots = jnp.arange(self.num_auctions, dtype=jnp.uint32)
        u = uniforms(jax.random.bits(key, (2,), jnp.uint32), slots)
        clicks = wins & (u < auc["ctr"])
        conversions = wins & (u < auc["ctr"] * auc["cvr"])
        num_clicks = jnp.sum(clicks).astype(jnp.float32)
        num_conversions = jnp.sum(conversions).astype(jnp.float32)
        reward = params.value_per_click * num_clicks + params.value_per_conversion * num_conversions
        won = jnp.sum(wins).astype(jnp.float32)
        arrived = jnp.maximum(jnp.sum(auc["active"]), 1).astype(jnp.float32)
        budget_left = state.budget_left - spend
        recent = lambda old, new: RECENT_DECAY * old + (1.0 - RECENT_DECAY) * new  # noqa: E731
        new = EnvState(
            time=state.time + 1, day_key=state.day_key, budget_left=budget_left,
            spend=state.spend + spend,
            recent_win_rate=recent(state.recent_win_rate, won / arrived),
            recent_spend=recent(state.recent_spend, spend * self.num_steps / params.daily_budget),
            recent_cost=recent(state.recent_cost,
                               spend / jnp.maximum(won, 1.0) / params.price_median),
            exhausted=blocked | (budget_left <= 0.0))
        info = {"spend": spend, "value": reward.astype(jnp.float32),
                "expected_value": jnp.sum(jnp.where(wins, auc["value"], 0.0)),
                "clicks": num_clicks, "conversions": num_conversions, "impressions_won": won,
                "budget_left": jnp.where(new.exhausted | (new.time >= params.max_steps_in_episode),
                                         budget_left, 0.0),
                "invalid_actions": invalid}
        return self.get_obs(new, params), new, reward.astype(jnp.float32), new.exhausted, info

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        """[time of day, budget left fraction, spend pace, recent win rate, recent spend,
        recent cost]; see the env card."""
        elapsed = state.time / self.num_steps
        spent = state.spend / params.daily_budget
        return jnp.stack([
            elapsed, state.budget_left / params.daily_budget,
            jnp.minimum(spent / jnp.maximum(elapsed, 1.0 / self.num_steps), 10.0),
            state.recent_win_rate, jnp.minimum(state.recent_spend, 10.0),
            jnp.minimum(state.recent_cost, 10.0),
        ]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.exhausted

    def action_space(self, params: EnvParams | None = None):
        if self.continuous:
            high = (params or self.default_params).max_multiplier
            return spaces.Box(0.0, high, (), jnp.float32)
        return spaces.Discrete(self.num_multipliers)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 10.0, (NUM_OBS,), jnp.float32)


def words_per_step(num_auctions: int) -> int:
    """Random words one step of auctions reads: an arrival uniform per slot and the uniform
    pairs of its 3 normals (ctr, cvr, price), rounded up to whole Box-Muller pairs."""
    return num_auctions + 2 * ((3 * num_auctions + 1) // 2)


def uniforms(key: jax.Array, counters: jax.Array) -> jax.Array:
    """Uniforms on [0, 1), one per uint32 counter, from jax's threefry2x32 hash under `key`
    ((2,) uint32). Counter-based: a step numbers its draws instead of splitting and folding
    keys, which on CPU cost more than the draws themselves."""
    bits = threefry_2x32((key[0], key[1]), counters)
    return jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0


def normal_pairs(u_radius: jax.Array, u_angle: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two independent standard normals per pair of uniforms on [0, 1) (Box-Muller).

    cos and sin of the angle come from Taylor polynomials after reduction to a quadrant
    (within 2e-7 of float64 cos and sin; XLA's CPU sin and cos cost ~6x more);
    1 - u_radius is exact in float32, so the radius is finite (at most 5.65)."""
    radius = jnp.sqrt(-2.0 * jnp.log(1.0 - u_radius))
    quadrant = jnp.floor(4.0 * u_angle + 0.5)
    phi = 2.0 * jnp.pi * u_angle - quadrant * (jnp.pi / 2)  # in [-pi/4, pi/4]
    p2 = phi * phi
    sin = phi * (1.0 + p2 * (-1 / 6 + p2 * (1 / 120 + p2 * (-1 / 5040 + p2 / 362880))))
    cos = 1.0 + p2 * (-1 / 2 + p2 * (1 / 24 + p2 * (-1 / 720 + p2 * (1 / 40320 - p2 / 3628800))))
    q = quadrant.astype(jnp.int32) % 4

    def turned(x, y):  # with (x, y) = (cos, sin) or (sin, -cos): that of phi + q quarter turns
        return jnp.where(q == 0, x, jnp.where(q == 1, -y, jnp.where(q == 2, -x, y)))

    return radius * turned(cos, sin), radius * turned(sin, -cos)


def settle(bids: jax.Array, prices: jax.Array, active: jax.Array, budget: jax.Array):
    """Second-price auctions in arrival order under a budget: `(wins, spend, blocked)`.

    Auction i is won when active and its bid beats the highest competing bid `prices[i]`
    (ties lose); a win pays `prices[i]`. Wins are paid in order while the running total
    stays within `budget`; the first win that would overshoot it, and every later auction
    of the batch, is lost (`blocked` is True). So `spend <= budget` exactly.
    """
    beats = active & (bids > prices)
    total = jnp.cumsum(jnp.where(beats, prices, 0.0))
    wins = beats & (total <= budget)
    spend = jnp.max(jnp.where(wins, total, 0.0))
    return wins, spend, jnp.any(beats & ~wins)
