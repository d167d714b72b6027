"""Perfect-foresight oracle for SupplyChain-v1: the best plan when the episode's demand is known.

`episode_demands` replays the demand the env draws in the episodes of `evaluate(..., key, ...)`;
`perfect_foresight` solves one episode with that demand as a linear program (the chain's
dynamics as constraints, OR-Gym's discounted profit as the objective), an upper bound that no
causal policy reaches; `open_loop_policy` replays the plan's orders in the env.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linprog

from ecomrl_jax.envs.inventory.supply_chain import SupplyChain


class ForesightSolution(NamedTuple):
    discounted_profit: float  # the LP objective: OR-Gym's episode reward, sum of alpha**t * profit
    profit: float  # the same plan's undiscounted episode profit
    orders: np.ndarray  # (T, num_stages) whole orders; open loop, the env earns the two above


def episode_demands(env: SupplyChain, env_params, key, num_episodes: int,
                    max_steps: int | None = None) -> np.ndarray:
    """Customer demand, shape (num_episodes, max_steps), of the episodes that
    `ecomrl_jax.evaluation.evaluate(env, env_params, policy, key, num_episodes)` runs: the env's
    own draws from evaluate's keys (episode `fold_in(key, i)`, step `fold_in(step_key, t)`,
    split once by gymnax's `step`). Demand never depends on the orders, so it is the same
    for every policy."""
    _require_supply_chain(env)
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode)
    return np.asarray(_demands(env, env_params, key, num_episodes, max_steps), np.float64)


@functools.partial(jax.jit, static_argnames=("env", "num_episodes", "max_steps"))
def _demands(env, env_params, key, num_episodes, max_steps):
    """`lax.map`, not `vmap`: the sampler's while loop compiles several times faster unbatched."""
    def draw(index):
        episode, t = index // max_steps, index % max_steps
        env_key, _ = jax.random.split(jax.random.fold_in(key, episode))
        _, step_key = jax.random.split(env_key)
        step_env_key, _ = jax.random.split(jax.random.fold_in(step_key, t))
        return env.sample_demand(step_env_key, t, env_params)

    demand = jax.lax.map(draw, jnp.arange(num_episodes * max_steps))
    return demand.reshape(num_episodes, max_steps)


def perfect_foresight(env: SupplyChain, env_params, demand) -> ForesightSolution:
    """Most discounted profit over `len(demand)` periods from the env's reset state when the
    customer demand of every period is known (`scipy.optimize.linprog`, HiGHS).

    Variables per period t: shipment x[t, i] to each stage (0 <= x <= capacity, at most what
    the supplier held at the start of the period), end-of-period stock I[t, i] >= 0 (arrivals
    after each stage's lead time), retail sales s[t] and unmet demand u[t] (the backlog, or
    lost: s[t] + u[t] = demand[t] + u[t - 1] with backlog, demand[t] without). Ordering more
    than is shipped only adds shortage cost, so orders equal shipments. The constraints form a
    network flow with whole data, so the optimum is whole.
    """
    _require_supply_chain(env)
    env.validate_params(env_params)
    demand = np.asarray(demand, np.float64)
    if demand.ndim != 1 or demand.size < 1 or np.any(demand < 0) or not np.all(np.isfinite(demand)):
        raise ValueError(f"demand must be a 1-D array of finite quantities >= 0, got {demand!r}")
    horizon, n = demand.size, env.num_stages
    p = {f: np.asarray(getattr(env_params, f), np.float64) for f in (
        "initial_inventory", "unit_cost", "shortage_cost", "holding_cost", "supply_capacity")}
    backlog = bool(env_params.backlog)
    # variable index: per period [x (n), I (n), s, u]
    width = 2 * n + 2

    def x(t, i):
        return t * width + i

    def stock(t, i):
        return t * width + n + i

    def sales(t):
        return t * width + 2 * n

    def unmet(t):
        return t * width + 2 * n + 1

    size = horizon * width
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for t in range(horizon):
        for i in range(n):  # I[t, i] = I[t-1, i] + arrivals - outflow
            row = np.zeros(size)
            row[stock(t, i)] = 1.0
            rhs = 0.0
            if t:
                row[stock(t - 1, i)] = -1.0
            else:
                rhs = p["initial_inventory"][i]
            if t >= env.lead_times[i]:
                row[x(t - env.lead_times[i], i)] -= 1.0
            row[sales(t) if i == 0 else x(t, i - 1)] += 1.0
            a_eq.append(row)
            b_eq.append(rhs)
        row = np.zeros(size)  # customers: s + u = demand (+ last backlog)
        row[sales(t)] = row[unmet(t)] = 1.0
        if backlog and t:
            row[unmet(t - 1)] = -1.0
        a_eq.append(row)
        b_eq.append(demand[t])
        for i in range(n - 1):  # a supplier ships from its stock at the start of the period
            row = np.zeros(size)
            row[x(t, i)] = 1.0
            rhs = 0.0
            if t:
                row[stock(t - 1, i + 1)] = -1.0
            else:
                rhs = p["initial_inventory"][i + 1]
            a_ub.append(row)
            b_ub.append(rhs)
    profit = np.zeros((horizon, width))  # per-period profit coefficients
    profit[:, n - 1] = -p["unit_cost"][n]
    profit[:, n:2 * n] = -p["holding_cost"]
    profit[:, 2 * n] = float(env_params.price)
    profit[:, 2 * n + 1] = -p["shortage_cost"][0]
    discount = float(env_params.alpha) ** np.arange(horizon)
    bounds = [(0.0, p["supply_capacity"][i]) if i < n else (0.0, None)
              for _ in range(horizon) for i in range(width)]
    result = linprog(-(discount[:, None] * profit).ravel(), A_ub=np.array(a_ub) if a_ub else None,
                     b_ub=b_ub if b_ub else None, A_eq=np.array(a_eq), b_eq=b_eq, bounds=bounds,
                     method="highs")
    if result.status != 0:
        raise RuntimeError(f"the perfect-foresight LP failed: {result.message}")
    plan = result.x.reshape(horizon, width)
    return ForesightSolution(float(-result.fun), float(np.sum(profit * plan)),
                             np.rint(plan[:, :n]))


def open_loop_policy(env: SupplyChain, orders):
    """Order `orders[time]` (shape (T, num_stages)) whatever happens: replays a plan."""
    _require_supply_chain(env)
    return jax.tree_util.Partial(_open_loop_fn(env), jnp.asarray(orders, jnp.float32))


@functools.cache
def _open_loop_fn(env):
    def policy_fn(orders, key, obs, env_state, params):
        return env.order_action(orders[jnp.minimum(env_state.time, orders.shape[0] - 1)], params)

    return policy_fn


def _require_supply_chain(env) -> None:
    if not isinstance(env, SupplyChain):
        raise ValueError(f"the perfect-foresight oracle needs an unwrapped SupplyChain-v1 env, "
                         f"got {type(env).__name__}")
