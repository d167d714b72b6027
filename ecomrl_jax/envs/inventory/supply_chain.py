"""SupplyChain-v1: a serial multi-echelon chain, OR-Gym's InvManagement in JAX.

Stage 0 is the retailer facing customer demand; stage i orders from stage i + 1, and the
top stage orders from a raw-material supplier with unlimited stock. A shipment from the
supplier of stage i is limited by that supplier's capacity and its on-hand stock, and
reaches stage i after `lead_times[i]` periods. Unmet demand and unmet replenishment orders
are backlogged or lost. The reward is the chain's undiscounted profit (discounting belongs to
the learner); OR-Gym's reward `alpha**t * profit` is reported as `info["discounted_profit"]`.
v0 returned the discounted profit as the reward. See docs/envs/supply_chain.md.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, HorizonEndsEpisode, check_shapes
from ecomrl_jax.envs.inventory.inventory import (DEMAND_DIST, MAX_DEMAND_MEAN, POISSON,
                                                 WHOLE_UNITS, draw_demand)
from ecomrl_jax.rules import (DISCOUNT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                              Rule, check, check_value, in_range, one_of)
from ecomrl_jax.spaces import check_action

# OR-Gym InvManagementMasterEnv defaults for three inventory stages (four with the supplier).
OR_GYM_DEFAULTS = dict(initial_inventory=(100.0, 100.0, 200.0), unit_cost=(1.5, 1.0, 0.75, 0.5),
                       shortage_cost=(0.10, 0.075, 0.05, 0.025), holding_cost=(0.15, 0.10, 0.05),
                       supply_capacity=(100.0, 90.0, 80.0))


@struct.dataclass
class EnvState(environment.EnvState):
    on_hand: jax.Array  # (num_stages,) stock at each stage
    pipeline: jax.Array  # (num_stages, max lead time); [i, j] reaches stage i in j + 1 steps
    backlog: jax.Array  # (num_stages + 1,) unmet customer demand, then each stage's unmet order


@struct.dataclass
class EnvParams:
    initial_inventory: jax.Array  # (num_stages,) OR-Gym I0
    unit_cost: jax.Array  # (num_stages + 1,) OR-Gym r: price stage i pays its supplier
    shortage_cost: jax.Array  # (num_stages + 1,) OR-Gym k: per unit unmet at stage i
    holding_cost: jax.Array  # (num_stages,) OR-Gym h: per unit on hand at the end of a period
    supply_capacity: jax.Array  # (num_stages,) OR-Gym c: most stage i's supplier ships per period
    price: float = 2.0  # OR-Gym p: retail price
    demand_mean: float = 20.0  # OR-Gym dist=1 (Poisson), dist_param mu
    demand_dist: int = POISSON  # 0 Poisson, 1 negative binomial
    demand_shape: float = 4.0  # negative binomial size r: variance = mean + mean**2 / r
    backlog: bool = True  # OR-Gym backlog
    alpha: float = 0.97  # OR-Gym alpha: info["discounted_profit"] at step t is alpha**t * profit
    max_steps_in_episode: int = 30  # OR-Gym periods


# Valid values of every field (checked by `validate_params`, outside jit).
PARAM_RULES = {
    "initial_inventory": WHOLE_UNITS,
    "unit_cost": NON_NEGATIVE,
    "shortage_cost": NON_NEGATIVE,
    "holding_cost": NON_NEGATIVE,
    "supply_capacity": Rule(lambda x: (x > 0) & (x == np.floor(x)), "a whole number of units > 0"),
    "price": NON_NEGATIVE,
    "demand_mean": in_range(0, MAX_DEMAND_MEAN),  # the demand sampler's range
    "demand_dist": DEMAND_DIST,
    "demand_shape": POSITIVE,
    "backlog": one_of(False, True),
    "alpha": DISCOUNT,
    "max_steps_in_episode": POSITIVE_INT,
}


class SupplyChain(HorizonEndsEpisode, CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """`len(lead_times)` stages. Action: order quantities per stage, a `Box`; or, with
    `order_grid`, one `Discrete` index into the joint grid of per-stage quantities."""

    out_of_range_action = "clip"  # see `order_quantity`
    param_rules = PARAM_RULES

    def __init__(self, lead_times: tuple[int, ...] = (3, 5, 10),
                 order_grid: tuple[float, ...] | None = None):
        lead_times = tuple(lead_times)
        if not lead_times:
            raise ValueError("SupplyChain.lead_times must be a non-empty tuple of ints >= 0")
        for v in lead_times:
            check_value(v, NON_NEGATIVE_INT, "SupplyChain.lead_times entry")
        self.lead_times = tuple(int(v) for v in lead_times)
        self.num_stages = len(lead_times)
        self.max_lead_time = max(self.lead_times)
        if order_grid is not None:
            order_grid = tuple(float(v) for v in order_grid)
            if not order_grid or any(v < 0 or v != int(v) for v in order_grid):
                raise ValueError(f"SupplyChain.order_grid must be whole quantities >= 0, "
                                 f"got {order_grid!r}")
        self.order_grid = order_grid

    @property
    def name(self) -> str:
        return "SupplyChain-v1"

    @property
    def num_actions(self) -> int:
        if self.order_grid is None:
            return self.num_stages
        return len(self.order_grid) ** self.num_stages

    @property
    def default_params(self) -> EnvParams:
        """OR-Gym's defaults; for another number of stages each per-stage array is cut short
        or extended by repeating its last entry."""
        def per_stage(values, extra=0):
            n = self.num_stages + extra
            values = list(values[:n]) + [values[-1]] * (n - len(values))
            return jnp.asarray(values, jnp.float32)

        d = OR_GYM_DEFAULTS
        return EnvParams(initial_inventory=per_stage(d["initial_inventory"]),
                         unit_cost=per_stage(d["unit_cost"], 1),
                         shortage_cost=per_stage(d["shortage_cost"], 1),
                         holding_cost=per_stage(d["holding_cost"]),
                         supply_capacity=per_stage(d["supply_capacity"]))

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        n = self.num_stages
        check_shapes(params, dict(initial_inventory=(n,), unit_cost=(n + 1,),
                                  shortage_cost=(n + 1,), holding_cost=(n,),
                                  supply_capacity=(n,)), "SupplyChain.params", f"num_stages={n}")
        check(params, PARAM_RULES, "SupplyChain.params")

    def reset_env(self, key: jax.Array, params: EnvParams):
        n = self.num_stages
        state = EnvState(time=jnp.int32(0),
                         on_hand=jnp.asarray(params.initial_inventory, jnp.float32),
                         pipeline=jnp.zeros((n, self.max_lead_time), jnp.float32),
                         backlog=jnp.zeros(n + 1, jnp.float32))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        order, clipped = self.order_quantity(action, params)
        backlog_on = jnp.asarray(params.backlog, bool)
        requested = order + jnp.where(backlog_on, state.backlog[1:], 0.0)
        supplier_stock = jnp.append(state.on_hand[1:], jnp.inf)  # before this period's arrivals
        shipped = jnp.minimum(jnp.minimum(requested, params.supply_capacity), supplier_stock)
        due = jnp.asarray(self.lead_times)[:, None] == jnp.arange(self.max_lead_time + 1)
        incoming = jnp.pad(state.pipeline, ((0, 0), (0, 1))) + shipped[:, None] * due
        arrivals, pipeline = incoming[:, 0], incoming[:, 1:]
        on_hand = state.on_hand + arrivals
        demand = self.sample_demand(key, state.time, params)
        wanted = demand + jnp.where(backlog_on, state.backlog[0], 0.0)
        sales = jnp.minimum(on_hand[0], wanted)
        on_hand = on_hand - jnp.append(sales, shipped[:-1])
        unmet = jnp.append(wanted - sales, requested - shipped)
        backlog = jnp.where(backlog_on, unmet, 0.0)
        revenue = params.price * sales
        ordering_cost = params.unit_cost[-1] * shipped[-1]  # transfers inside the chain cancel
        holding_cost = jnp.sum(params.holding_cost * on_hand)
        shortage_cost = jnp.sum(params.shortage_cost * unmet)
        profit = revenue - ordering_cost - holding_cost - shortage_cost
        info = {
            "demand": demand, "sales": sales, "lost_sales": jnp.where(backlog_on, 0.0, unmet[0]),
            "backorders": backlog[0], "on_hand": jnp.sum(on_hand), "orders": jnp.sum(order),
            "invalid_actions": clipped, "revenue": revenue, "ordering_cost": ordering_cost,
            "holding_cost": holding_cost, "shortage_cost": shortage_cost, "profit": profit,
            "discounted_profit": params.alpha ** state.time * profit,
            "stage_shipped": shipped, "stage_arrivals": arrivals, "stage_unmet": unmet,
        }
        info = {k: jnp.asarray(v, jnp.float32) for k, v in info.items()}
        state = EnvState(time=state.time + 1, on_hand=on_hand, pipeline=pipeline, backlog=backlog)
        return self.get_obs(state, params), state, info["profit"], jnp.bool_(False), info

    def order_quantity(self, action: jax.Array, params: EnvParams) -> tuple[jax.Array, jax.Array]:
        """Whole order quantities per stage and the number of clipped entries.

        Box: rounded down, then clipped to [0, supply_capacity]; NaN orders nothing. Discrete:
        an index outside [0, num_actions) is clipped; digit i (base len(order_grid)) of the
        index picks stage i's quantity.
        """
        if self.order_grid is None:
            action = check_action(self.name, action, (self.num_stages,), integer=False)
            action = action.astype(jnp.float32)
            quantity = jnp.where(jnp.isnan(action), 0.0, jnp.floor(action))
            order = jnp.clip(quantity, 0.0, params.supply_capacity)
            return order, jnp.sum(jnp.isnan(action) | (order != quantity)).astype(jnp.float32)
        action = check_action(self.name, action, (), integer=True)
        index = jnp.clip(action, 0, self.num_actions - 1)
        size = len(self.order_grid)
        digits = index // size ** jnp.arange(self.num_stages) % size
        order = jnp.asarray(self.order_grid, jnp.float32)[digits]
        return order, (index != action).astype(jnp.float32)

    def sample_demand(self, key: jax.Array, time: jax.Array, params: EnvParams) -> jax.Array:
        """Customer demand at the retailer: Poisson or negative binomial, the same every step."""
        return draw_demand(key, params.demand_mean, params)

    def inventory_position(self, state: EnvState) -> jax.Array:
        """Echelon inventory position of each stage i: stock on hand and in transit at stages
        0..i, plus stage i's unfilled order at its supplier (re-requested with backlog), minus
        the customer backlog. (OR-Gym's base-stock helper instead subtracts what each stage
        owes downstream and leaves out its own unfilled order, which over-orders with backlog.)
        """
        stock = jnp.cumsum(state.on_hand + jnp.sum(state.pipeline, axis=1))
        return stock - state.backlog[0] + state.backlog[1:]

    def order_action(self, quantity: jax.Array, params: EnvParams) -> jax.Array:
        """Whole per-stage `quantity` (clipped to [0, supply_capacity]) as this env's action;
        with `order_grid`, each stage takes the nearest grid quantity."""
        quantity = jnp.clip(jnp.floor(quantity), 0.0, params.supply_capacity)
        if self.order_grid is None:
            return quantity.astype(jnp.float32)
        grid = jnp.asarray(self.order_grid, jnp.float32)
        digits = jnp.argmin(jnp.abs(quantity[:, None] - grid[None]), axis=1)
        return jnp.sum(digits * len(grid) ** jnp.arange(self.num_stages)).astype(jnp.int32)

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        """[on hand (n), pipeline (n * max lead time), backlog (n + 1), time / horizon];
        quantities are divided by the largest supply capacity."""
        scale = jnp.max(params.supply_capacity)
        return jnp.concatenate([
            state.on_hand / scale, state.pipeline.ravel() / scale, state.backlog / scale,
            (state.time / params.max_steps_in_episode)[None],
        ]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.bool_(False)

    def action_space(self, params: EnvParams | None = None):
        if self.order_grid is not None:
            return spaces.Discrete(self.num_actions)
        params = self.default_params if params is None else params
        return spaces.Box(jnp.zeros(self.num_stages, jnp.float32),
                          jnp.asarray(params.supply_capacity, jnp.float32),
                          (self.num_stages,), jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        n = self.num_stages
        size = n + n * self.max_lead_time + n + 1
        low = jnp.concatenate([jnp.zeros(size), jnp.zeros(1)]).astype(jnp.float32)
        high = jnp.concatenate([jnp.full(size, jnp.inf), jnp.ones(1)]).astype(jnp.float32)
        return spaces.Box(low, high, (size + 1,), jnp.float32)
