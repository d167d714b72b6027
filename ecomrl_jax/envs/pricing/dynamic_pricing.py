"""DynamicPricing: set a price for each product every period (day) and earn revenue or profit.

Mean demand follows one of three models (linear, logit with an outside option, constant
elasticity), scaled by weekly/yearly seasonality and holiday shocks, shifted by a competitor
price that follows a log-AR(1) and by an optional gain/loss reference-price effect. Sales are
Poisson demand capped by optional finite stock. See docs/envs/dynamic_pricing.md.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, HorizonEndsEpisode
from ecomrl_jax.rules import (FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                              UNIT_INTERVAL, Rule, above, check, check_value, in_range, one_of)
from ecomrl_jax.spaces import MultiDiscrete, check_action

DEMAND_MODELS = {"linear": 0, "logit": 1, "constant_elasticity": 2}
DAYS_PER_YEAR = 365
HOLIDAY_DAYS = (326, 358)  # default holidays: 23 November and 25 December (day 0 is 1 January)
MAX_MEAN_DEMAND = 1e6  # numerical guard: mean demand per product and period is capped here
# numerical guard: the competitor price stays within this factor of competitor_mean (a huge
# volatility, or persistence near 1, would otherwise overflow exp to inf)
MAX_COMPETITOR_RATIO = 1e3

# Named param overrides for the settings experiments compare: make(..., **SETTINGS[name]).
SETTINGS = {
    "stationary": dict(weekly_amplitude=0.0, yearly_amplitude=0.0, holiday_lift=0.0,
                       competitor_effect=0.0),
    "seasonal": dict(weekly_amplitude=0.2, yearly_amplitude=0.3, holiday_lift=0.5,
                     max_steps_in_episode=365),
    "competitor": dict(competitor_effect=1.5, competitor_volatility=0.2),
    "finite_stock": dict(initial_stock=120.0, max_steps_in_episode=30),
}


@struct.dataclass
class EnvState(environment.EnvState):
    day: jax.Array  # () int32 calendar day of the period about to be priced (start day + time)
    competitor_price: jax.Array  # (num_products,) competitor's current price
    reference_price: jax.Array  # (num_products,) smoothed own past prices
    stock: jax.Array  # (num_products,) units left; inf when stock is unlimited
    price_history: jax.Array  # (history_len, num_products) own past prices, newest first
    sales_history: jax.Array  # (history_len, num_products) past unit sales, newest first


@struct.dataclass
class EnvParams:
    holiday_days: jax.Array  # (num_holidays,) int days of the year in [0, 365)
    demand_model: int = 0  # DEMAND_MODELS code
    linear_intercept: float = 20.0
    linear_slope: float = 2.0
    market_size: float = 16.0
    logit_utility: float = 3.0
    logit_price: float = 0.5
    elastic_scale: float = 120.0
    elasticity: float = 1.5
    min_price: float = 1.0
    max_price: float = 12.0
    unit_cost: float = 2.0
    reward_profit: float = 1.0  # reward = revenue - reward_profit * unit_cost * sales
    weekly_amplitude: float = 0.0
    yearly_amplitude: float = 0.0
    holiday_lift: float = 0.0
    competitor_mean: float = 7.0
    competitor_persistence: float = 0.9
    competitor_volatility: float = 0.1
    competitor_effect: float = 0.0
    reference_init: float = 6.0
    reference_smoothing: float = 0.8
    reference_gain: float = 0.0
    reference_loss: float = 0.0
    initial_stock: float = math.inf
    stochastic_demand: bool = True
    start_day: int = 0
    random_start_day: bool = False
    max_steps_in_episode: int = 100


# Valid values of every field (checked by `validate_params`, outside jit). Fields in
# PER_PRODUCT_FIELDS may be scalars or (num_products,) arrays; the rest are scalars.
PARAM_RULES = {
    "holiday_days": Rule(lambda x: (x >= 0) & (x < DAYS_PER_YEAR), f"in [0, {DAYS_PER_YEAR})",
                         integer=True),  # a 1-D array of days of the year
    "demand_model": Rule(lambda x: np.isin(x, list(DEMAND_MODELS.values())),
                         f"one of {DEMAND_MODELS}", integer=True),
    "linear_intercept": NON_NEGATIVE,
    "linear_slope": POSITIVE,
    "market_size": POSITIVE,
    "logit_utility": FINITE,
    "logit_price": POSITIVE,
    "elastic_scale": POSITIVE,
    "elasticity": POSITIVE,
    "min_price": POSITIVE,
    "max_price": POSITIVE,  # and > min_price
    "unit_cost": NON_NEGATIVE,
    "reward_profit": UNIT_INTERVAL,
    "weekly_amplitude": in_range(0, 1, high_open=True),
    "yearly_amplitude": in_range(0, 1, high_open=True),
    "holiday_lift": above(-1),
    "competitor_mean": POSITIVE,
    "competitor_persistence": in_range(0, 1, high_open=True),
    "competitor_volatility": NON_NEGATIVE,
    "competitor_effect": FINITE,
    "reference_init": POSITIVE,
    "reference_smoothing": UNIT_INTERVAL,
    "reference_gain": NON_NEGATIVE,
    "reference_loss": NON_NEGATIVE,
    "initial_stock": above(0, allow_inf=True),  # inf: unlimited stock
    "stochastic_demand": one_of(False, True),
    "start_day": NON_NEGATIVE_INT,
    "random_start_day": one_of(False, True),
    "max_steps_in_episode": POSITIVE_INT,
}
PER_PRODUCT_FIELDS = (
    "linear_intercept", "linear_slope", "market_size", "logit_utility", "logit_price",
    "elastic_scale", "elasticity", "min_price", "max_price", "unit_cost", "competitor_mean",
    "competitor_persistence", "competitor_volatility", "competitor_effect", "reference_init",
    "reference_gain", "reference_loss", "initial_stock",
)


def demand_shift(env: "DynamicPricing", params: EnvParams, level: float = 0.7,
                 sensitivity: float = 1.3) -> EnvParams:
    """Drift target: demand level times `level` and price sensitivity times `sensitivity`, in
    every demand model (linear intercept and slope, logit market size and price coefficient,
    constant-elasticity scale and elasticity); the optimal price falls when both do."""
    return params.replace(
        linear_intercept=params.linear_intercept * level,
        linear_slope=params.linear_slope * sensitivity,
        market_size=params.market_size * level, logit_price=params.logit_price * sensitivity,
        elastic_scale=params.elastic_scale * level, elasticity=params.elasticity * sensitivity)


def competitor_entry(env: "DynamicPricing", params: EnvParams, share: float = 0.75,
                     effect: float = 1.5, competitor_mean: float = 5.0) -> EnvParams:
    """Drift target: a competitor enters, pricing around `competitor_mean`: demand level times
    `share` (the market it takes) and demand moving with its price by `competitor_effect`."""
    return params.replace(
        linear_intercept=params.linear_intercept * share,
        market_size=params.market_size * share, elastic_scale=params.elastic_scale * share,
        competitor_effect=effect, competitor_mean=competitor_mean)


DRIFT_PRESETS = {"demand_shift": demand_shift, "competitor_entry": competitor_entry}


class DynamicPricing(HorizonEndsEpisode, CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """Discrete price grid (`Discrete`, or `MultiDiscrete` for several products) or, with
    `continuous=True`, a `Box` of prices; one price per product per period."""

    out_of_range_action = "clip"  # see `action_to_price`
    param_rules = PARAM_RULES
    drift_presets = DRIFT_PRESETS  # targets for `wrappers.drift_preset`

    def __init__(self, num_products: int = 1, num_prices: int = 12, continuous: bool = False,
                 history_len: int = 4):
        for name, value in (("num_products", num_products), ("num_prices", num_prices),
                            ("history_len", history_len)):
            check_value(value, POSITIVE_INT, f"DynamicPricing.{name}")
        if not isinstance(continuous, bool):
            raise ValueError(f"DynamicPricing.continuous must be a bool, got {continuous!r}")
        self.num_products = num_products
        self.num_prices = num_prices
        self.continuous = continuous
        self.history_len = history_len

    @property
    def name(self) -> str:
        return "DynamicPricing-v0"

    @property
    def num_actions(self) -> int:
        """Grid size per product (discrete) or the action dimension (continuous)."""
        return self.num_products if self.continuous else self.num_prices

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(holiday_days=jnp.array(HOLIDAY_DAYS, jnp.int32))

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field and its valid range; call outside jit."""
        n = self.num_products
        for field in PARAM_RULES:
            shapes = [(), (n,)] if field in PER_PRODUCT_FIELDS else [()]
            shape = np.shape(getattr(params, field))
            if field != "holiday_days" and shape not in shapes:
                raise ValueError(f"DynamicPricing.params.{field} must have shape "
                                 f"{' or '.join(map(str, shapes))} (num_products={n}), "
                                 f"got shape {shape}")
        if np.ndim(params.holiday_days) != 1:
            raise ValueError(f"DynamicPricing.params.holiday_days must be a 1-D array, "
                             f"got {params.holiday_days!r}")
        check(params, PARAM_RULES, "DynamicPricing.params")
        if np.any(np.asarray(params.max_price) <= np.asarray(params.min_price)):
            raise ValueError(f"DynamicPricing.params.max_price must be > params.min_price, got "
                             f"{params.max_price!r} <= {params.min_price!r}")

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        k_day, k_comp = jax.random.split(key)
        n, h = self.num_products, self.history_len
        random_day = jax.random.randint(k_day, (), 0, DAYS_PER_YEAR)
        phi = self.per_product(params.competitor_persistence)
        sd = self.per_product(params.competitor_volatility) / jnp.sqrt(1.0 - phi**2)
        log_comp = jnp.log(self.per_product(params.competitor_mean)) + sd * jax.random.normal(
            k_comp, (n,))
        log_comp = self._bound_competitor(log_comp, params)
        state = EnvState(
            time=jnp.int32(0),
            day=jnp.where(params.random_start_day, random_day, params.start_day).astype(jnp.int32),
            competitor_price=jnp.exp(log_comp),
            reference_price=self.per_product(params.reference_init),
            stock=self.per_product(params.initial_stock),
            price_history=jnp.zeros((h, n), jnp.float32),
            sales_history=jnp.zeros((h, n), jnp.float32),
        )
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        k_demand, k_comp = jax.random.split(key)
        price, num_invalid = self.action_to_price(action, params)
        mean = self.expected_demand(price, state, params)
        drawn = jax.random.poisson(k_demand, mean).astype(jnp.float32)
        demand = jnp.where(params.stochastic_demand, drawn, mean)
        sales = jnp.minimum(demand, state.stock)
        revenue = jnp.sum(price * sales)
        cost = jnp.sum(self.per_product(params.unit_cost) * sales)
        reward = revenue - params.reward_profit * cost

        phi = self.per_product(params.competitor_persistence)
        noise = jax.random.normal(k_comp, (self.num_products,))
        log_comp = ((1.0 - phi) * jnp.log(self.per_product(params.competitor_mean))
                    + phi * jnp.log(state.competitor_price) + params.competitor_volatility * noise)
        log_comp = self._bound_competitor(log_comp, params)
        smoothing = params.reference_smoothing
        state = EnvState(
            time=state.time + 1,
            day=state.day + 1,
            competitor_price=jnp.exp(log_comp),
            reference_price=smoothing * state.reference_price + (1.0 - smoothing) * price,
            stock=state.stock - sales,
            price_history=_push(state.price_history, price),
            sales_history=_push(state.sales_history, sales),
        )
        info = {
            "revenue": revenue, "profit": revenue - cost, "sales": jnp.sum(sales),
            "demand": jnp.sum(demand), "lost_sales": jnp.sum(demand - sales),
            "invalid_actions": num_invalid,
            "price_per_product": price, "sales_per_product": sales,
        }
        terminated = self.is_terminated(state, params)
        return self.get_obs(state, params), state, reward.astype(jnp.float32), terminated, info

    def _bound_competitor(self, log_price: jax.Array, params: EnvParams) -> jax.Array:
        """Log competitor price kept within a factor MAX_COMPETITOR_RATIO of competitor_mean."""
        log_mean = jnp.log(self.per_product(params.competitor_mean))
        bound = math.log(MAX_COMPETITOR_RATIO)
        return jnp.clip(log_price, log_mean - bound, log_mean + bound)

    def season_multiplier(self, day: jax.Array, params: EnvParams) -> jax.Array:
        """Demand-scale multiplier of calendar `day`: weekly x yearly x holiday, always > 0."""
        week, year = _phases(day)
        return ((1.0 + params.weekly_amplitude * jnp.sin(week))
                * (1.0 + params.yearly_amplitude * jnp.sin(year))
                * (1.0 + params.holiday_lift * self.is_holiday(day, params)))

    @staticmethod
    def is_holiday(day: jax.Array, params: EnvParams) -> jax.Array:
        """1.0 if `day` (mod 365) is one of `params.holiday_days`, else 0.0."""
        holidays = jnp.asarray(params.holiday_days)
        return jnp.any(day % DAYS_PER_YEAR == holidays).astype(jnp.float32)

    def expected_demand(self, price: jax.Array, state: EnvState, params: EnvParams) -> jax.Array:
        """Mean demand per product at `price` (>= min_price; broadcasts against (num_products,),
        e.g. (K, num_products) candidate prices) in market `state`, capped at MAX_MEAN_DEMAND."""
        season = self.season_multiplier(state.day, params)
        gap = state.reference_price - price
        reference = (params.reference_gain * jnp.maximum(gap, 0.0)
                     - params.reference_loss * jnp.maximum(-gap, 0.0))
        competitor = params.competitor_effect * (state.competitor_price - params.competitor_mean)
        linear = jnp.maximum(season * params.linear_intercept - params.linear_slope * price
                             + competitor + reference, 0.0)
        utility = (params.logit_utility + jnp.log(season) - params.logit_price * price
                   + competitor + reference)
        logit = params.market_size * jax.nn.sigmoid(utility)
        log_elastic = (jnp.log(season * params.elastic_scale) - params.elasticity * jnp.log(price)
                       + params.competitor_effect * jnp.log(state.competitor_price
                                                            / params.competitor_mean)
                       + reference)
        elastic = jnp.exp(jnp.minimum(log_elastic, math.log(MAX_MEAN_DEMAND)))
        mean = jnp.select([params.demand_model == 0, params.demand_model == 1], [linear, logit],
                          elastic)
        return jnp.minimum(mean, MAX_MEAN_DEMAND).astype(jnp.float32)

    def price_grid(self, params: EnvParams) -> jax.Array:
        """(num_prices, num_products) evenly spaced prices from min_price to max_price."""
        lo, hi = self.per_product(params.min_price), self.per_product(params.max_price)
        steps = jnp.linspace(0.0, 1.0, self.num_prices, dtype=jnp.float32)[:, None]
        return lo + (hi - lo) * steps

    def action_to_price(self, action, params: EnvParams) -> tuple[jax.Array, jax.Array]:
        """Prices charged (num_products,) and the number of products whose action was invalid.

        Rule (documented on the env card): a grid index outside [0, num_prices) is clipped to
        the nearest end of the grid; a continuous price outside [min_price, max_price] is clipped
        to the range, and NaN is charged min_price. Each such product counts as invalid.
        """
        n = self.num_products
        if self.continuous:
            action = check_action(f"{self.name} (continuous)", action, (n,), integer=False)
            action = action.astype(jnp.float32)
            lo, hi = self.per_product(params.min_price), self.per_product(params.max_price)
            invalid = jnp.isnan(action) | (action < lo) | (action > hi)
            price = jnp.clip(jnp.where(jnp.isnan(action), lo, action), lo, hi)
            return price, jnp.sum(invalid).astype(jnp.float32)
        shape = () if n == 1 else (n,)
        index = jnp.atleast_1d(check_action(f"{self.name} with num_products={n}", action, shape,
                                            integer=True))
        invalid = (index < 0) | (index >= self.num_prices)
        index = jnp.clip(index, 0, self.num_prices - 1)
        price = self.price_grid(params)[index, jnp.arange(n)]
        return price, jnp.sum(invalid).astype(jnp.float32)

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        week, year = _phases(state.day)
        calendar = jnp.stack([jnp.sin(week), jnp.cos(week), jnp.sin(year), jnp.cos(year),
                              self.is_holiday(state.day, params)])
        scale = self.per_product(params.max_price)
        initial = self.per_product(params.initial_stock)
        limited = jnp.isfinite(initial)
        stock_left = jnp.where(limited, state.stock / jnp.where(limited, initial, 1.0), 1.0)
        time_left = 1.0 - state.time / params.max_steps_in_episode
        return jnp.concatenate([
            calendar,
            (state.price_history / scale).ravel(),
            jnp.log1p(state.sales_history).ravel(),
            state.competitor_price / scale,
            state.reference_price / scale,
            stock_left,
            jnp.atleast_1d(time_left),
        ]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """A finite-stock episode ends for good at the horizon (unsold stock is worthless)."""
        finite = jnp.any(jnp.isfinite(jnp.asarray(params.initial_stock)))
        return finite & (state.time >= params.max_steps_in_episode)

    def action_space(self, params: EnvParams | None = None):
        n = self.num_products
        if self.continuous:
            params = self.default_params if params is None else params
            return spaces.Box(self.per_product(params.min_price),
                              self.per_product(params.max_price), (n,), jnp.float32)
        return spaces.Discrete(self.num_prices) if n == 1 else MultiDiscrete(self.num_prices, n)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        size = 5 + (2 * self.history_len + 3) * self.num_products + 1
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    def per_product(self, value) -> jax.Array:
        """A scalar or per-product param as a float32 (num_products,) array."""
        return jnp.broadcast_to(jnp.asarray(value, jnp.float32), (self.num_products,))


def _phases(day: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weekly and yearly phase angles (radians) of calendar `day`."""
    return (2.0 * jnp.pi * (day % 7) / 7.0,
            2.0 * jnp.pi * (day % DAYS_PER_YEAR) / DAYS_PER_YEAR)


def _push(buffer: jax.Array, row: jax.Array) -> jax.Array:
    """Insert `row` at the front of `buffer`, dropping the oldest row."""
    return jnp.concatenate([row[None].astype(buffer.dtype), buffer[:-1]])
