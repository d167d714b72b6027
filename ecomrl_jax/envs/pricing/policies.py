"""Oracles and rule baselines for DynamicPricing-v0.

Policies follow `policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env, as
`ecomrl_jax.evaluation.evaluate` expects; oracles read the hidden demand params and the market
state. The predictive (explore-then-exploit regression) baseline needs memory across steps, so
it is its own rollout, `run_predictive`, with the same keys and outputs as `evaluate`.
`make_bandit_run` and `bandit_policy` let the algorithms of `learners.bandits` price the grid.
"""

from functools import cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammainc, gammaln, xlogy

from ecomrl_jax.envs.pricing.dynamic_pricing import DynamicPricing
from ecomrl_jax.wrappers import business_metric_names

SEARCH_POINTS = 257  # coarse grid of the continuous price search, before bisection
BISECTION_STEPS = 30  # the bracket (two grid spacings) shrinks by 2**-30, below float32 precision
MARKET_CONTEXT_DIM = 7  # bandit context: 1, five calendar features, competitor price


def price_to_action(env: DynamicPricing, params, price: jax.Array) -> jax.Array:
    """The action that charges `price` (num_products,): the price itself (clipped to the range)
    for a continuous env, else the index of the nearest grid price (the lower one on a tie)."""
    price = jnp.broadcast_to(jnp.asarray(price, jnp.float32), (env.num_products,))
    if env.continuous:
        return jnp.clip(price, env.per_product(params.min_price),
                        env.per_product(params.max_price))
    index = jnp.argmin(jnp.abs(env.price_grid(params) - price), axis=0)
    return _as_action(env, index)


def best_price(env: DynamicPricing, params, objective) -> tuple[jax.Array, jax.Array]:
    """`(price, action)` maximising `objective(prices (K, num_products)) -> (K, num_products)`
    per product (the objective must treat products independently).

    Discrete env: exact argmax over the price grid. Continuous env: argmax over SEARCH_POINTS
    evenly spaced prices, then bisection on the sign of the objective's derivative in the
    bracket of the two neighbouring points (exact to float32 precision of the price when the
    objective is unimodal in that bracket; comparing float32 values alone would stop ~1e-3 off).
    """
    if not env.continuous:
        grid = env.price_grid(params)
        index = jnp.argmax(objective(grid), axis=0)
        return grid[index, jnp.arange(env.num_products)], _as_action(env, index)
    lo, hi = env.per_product(params.min_price), env.per_product(params.max_price)
    grid = lo + (hi - lo) * jnp.linspace(0.0, 1.0, SEARCH_POINTS, dtype=jnp.float32)[:, None]
    coarse = grid[jnp.argmax(objective(grid), axis=0), jnp.arange(env.num_products)]
    spacing = (hi - lo) / (SEARCH_POINTS - 1)
    slope = jax.grad(lambda p: jnp.sum(objective(p[None])))

    def bisect(_, bracket):
        a, b = bracket
        mid = (a + b) / 2
        rising = slope(mid) > 0
        return jnp.where(rising, mid, a), jnp.where(rising, b, mid)

    a, b = jax.lax.fori_loop(0, BISECTION_STEPS, bisect, (jnp.maximum(coarse - spacing, lo),
                                                          jnp.minimum(coarse + spacing, hi)))
    fine = (a + b) / 2
    f_coarse, f_fine = objective(jnp.stack([coarse, fine]))
    price = jnp.where(f_fine >= f_coarse, fine, coarse)
    return price, price


def margin(env: DynamicPricing, params, price: jax.Array) -> jax.Array:
    """Reward per unit sold at `price`: price - reward_profit * unit_cost."""
    return price - params.reward_profit * env.per_product(params.unit_cost)


def myopic_price(env: DynamicPricing, state, params) -> tuple[jax.Array, jax.Array]:
    """`(price, action)` maximising this period's expected reward margin(p) * E[demand(p)] given
    the market state (season, competitor and reference price) and the true demand params.
    Stock is ignored (see `dp_policy` for the finite-stock optimum)."""
    return best_price(env, params, lambda p: margin(env, params, p)
                      * env.expected_demand(p, state, params))


def myopic_oracle(env: DynamicPricing, env_params):
    """Charge the myopic optimum every period (optimal when stock is unlimited and there is no
    reference-price effect, since then this period's price does not affect later periods)."""
    _require_pricing(env, "myopic_oracle")

    def policy_fn(key, obs, env_state, params):
        return myopic_price(env, env_state, params)[1]

    return policy_fn


def fixed_price_policy(env: DynamicPricing, env_params, price):
    """Always charge `price` (nearest grid price for a discrete env)."""
    _require_pricing(env, "fixed_price_policy")
    return lambda key, obs, env_state, params: price_to_action(env, params, price)


def cost_plus_policy(env: DynamicPricing, env_params, markup: float = 1.0):
    """Charge unit_cost * (1 + markup); the default markup 1.0 is keystone pricing."""
    _require_pricing(env, "cost_plus_policy")
    return lambda key, obs, env_state, params: price_to_action(
        env, params, env.per_product(params.unit_cost) * (1.0 + markup))


class DPTables(NamedTuple):
    value: jax.Array  # (num_products, T + 1, C + 1) optimal expected reward from period t, s left
    action: jax.Array  # (num_products, T, C + 1) int32 index into `prices` of the optimal price
    prices: jax.Array  # (K, num_products) candidate prices


def dp_tables(env: DynamicPricing, env_params, num_prices: int = 101) -> DPTables:
    """Finite-stock, finite-horizon optimum by backward induction (call outside jit).

    Needs stationary Poisson demand (no seasonality, holiday, competitor or reference effect),
    stochastic demand and an integer initial stock C; T = max_steps_in_episode. With margin m_k
    and mean demand lam_k of price k, V_T = 0 and
        V_t(s) = max_k  sum_{d<s} Pois(d; lam_k) (m_k d + V_{t+1}(s-d))
                        + P(D >= s) (m_k s + V_{t+1}(0)),
    i.e. sales = min(demand, stock). Prices: the env's grid, or `num_prices` evenly spaced prices
    for a continuous env (so there the optimum is over that grid). Products are independent.
    """
    _require_pricing(env, "dp_tables")
    _require_stationary_stock(env_params)
    horizon = int(env_params.max_steps_in_episode)
    capacity = int(np.max(env_params.initial_stock))
    if env.continuous:
        steps = jnp.linspace(0.0, 1.0, num_prices, dtype=jnp.float32)[:, None]
        lo, hi = env.per_product(env_params.min_price), env.per_product(env_params.max_price)
        prices = lo + (hi - lo) * steps
    else:
        prices = env.price_grid(env_params)
    _, state = env.reset(jax.random.key(0), env_params)
    lam = env.expected_demand(prices, state, env_params)
    value, action = _backward_induction(lam.T, margin(env, env_params, prices).T, horizon,
                                        capacity)
    return DPTables(value, action, prices)


@partial(jax.jit, static_argnames=("horizon", "capacity"))
def _backward_induction(lam, unit_margin, horizon, capacity):
    """Per product (rows of lam, unit_margin: (num_products, K)): value (T+1, C+1) and optimal
    price index (T, C+1)."""
    return jax.vmap(partial(_product_induction, horizon=horizon, capacity=capacity))(
        lam, unit_margin)


def _product_induction(lam, unit_margin, horizon, capacity):
    s = jnp.arange(capacity + 1)
    d = s.astype(jnp.float32)
    pmf = jnp.exp(xlogy(d, lam[:, None]) - lam[:, None] - gammaln(d + 1.0))  # (K, C+1) over d
    tail = jnp.where(s == 0, 1.0, gammainc(jnp.maximum(d, 1.0), lam[:, None]))  # P(D >= s)
    below = s[None, :] < s[:, None]  # [s, d]: demand d leaves stock
    left = jnp.clip(s[:, None] - s[None, :], 0, capacity)  # stock after selling d of s
    weight = jnp.where(below, pmf[:, None, :], 0.0)  # (K, C+1 s, C+1 d)

    def backward(v_next, _):
        sold_some = jnp.sum(weight * (unit_margin[:, None, None] * d + v_next[left]), axis=-1)
        q = sold_some + tail * (unit_margin[:, None] * d + v_next[0])  # (K, C+1)
        v = jnp.max(q, axis=0)
        return v, (v, jnp.argmax(q, axis=0).astype(jnp.int32))

    v_end = jnp.zeros(capacity + 1, jnp.float32)
    _, (value, action) = jax.lax.scan(backward, v_end, None, length=horizon, reverse=True)
    return jnp.concatenate([value, v_end[None]]), action


def dp_policy(env: DynamicPricing, env_params, num_prices: int = 101):
    """Charge the dynamic-programming optimum for the current period and remaining stock,
    looked up in `dp_tables(env, env_params, num_prices)` (computed once, here)."""
    tables = dp_tables(env, env_params, num_prices)
    last_period, capacity = tables.action.shape[1] - 1, tables.action.shape[2] - 1
    products = jnp.arange(env.num_products)

    def policy_fn(key, obs, env_state, params):
        t = jnp.clip(env_state.time, 0, last_period)
        s = jnp.clip(jnp.round(env_state.stock), 0, capacity).astype(jnp.int32)
        index = tables.action[products, t, s]
        return tables.prices[index, products] if env.continuous else _as_action(env, index)

    return policy_fn


def run_predictive(env: DynamicPricing, env_params, key, num_episodes: int, explore_steps: int,
                   model: str = "linear", max_steps: int | None = None) -> dict:
    """Explore-then-exploit regression baseline, rolled out like `evaluation.evaluate`.

    For the first `explore_steps` periods of each episode it charges uniformly random prices
    (random grid indices, or uniform on [min_price, max_price]) and accumulates least-squares
    statistics of sales on price per product: `model="linear"` fits sales = a + b p,
    `"loglinear"` fits log(1 + sales) = a + b log p. Afterwards it charges the price maximising
    margin(p) * fitted demand (clipped at 0), like `myopic_price`. Unit cost and the price range
    are known; the demand params are not. Keys and returns follow `evaluate` (same key, same
    market noise), so results compare on common random numbers with `evaluate`'s.
    """
    _require_pricing(env, "run_predictive")
    if model not in ("linear", "loglinear"):
        raise ValueError(f"model must be 'linear' or 'loglinear', got {model!r}")
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode)
    if num_episodes < 1 or not 2 <= explore_steps <= max_steps:
        raise ValueError(f"need num_episodes >= 1 and 2 <= explore_steps <= max_steps "
                         f"({max_steps}), got {num_episodes} and {explore_steps}")
    return _run_predictive(env, env_params, key, jnp.int32(explore_steps), num_episodes,
                           max_steps, model)


@partial(jax.jit, static_argnames=("env", "num_episodes", "max_steps", "model"))
def _run_predictive(env, params, key, explore_steps, num_episodes, max_steps, model):
    space = env.action_space(params)
    features = {"linear": lambda p, q: (p, q),
                "loglinear": lambda p, q: (jnp.log(p), jnp.log1p(q))}[model]

    def fitted_demand(stats, price):
        count, sx, sy, sxx, sxy = stats
        det = count * sxx - sx**2
        ok = det > 1e-6 * jnp.maximum(count * sxx, 1e-30)
        slope = jnp.where(ok, (count * sxy - sx * sy) / jnp.where(ok, det, 1.0), 0.0)
        intercept = (sy - slope * sx) / jnp.maximum(count, 1.0)
        x = price if model == "linear" else jnp.log(price)
        y = intercept + slope * x
        return jnp.maximum(y if model == "linear" else jnp.expm1(y), 0.0)

    def episode(episode_key):
        env_key, policy_key = jax.random.split(episode_key)
        reset_key, step_key = jax.random.split(env_key)
        obs, state = env.reset(reset_key, params)
        info = jax.eval_shape(lambda: env.step(step_key, state, space.sample(policy_key),
                                               params))[-1]
        names = ["return", "length"] + business_metric_names(info)

        def step(carry, t):
            state, alive, totals, stats = carry
            _, exploit = best_price(env, params, lambda p: margin(env, params, p)
                                    * fitted_demand(stats, p))
            explore = t < explore_steps
            action = jnp.where(explore, space.sample(jax.random.fold_in(policy_key, t)), exploit)
            _, state, reward, terminated, truncated, info = env.step(
                jax.random.fold_in(step_key, t), state, action, params)
            x, y = features(info["price_per_product"], info["sales_per_product"])
            seen = jnp.stack([jnp.ones_like(x), x, y, x * x, x * y])
            stats = stats + jnp.where(explore & alive, seen, 0.0)
            values = {"return": reward, "length": 1.0, **info}
            totals = {k: totals[k] + jnp.where(alive, jnp.asarray(values[k], jnp.float32), 0.0)
                      for k in names}
            return (state, alive & ~(terminated | truncated), totals, stats), None

        totals = {k: jnp.zeros((), jnp.float32) for k in names}
        stats = jnp.zeros((5, env.num_products), jnp.float32)
        (_, _, totals, _), _ = jax.lax.scan(step, (state, jnp.bool_(True), totals, stats),
                                            jnp.arange(max_steps))
        return totals

    episode_keys = jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(num_episodes))
    return jax.vmap(episode)(episode_keys)


class _BanditView:
    """DynamicPricing-v0 as the `learners.bandits` algorithms see it: one arm per grid price,
    contexts from the observation (`bandit_contexts`) or none, unbounded rewards."""

    def __init__(self, env: DynamicPricing, contextual: bool):
        self.num_arms = env.num_prices
        self.context_dim = MARKET_CONTEXT_DIM if contextual else 1
        self.is_contextual = contextual
        self.name = f"{env.name} (contextual={contextual})"

    def reward_range(self, params) -> None:
        return None  # Poisson sales: no upper bound, so UCB1 and Beta-Bernoulli TS refuse


def bandit_contexts(env: DynamicPricing, obs: jax.Array, contextual: bool) -> jax.Array:
    """(num_prices, context_dim) contexts shared by every arm: `[1]`, or with `contextual`
    `[1, sin, cos of the week and year phases, holiday flag, competitor price / max_price]`,
    read from the observation (revenue at a fixed price is about linear in these)."""
    if not contextual:
        return jnp.ones((env.num_prices, 1), jnp.float32)
    x = jnp.concatenate([jnp.ones(1, jnp.float32), obs[:5], obs[5 + 2 * env.history_len][None]])
    return jnp.broadcast_to(x, (env.num_prices, x.size))


def make_bandit_run(algo, env: DynamicPricing, env_params, num_rounds: int,
                    contextual: bool = False):
    """`run(key) -> (final algorithm state, rewards (num_rounds,))`: a bandit algorithm of
    `learners.bandits` prices `num_rounds` periods in one `lax.scan`, arm = grid index, reward =
    the env's reward; episodes follow one another (the env auto-resets). One product on a
    price grid only; algorithms that need bounded rewards (UCB1, BernoulliThompson) refuse."""
    _require_grid(env, "make_bandit_run")
    if (isinstance(num_rounds, bool) or not isinstance(num_rounds, (int, np.integer))
            or num_rounds < 1):
        raise ValueError(f"num_rounds must be a positive int, got {num_rounds!r}")
    view = _BanditView(env, contextual)
    algo.validate()
    algo.check_env(view, env_params)

    def one_round(carry, key):
        obs, env_state, state = carry
        k_select, k_update, k_env = jax.random.split(key, 3)
        contexts = bandit_contexts(env, obs, contextual)
        arm = algo.select(state, k_select, contexts)
        obs, env_state, reward, *_ = env.step(k_env, env_state, arm, env_params)
        return (obs, env_state, algo.update(state, k_update, arm, contexts, reward)), reward

    def run(key):
        k_reset, k_rounds = jax.random.split(key)
        obs, env_state = env.reset(k_reset, env_params)
        carry = (obs, env_state, algo.init(view, env_params))
        (_, _, state), rewards = jax.lax.scan(one_round, carry,
                                              jax.random.split(k_rounds, num_rounds))
        return state, rewards

    return run


def bandit_policy(algo, env: DynamicPricing, state, contextual: bool = False):
    """`policy_fn` for `evaluate`: the algorithm's own `select` with its trained `state` frozen
    (no further updates). A `Partial` over (algo, state), so many states share one compile."""
    _require_grid(env, "bandit_policy")
    return jax.tree_util.Partial(_bandit_policy_fn(env, contextual), algo, state)


@cache
def _bandit_policy_fn(env: DynamicPricing, contextual: bool):
    def policy_fn(algo, state, key, obs, env_state, params):
        return algo.select(state, key, bandit_contexts(env, obs, contextual))

    return policy_fn


def _as_action(env: DynamicPricing, index: jax.Array) -> jax.Array:
    """Grid indices (num_products,) as the env's action: a scalar for one product."""
    index = index.astype(jnp.int32)
    return index[0] if env.num_products == 1 else index


def _require_pricing(env, name: str) -> None:
    if not isinstance(env, DynamicPricing):
        raise ValueError(f"{name} supports only an unwrapped DynamicPricing-v0 env (it reads its "
                         f"demand model and state), got {type(env).__name__}")


def _require_grid(env, name: str) -> None:
    _require_pricing(env, name)
    if env.continuous or env.num_products != 1:
        raise ValueError(f"{name} needs one product on a price grid (arms = grid prices), got "
                         f"num_products={env.num_products}, continuous={env.continuous}")


def _require_stationary_stock(params) -> None:
    """dp_tables' assumptions, each checked with a message naming the param."""
    for field in ("weekly_amplitude", "yearly_amplitude", "holiday_lift", "competitor_effect",
                  "reference_gain", "reference_loss"):
        if np.any(np.asarray(getattr(params, field)) != 0):
            raise ValueError(f"dp_tables needs stationary demand: params.{field} must be 0, "
                             f"got {getattr(params, field)!r}")
    if not np.all(np.asarray(params.stochastic_demand)):
        raise ValueError("dp_tables needs Poisson demand: params.stochastic_demand must be True")
    stock = np.asarray(params.initial_stock, np.float64)
    if not np.all(np.isfinite(stock)) or np.any(stock != np.round(stock)) or np.any(stock < 1):
        raise ValueError(f"dp_tables needs a finite integer stock: params.initial_stock must be "
                         f"an integer >= 1, got {params.initial_stock!r}")
