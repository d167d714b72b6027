"""Classic inventory policies, a vectorised policy search, and exact optima for Inventory-v0.

Policies are `policy_fn(key, obs, env_state, env_params) -> action` factories for
`ecomrl_jax.evaluation.evaluate`; they read the inventory position from `env_state` through
the env's `inventory_position` and build actions with its `order_action`, so they work on
Inventory-v0 (both action variants) and SupplyChain-v1 (echelon levels, one per stage); the
perfect-foresight oracle of SupplyChain-v1 is in `foresight`.
`value_iteration` solves the average-profit MDP of a small Inventory-v0 instance exactly;
`newsvendor` gives the closed-form optimal base-stock level with backorders.
"""

import functools
import itertools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecomrl_jax.envs.inventory.inventory import NEGATIVE_BINOMIAL, Inventory
from ecomrl_jax.evaluation import evaluate


def base_stock_policy(env, level):
    """Order up to `level`: order max(level - inventory position, 0) each period."""
    return jax.tree_util.Partial(_policy_fn(env, _base_stock), jnp.asarray(level, jnp.float32))


def s_S_policy(env, reorder_point, order_up_to):  # noqa: N802 (the policy's usual name)
    """(s, S): when the inventory position is at or below s, order up to S; else nothing.
    Base-stock S is (S - 1, S)."""
    return jax.tree_util.Partial(_policy_fn(env, _s_S), jnp.asarray(reorder_point, jnp.float32),
                                 jnp.asarray(order_up_to, jnp.float32))


def r_q_policy(env, reorder_point, quantity):
    """(R, Q) reviewed each period: when the inventory position is at or below R, order the
    fixed batch Q (clipped to the order limits); else nothing."""
    return jax.tree_util.Partial(_policy_fn(env, _r_q), jnp.asarray(reorder_point, jnp.float32),
                                 jnp.asarray(quantity, jnp.float32))


def _base_stock(position, level):
    return jnp.maximum(level - position, 0.0)


def _s_S(position, reorder_point, order_up_to):  # noqa: N802
    return jnp.where(position <= reorder_point, order_up_to - position, 0.0)


def _r_q(position, reorder_point, quantity):
    return jnp.where(position <= reorder_point, quantity, 0.0)


@functools.cache
def _policy_fn(env, rule):
    """`(*rule_params, key, obs, env_state, params) -> action` for `rule(position, *params)`;
    cached so that policies differing only in their numbers share one compiled program."""
    if not (hasattr(env, "inventory_position") and hasattr(env, "order_action")):
        raise ValueError(f"inventory policies need an unwrapped Inventory-v0 or SupplyChain-v1 "
                         f"env (they read the inventory position), got {type(env).__name__}")

    def policy_fn(*args):
        *rule_params, key, obs, env_state, params = args
        return env.order_action(rule(env.inventory_position(env_state), *rule_params), params)

    return policy_fn


def product_grid(*axes) -> tuple[np.ndarray, ...]:
    """All combinations of the given 1-D value lists, as one float32 column per axis."""
    rows = np.array(list(itertools.product(*axes)), np.float32).reshape(-1, len(axes))
    return tuple(rows.T)


class GridSearchResult(NamedTuple):
    best: tuple  # the best candidate's arguments to the policy factory
    best_index: int
    mean_return: np.ndarray  # (num_candidates,) mean episode sum of the searched metric
    returns: np.ndarray  # (num_candidates, num_episodes) per-episode sums of that metric


def grid_search(env, env_params, policy_factory, candidates, key, num_episodes: int,
                max_steps: int | None = None, metric: str = "return") -> GridSearchResult:
    """Evaluate every candidate in one jit and return the one with the highest mean `metric`:
    the episode return, or any per-episode sum `evaluate` reports (e.g. SupplyChain-v1's
    "discounted_profit", OR-Gym's reward).

    `candidates` is a tuple with one array per numeric argument of
    `policy_factory(env, *args) -> policy_fn`, candidates along axis 0, e.g.
    `grid_search(env, params, s_S_policy, product_grid(range(20), range(40)), ...)`. All
    candidates run the same `num_episodes` episodes of `evaluate` with the same `key`, so they
    face the same demand (common random numbers) and score exactly what `evaluate` reports.
    The program is compiled once per (env, policy_factory, num_episodes, max_steps, metric) and
    number of candidates; new values and params reuse it.
    """
    candidates = tuple(jnp.asarray(c, jnp.float32) for c in candidates)
    sizes = {c.shape[0] if c.ndim else None for c in candidates}
    if not candidates or len(sizes) != 1 or None in sizes or 0 in sizes:
        raise ValueError(f"candidates must be a non-empty tuple of arrays with the same number "
                         f"(>= 1) of candidates along axis 0, got shapes "
                         f"{[c.shape for c in candidates]}")
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode)
    returns = np.asarray(_grid_returns(env, policy_factory, num_episodes, max_steps, metric,
                                       candidates, env_params, key))
    mean_return = returns.mean(axis=1)
    best_index = int(np.argmax(mean_return))
    best = tuple(np.asarray(c[best_index]) for c in candidates)
    return GridSearchResult(best, best_index, mean_return, returns)


@functools.partial(jax.jit, static_argnames=("env", "policy_factory", "num_episodes", "max_steps",
                                             "metric"))
def _grid_returns(env, policy_factory, num_episodes, max_steps, metric, candidates, env_params,
                  key):
    def one(args):
        policy_fn = policy_factory(env, *args)
        return evaluate(env, env_params, policy_fn, key, num_episodes, max_steps)[metric]

    return jax.vmap(one)(candidates)


def demand_pmf(env_params, periods: int = 1, tail: float = 1e-9) -> np.ndarray:
    """Probabilities of total demand 0, 1, ... over `periods` i.i.d. periods of a stationary
    Inventory-v0 (float64); the support ends once at most `tail` is left, which is added to
    the last entry."""
    mean = periods * float(env_params.demand_mean)
    if mean == 0.0:
        return np.ones(1)
    if int(env_params.demand_dist) == NEGATIVE_BINOMIAL:
        size = periods * float(env_params.demand_shape)
        p = size / (size + mean)
        var = mean / p

        def logpmf(k):
            return (math.lgamma(k + size) - math.lgamma(size) - math.lgamma(k + 1)
                    + size * math.log(p) + k * math.log1p(-p))
    else:
        var = mean

        def logpmf(k):
            return k * math.log(mean) - mean - math.lgamma(k + 1)

    upper = int(math.ceil(mean + 40.0 * math.sqrt(var) + 40.0))
    pmf = np.exp([logpmf(k) for k in range(upper + 1)])
    cut = int(np.searchsorted(np.cumsum(pmf), 1.0 - tail))
    pmf = pmf[:cut + 1].copy()
    pmf[-1] += 1.0 - pmf.sum()
    return pmf


# Where one period's demand exceeds max_order, base-stock cannot always order back up and the
# formula's profit overstates the optimum: by 0.14 of 18.37 per period at max_order 6 with
# Poisson(4) demand (tail 0.11), by 0.0009 of 18.51 at max_order 10 (tail 0.0028). newsvendor
# warns above BINDING_TAIL and refuses above MAX_ORDER_TAIL.
BINDING_TAIL = 1e-4
MAX_ORDER_TAIL = 1e-2


class NewsvendorSolution(NamedTuple):
    level: int  # optimal base-stock (order-up-to) level on the inventory position
    average_profit: float  # long-run profit per period of that policy; cost = -profit


def newsvendor(env, env_params) -> NewsvendorSolution:
    """Critical-fractile base-stock level for Inventory-v0 with backorders and no fixed cost.

    Optimal level S: the smallest S with P(D <= S) >= shortage / (shortage + holding), D the
    demand over lead_time + 1 periods (L = 0: the single-period newsvendor). Exact only while
    the order limit and storage capacity do not bind, so it raises ValueError when one period's
    demand exceeds max_order with probability above MAX_ORDER_TAIL (its profit would be above
    the true optimum; `value_iteration` solves such an instance) or S exceeds storage_capacity,
    and warns where that probability is above BINDING_TAIL (its profit slightly above).
    """
    _require_stationary_inventory(env, env_params, "newsvendor")
    holding, shortage = float(env_params.holding_cost), float(env_params.shortage_cost)
    if not bool(env_params.backorders) or float(env_params.fixed_cost) != 0.0:
        raise ValueError("newsvendor needs params.backorders=True and params.fixed_cost=0")
    if holding + shortage <= 0.0:
        raise ValueError("newsvendor needs params.holding_cost + params.shortage_cost > 0")
    tail = float(demand_pmf(env_params)[env.max_order + 1:].sum())
    if tail > MAX_ORDER_TAIL:
        raise ValueError(f"newsvendor ignores the order limit, but one period's demand exceeds "
                         f"max_order={env.max_order} with probability {tail:.2g} > "
                         f"{MAX_ORDER_TAIL:g}, so its profit would be above the optimum; raise "
                         f"max_order or use value_iteration")
    if tail > BINDING_TAIL:
        warnings.warn(f"newsvendor ignores the order limit, which binds: one period's demand "
                      f"exceeds max_order={env.max_order} with probability {tail:.2g}, so its "
                      f"profit is slightly above the optimum (value_iteration is exact)", stacklevel=2)
    pmf = demand_pmf(env_params, periods=env.lead_time + 1)
    level = int(np.searchsorted(np.cumsum(pmf), shortage / (shortage + holding) - 1e-12))
    if level > float(env_params.storage_capacity):
        raise ValueError(f"newsvendor's level {level} exceeds params.storage_capacity="
                         f"{float(env_params.storage_capacity):g}, which would discard stock; "
                         f"raise storage_capacity or use value_iteration")
    demand = np.arange(pmf.size)
    expected_cost = float(pmf @ (holding * np.maximum(level - demand, 0)
                                 + shortage * np.maximum(demand - level, 0)))
    margin = float(env_params.price) - float(env_params.unit_cost)
    return NewsvendorSolution(level, margin * float(env_params.demand_mean) - expected_cost)


class ValueIterationResult(NamedTuple):
    gain: float  # optimal long-run profit per period; average cost per period = -gain
    bias: np.ndarray  # relative values, shape (num_levels,) + (max_order + 1,) * lead_time
    policy: np.ndarray  # optimal order quantity per state, same shape, int32
    min_level: int  # net inventory of level index 0 (-max_backlog, or 0 with lost sales)
    iterations: int
    span: float  # span of the last Bellman update: the gain is exact to within span / 2


def value_iteration(env, env_params, max_backlog: int | None = None, tol: float = 1e-3,
                    max_iters: int = 2_000) -> ValueIterationResult:
    """Optimal average-profit policy of a stationary Inventory-v0 by relative value iteration.

    State: net inventory in [-max_backlog, storage_capacity] (or [0, storage_capacity] with
    lost sales) and the `lead_time` outstanding orders, each in [0, max_order]: that is
    `num_levels * (max_order + 1) ** lead_time` states. The MDP is the env's own dynamics and
    expected one-period profit, with demand truncated at 1e-9 tail mass and, with backorders,
    the backlog capped at `max_backlog` (default 3 * max_order) in the transitions only.
    Iterates h <- T h - (T h)[ref] until the span of T h - h is below `tol` or `max_iters`
    (check `span`): in float32 the span bottoms out near 1e-4 on the default instances.
    """
    _require_stationary_inventory(env, env_params, "value_iteration")
    if max_backlog is not None and (not isinstance(max_backlog, int) or max_backlog < 0):
        raise ValueError(f"max_backlog must be an int >= 0, got {max_backlog!r}")
    backorders = bool(env_params.backorders)
    max_backlog = (3 * env.max_order if max_backlog is None else max_backlog) if backorders else 0
    capacity = int(env_params.storage_capacity)
    num_orders, lead_time = env.max_order + 1, env.lead_time
    levels = np.arange(-max_backlog, capacity + 1)
    num_levels = levels.size
    pmf = demand_pmf(env_params)
    demand = np.arange(pmf.size)

    after = levels[:, None] - demand[None]  # level after arrivals (rows) minus demand
    after = np.maximum(after, -max_backlog) if backorders else np.maximum(after, 0)
    transition = np.zeros((num_levels, num_levels))
    rows = np.repeat(np.arange(num_levels), pmf.size)
    np.add.at(transition, (rows, (after + max_backlog).ravel()), np.tile(pmf, num_levels))

    x, arrival = levels[:, None], np.arange(num_orders)[None]
    filled = np.minimum(arrival, np.maximum(-x, 0))
    level = np.minimum(x + arrival, capacity)
    stock = np.maximum(level, 0)[..., None]
    served = np.minimum(stock, demand) @ pmf
    left = np.maximum(stock - demand, 0) @ pmf
    short = np.maximum(demand - level[..., None], 0) @ pmf  # lost, or backordered at period end
    profit = (float(env_params.price) * (filled + served) - float(env_params.holding_cost) * left
              - float(env_params.shortage_cost) * short)
    order_cost = (float(env_params.unit_cost) * np.arange(num_orders)
                  + float(env_params.fixed_cost) * (np.arange(num_orders) > 0))

    ref = max_backlog  # net inventory 0, nothing on order
    h, span, gain, iterations, policy = _relative_value_iteration(
        jnp.asarray(transition, jnp.float32), jnp.asarray(profit, jnp.float32),
        jnp.asarray(level + max_backlog, jnp.int32), jnp.asarray(order_cost, jnp.float32),
        ref, tol, lead_time, max_iters)
    shape = (num_levels,) + (num_orders,) * lead_time
    return ValueIterationResult(float(gain), np.asarray(h).reshape(shape),
                                np.asarray(policy, np.int32).reshape(shape), -max_backlog,
                                int(iterations), float(span))


def _bellman(transition, profit, next_level, order_cost, lead_time, h):
    """`(T h, argmax order)` for h of shape (num_levels, num_orders ** lead_time), the
    pipeline flattened with the next arrival as the most significant digit."""
    num_levels, num_orders = profit.shape
    expected = transition @ h  # value after arrivals at each level, before demand
    if lead_time == 0:
        q = profit - order_cost + expected[next_level, 0]
        return jnp.max(q, axis=1, keepdims=True), jnp.argmax(q, axis=1)
    by_order = expected.reshape(num_levels, -1, num_orders) - order_cost
    best, best_order = jnp.max(by_order, axis=2), jnp.argmax(by_order, axis=2)
    value = profit[:, :, None] + best[next_level]
    return value.reshape(num_levels, -1), best_order[next_level].reshape(num_levels, -1)


@functools.partial(jax.jit, static_argnames=("lead_time", "max_iters"))
def _relative_value_iteration(transition, profit, next_level, order_cost, ref, tol, lead_time,
                              max_iters):
    """h <- T h - (T h)[ref] from h = 0; returns h, the span and midpoint of T h - h (the gain
    lies within span / 2 of it), the iteration count and the greedy policy of the final h."""
    bellman = functools.partial(_bellman, transition, profit, next_level, order_cost, lead_time)

    def body(carry):
        h, _, _, it = carry
        th = bellman(h)[0]
        diff = th - h
        hi, lo = jnp.max(diff), jnp.min(diff)
        return th - th[ref, 0], hi - lo, (hi + lo) / 2, it + 1

    h = jnp.zeros((profit.shape[0], profit.shape[1] ** lead_time), jnp.float32)
    h, span, gain, iterations = jax.lax.while_loop(
        lambda c: (c[1] > tol) & (c[3] < max_iters), body,
        (h, jnp.float32(jnp.inf), jnp.float32(0.0), jnp.int32(0)))
    return h, span, gain, iterations, bellman(h)[1]


def table_policy(env, result: ValueIterationResult):
    """Look up `result.policy` at the env state (net inventory clipped to the table)."""
    if not isinstance(env, Inventory):
        raise ValueError(f"table_policy needs an Inventory-v0 env, got {type(env).__name__}")
    table = jnp.asarray(result.policy, jnp.int32)
    if table.shape[1:] != (env.max_order + 1,) * env.lead_time:
        raise ValueError(f"policy table of shape {table.shape} does not fit this env "
                         f"(lead_time={env.lead_time}, max_order={env.max_order})")
    return jax.tree_util.Partial(_table_fn(env), table, jnp.float32(result.min_level))


@functools.cache
def _table_fn(env):
    def policy_fn(table, min_level, key, obs, env_state, params):
        level = jnp.clip(env_state.inventory - min_level, 0, table.shape[0] - 1)
        index = (level.astype(jnp.int32), *env_state.pipeline.astype(jnp.int32))
        return env.order_action(table[index].astype(jnp.float32), params)

    return policy_fn


def _require_stationary_inventory(env, env_params, name: str) -> None:
    if not isinstance(env, Inventory):
        raise ValueError(f"{name} needs an unwrapped Inventory-v0 env, got {type(env).__name__}")
    env.validate_params(env_params)
    if float(env_params.season_amplitude) != 0.0:
        raise ValueError(f"{name} needs stationary demand: params.season_amplitude must be 0")
