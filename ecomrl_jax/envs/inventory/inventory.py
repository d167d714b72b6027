"""Inventory-v0: periodic-review inventory control of one product with stochastic demand.

Each period the agent orders a quantity that arrives `lead_time` periods later (before that
period's demand; `lead_time=0` means before this period's demand). Demand beyond stock is
lost or backordered; the reward is the period's profit: revenue minus ordering, holding and
shortage costs. See docs/envs/inventory.md.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces
from jax.scipy.special import gammaln

from ecomrl_jax.envs._base import CompareByArgs
from ecomrl_jax.rules import (NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                              UNIT_INTERVAL, Rule, check, check_value, one_of)
from ecomrl_jax.spaces import check_action

POISSON, NEGATIVE_BINOMIAL = 0, 1
MAX_DEMAND_MEAN = 1000.0  # draw_demand's float32 walk is accurate (and quick) up to here


@struct.dataclass
class EnvState(environment.EnvState):
    inventory: jax.Array  # () net inventory: on hand, or minus the backorders (never both)
    pipeline: jax.Array  # (lead_time,) outstanding orders; entry j arrives j+1 steps from now


@struct.dataclass
class EnvParams:
    demand_mean: float = 4.0
    demand_dist: int = POISSON  # 0 Poisson, 1 negative binomial
    demand_shape: float = 4.0  # negative binomial size r: variance = mean + mean**2 / r
    season_amplitude: float = 0.0  # mean demand at step t: mean * (1 + a * sin(2 pi t / period))
    season_period: float = 52.0
    backorders: bool = False  # False: unmet demand is lost; True: it is backordered
    price: float = 10.0
    unit_cost: float = 5.0
    fixed_cost: float = 5.0  # per period with a positive order
    holding_cost: float = 0.5  # per unit on hand at the end of a period
    shortage_cost: float = 2.0  # per lost unit, or per backordered unit per period
    storage_capacity: float = 40.0  # arriving stock above it is discarded
    initial_inventory: float = 10.0
    max_steps_in_episode: int = 100


DEMAND_DIST = Rule(lambda x: np.isin(x, (POISSON, NEGATIVE_BINOMIAL)),
                   f"{POISSON} (Poisson) or {NEGATIVE_BINOMIAL} (negative binomial)", integer=True)
WHOLE_UNITS = Rule(lambda x: (x >= 0) & (x == np.floor(x)), "a whole number of units >= 0")

# Valid values of every field (checked by `validate_params`, outside jit).
PARAM_RULES = {
    "demand_mean": NON_NEGATIVE,  # and, at the seasonal peak, <= MAX_DEMAND_MEAN
    "demand_dist": DEMAND_DIST,
    "demand_shape": POSITIVE,
    "season_amplitude": UNIT_INTERVAL,
    "season_period": POSITIVE,
    "backorders": one_of(False, True),
    "price": NON_NEGATIVE,
    "unit_cost": NON_NEGATIVE,
    "fixed_cost": NON_NEGATIVE,
    "holding_cost": NON_NEGATIVE,
    "shortage_cost": NON_NEGATIVE,
    "storage_capacity": WHOLE_UNITS,
    "initial_inventory": WHOLE_UNITS,  # and <= storage_capacity
    "max_steps_in_episode": POSITIVE_INT,
}


def draw_demand(key: jax.Array, mean: jax.Array, params) -> jax.Array:
    """Poisson(`mean`) demand, or negative binomial (`params.demand_dist == 1`, size
    `params.demand_shape`), by inverse transform: walk up the pmf from 0 (in log space, so
    large means do not underflow) until the cdf passes a uniform draw or stops growing in
    float32. About mean + a few standard deviations iterations (hence MAX_DEMAND_MEAN);
    compiles several times faster than jax.random.poisson with a gamma mixture."""
    mean = jnp.asarray(mean, jnp.float32)
    shape = jnp.asarray(params.demand_shape, jnp.float32)
    nb = params.demand_dist == NEGATIVE_BINOMIAL
    success = shape / (shape + mean)
    log_p0 = jnp.where(nb, shape * jnp.log(success), -mean)
    u = jax.random.uniform(key)

    def log_pmf(k):  # direct, not recursive, so that rounding does not build up along k
        nb_term = (gammaln(k + shape) - gammaln(shape) + shape * jnp.log(success)
                   + k * jnp.log1p(-success))
        return jnp.where(nb, nb_term, k * jnp.log(mean) - mean) - gammaln(k + 1.0)

    def body(carry):
        k, cdf, _ = carry
        new_cdf = cdf + jnp.exp(log_pmf(k + 1.0))
        return k + 1.0, new_cdf, new_cdf > cdf

    def keep_going(carry):
        k, cdf, grew = carry  # below the mean (the mode) terms may still be rising
        return (cdf < u) & ((k <= mean) | grew)

    start = (jnp.float32(0.0), jnp.exp(log_p0), jnp.bool_(True))
    return jax.lax.while_loop(keep_going, body, start)[0]


def demand_jump(env: "Inventory", params: EnvParams, factor: float = 2.0) -> EnvParams:
    """Drift target: mean demand times `factor` (a new channel, a competitor leaving)."""
    return params.replace(demand_mean=params.demand_mean * factor)


DRIFT_PRESETS = {"demand_jump": demand_jump}


class Inventory(CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """One product; `Discrete(max_order + 1)` order quantities, or a `Box` if `continuous`."""

    out_of_range_action = "clip"  # see `order_quantity`
    param_rules = PARAM_RULES
    drift_presets = DRIFT_PRESETS  # targets for `wrappers.drift_preset`

    def __init__(self, lead_time: int = 2, max_order: int = 10, continuous: bool = False):
        check_value(lead_time, NON_NEGATIVE_INT, "Inventory.lead_time")
        check_value(max_order, POSITIVE_INT, "Inventory.max_order")
        if not isinstance(continuous, bool):
            raise ValueError(f"Inventory.continuous must be a bool, got {continuous!r}")
        self.lead_time = int(lead_time)
        self.max_order = int(max_order)
        self.continuous = continuous

    @property
    def name(self) -> str:
        return "Inventory-v0"

    @property
    def num_actions(self) -> int:
        return 1 if self.continuous else self.max_order + 1

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        check(params, PARAM_RULES, "Inventory.params")
        if np.any(np.asarray(params.initial_inventory) > np.asarray(params.storage_capacity)):
            raise ValueError(f"Inventory.params.initial_inventory must be <= storage_capacity "
                             f"({params.storage_capacity}), got {params.initial_inventory}")
        peak = np.asarray(params.demand_mean) * (1 + np.asarray(params.season_amplitude))
        if np.any(peak > MAX_DEMAND_MEAN):
            raise ValueError(f"Inventory.params.demand_mean, at the seasonal peak, must be <= "
                             f"{MAX_DEMAND_MEAN:g} (the demand sampler's range), got {peak}")

    def reset_env(self, key: jax.Array, params: EnvParams):
        state = EnvState(time=jnp.int32(0),
                         inventory=jnp.asarray(params.initial_inventory, jnp.float32),
                         pipeline=jnp.zeros(self.lead_time, jnp.float32))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        order, clipped = self.order_quantity(action)
        demand = self.sample_demand(key, state.time, params)
        incoming = jnp.append(state.pipeline, 0.0).at[self.lead_time].add(order)
        arrivals, pipeline = incoming[0], incoming[1:]
        backlog = jnp.maximum(-state.inventory, 0.0)
        filled = jnp.minimum(arrivals, backlog)  # arrivals serve old backorders first
        level = state.inventory + arrivals
        discarded = jnp.maximum(level - params.storage_capacity, 0.0)
        stock = jnp.maximum(level - discarded, 0.0)
        served = jnp.minimum(stock, demand)
        unmet = demand - served
        on_hand = stock - served
        backorders = jnp.where(params.backorders, backlog - filled + unmet, 0.0)
        lost = jnp.where(params.backorders, 0.0, unmet)
        sales = filled + served
        info = {
            "demand": demand, "sales": sales, "lost_sales": lost, "backorders": backorders,
            "on_hand": on_hand, "orders": order, "arrivals": arrivals, "discarded": discarded,
            "invalid_actions": clipped,
            "revenue": params.price * sales,
            "ordering_cost": (params.unit_cost * order
                              + jnp.where(order > 0, params.fixed_cost, 0.0)),
            "holding_cost": params.holding_cost * on_hand,
            "shortage_cost": params.shortage_cost * (lost + backorders),
        }
        info = {k: jnp.asarray(v, jnp.float32) for k, v in info.items()}
        reward = (info["revenue"] - info["ordering_cost"] - info["holding_cost"]
                  - info["shortage_cost"])
        state = EnvState(time=state.time + 1, inventory=on_hand - backorders, pipeline=pipeline)
        return self.get_obs(state, params), state, reward, jnp.bool_(False), info

    def order_quantity(self, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Whole order quantity in [0, max_order] and 1.0 if the action had to be clipped.

        Discrete: out-of-range indices are clipped. Continuous: rounded down, then clipped;
        NaN orders nothing. Only clipping (not rounding) counts.
        """
        if self.continuous:
            action = check_action(self.name, action, (1,), integer=False)[0].astype(jnp.float32)
            quantity = jnp.where(jnp.isnan(action), 0.0, jnp.floor(action))
        else:
            quantity = check_action(self.name, action, (), integer=True).astype(jnp.float32)
        order = jnp.clip(quantity, 0.0, self.max_order)
        return order, (jnp.isnan(action) | (order != quantity)).astype(jnp.float32)

    def sample_demand(self, key: jax.Array, time: jax.Array, params: EnvParams) -> jax.Array:
        """Demand at step `time`: Poisson, or negative binomial as a gamma-Poisson mixture."""
        return draw_demand(key, self.mean_demand(time, params), params)

    @staticmethod
    def mean_demand(time: jax.Array, params: EnvParams) -> jax.Array:
        phase = 2.0 * math.pi * time / params.season_period
        return jnp.asarray(params.demand_mean * (1.0 + params.season_amplitude * jnp.sin(phase)),
                           jnp.float32)

    def inventory_position(self, state: EnvState) -> jax.Array:
        """Net inventory plus everything on order: what base-stock rules compare to."""
        return state.inventory + jnp.sum(state.pipeline)

    def order_action(self, quantity: jax.Array, params: EnvParams | None = None) -> jax.Array:
        """A whole `quantity` as this env's action (rounded down, clipped to [0, max_order])."""
        quantity = jnp.clip(jnp.floor(quantity), 0, self.max_order)
        if self.continuous:
            return jnp.reshape(quantity, (1,)).astype(jnp.float32)
        return quantity.astype(jnp.int32)

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        """[net inventory, pipeline..., time / horizon, sin and cos of the season phase];
        quantities are divided by max_order."""
        phase = 2.0 * math.pi * state.time / params.season_period
        return jnp.concatenate([
            state.inventory[None] / self.max_order,
            state.pipeline / self.max_order,
            jnp.stack([state.time / params.max_steps_in_episode, jnp.sin(phase), jnp.cos(phase)]),
        ]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.bool_(False)

    def action_space(self, params: EnvParams | None = None):
        if self.continuous:
            return spaces.Box(0.0, float(self.max_order), (1,), jnp.float32)
        return spaces.Discrete(self.max_order + 1)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        low = np.concatenate([[-np.inf], np.zeros(self.lead_time), [0.0, -1.0, -1.0]])
        high = np.concatenate([[np.inf], np.ones(self.lead_time), [1.0, 1.0, 1.0]])
        return spaces.Box(jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32),
                          (self.lead_time + 4,), jnp.float32)
