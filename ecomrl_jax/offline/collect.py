"""One-step (contextual-bandit) logs from this project's simulators, with exact propensities.

Framing: each logged decision starts from a state drawn from the env's reset distribution; its
context is the env's observation there (flattened, `wrappers.flatten`), the behaviour policy
picks an action from the probabilities it gives for that context, and the reward is that one
step's reward. So the simulator knows each policy's true value (`true_value`, exact in the
action and reward noise, Monte-Carlo over contexts) and every estimator can be checked on it.

A policy is a function `context (d,) -> action probabilities (num_actions,)`. Policies built by
`softmax_policy`, `epsilon_greedy` and `uniform_policy` (and any pytree policy, such as a
`jax.tree_util.Partial` of a module-level function or a `LearnedPolicy`) are passed to the jitted
code as arguments, so new weights or mixture shares reuse its compilation; a plain function is
compiled once per function object. For a slate env
(ShopperRec-v0 with `slate_size > 1`) these probabilities define a Plackett-Luce ranking: the
slate is drawn without replacement in proportion to them, and a row's propensity is the exact
position-wise marginal P(item at position | context), as OBD logs it (`action_dist`), computed
by enumerating every ordered slate. Supported: ShopperRec-v0 (single item and slate),
DynamicPricing-v0 (one product, discrete prices, unlimited stock) and CouponCRM-v0.
"""

import itertools
import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecomrl_jax.envs.crm.coupon_crm import CouponCRM
from ecomrl_jax.envs.pricing.dynamic_pricing import DynamicPricing
from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec
from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.offline.data import LoggedBandit
from ecomrl_jax.wrappers import flatten

Partial = jax.tree_util.Partial
Policy = Callable[[jax.Array], jax.Array]  # context (d,) -> action probabilities (num_actions,)

MAX_SLATES = 100_000  # ordered slates enumerated per context for exact slate probabilities
BATCH = 4096  # decisions computed at once (bounds the memory of the slate enumeration)


def as_pytree(fn: Callable) -> Callable:
    """`fn` as a pytree that jit takes as an argument: itself when it is one (its leaves are
    arrays or numbers), else a `Partial` that holds it as static (hashed by identity)."""
    if all(isinstance(leaf, (jax.Array, np.ndarray, float, int)) for leaf in jax.tree.leaves(fn)):
        return fn
    return Partial(fn)


def softmax_policy(logits_fn: Callable[[jax.Array], jax.Array], temperature: float = 1.0) -> Policy:
    """softmax(logits_fn(context) / temperature): a stochastic policy around a score."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return Partial(_softmax, as_pytree(logits_fn), temperature)


def _softmax(logits_fn, temperature, context):
    return jax.nn.softmax(logits_fn(context) / temperature)


def epsilon_greedy(logits_fn: Callable[[jax.Array], jax.Array], epsilon: float) -> Policy:
    """The argmax of logits_fn(context) with probability 1 - epsilon, else uniform."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    return Partial(_epsilon_greedy, as_pytree(logits_fn), epsilon)


def _epsilon_greedy(logits_fn, epsilon, context):
    logits = logits_fn(context)
    greedy = jax.nn.one_hot(jnp.argmax(logits), logits.shape[-1])
    return (1.0 - epsilon) * greedy + epsilon / logits.shape[-1]


def uniform_policy(num_actions: int) -> Policy:
    """Every action (candidate) equally likely."""
    return Partial(_constant, jnp.full(num_actions, 1.0 / num_actions))


def _constant(probs, context):
    return probs


class _OneStep(NamedTuple):
    """What collect and true_value need from an env: its sizes, a reset state and the expected
    reward of an action (a slate of slots when len_list > 1) at each position."""

    num_actions: int
    len_list: int
    expected_reward: Callable  # (state, params, slate (len_list,)) -> (len_list,)


def _one_step(env) -> _OneStep:
    if isinstance(env, ShopperRec):
        return _OneStep(env.num_candidates, env.slate_size, partial(_shopper_expected, env))
    if isinstance(env, DynamicPricing):
        return _OneStep(env.num_prices, 1, partial(_pricing_expected, env))
    if isinstance(env, CouponCRM):
        return _OneStep(env.num_actions, 1, partial(_crm_expected, env))
    raise ValueError(f"one-step logs support ShopperRec-v0, DynamicPricing-v0 and CouponCRM-v0, "
                     f"got {getattr(env, 'name', type(env).__name__)}")


def _check_env(env, params) -> _OneStep:
    """Outside jit: the env's one-step spec, or a ValueError for a configuration it cannot log."""
    if isinstance(env, DynamicPricing):
        if env.continuous or env.num_products != 1:
            raise ValueError("DynamicPricing-v0 logs need one product and discrete prices "
                             f"(num_products=1, continuous=False), got num_products="
                             f"{env.num_products}, continuous={env.continuous}")
        if np.isfinite(np.asarray(params.initial_stock)).any():
            raise ValueError("DynamicPricing-v0 logs need unlimited stock (initial_stock=inf) for "
                             f"an exact expected reward, got initial_stock={params.initial_stock}")
    return _one_step(env)


def _shopper_expected(env: ShopperRec, state, params, slate):
    """Expected reward credited to each position: the multinomial logit click probability times
    the click's value. A click on an item shown twice is credited to its first slot, as
    `collect` credits it (it reads the clicked item, not the slot)."""
    items = state.candidates[slate]
    logits, affinity = env.click_logits(state.interest, items, params)
    logits = logits - params.position_bias * jnp.arange(slate.shape[0])
    click = jax.nn.softmax(jnp.append(logits, params.no_click_logit))[:-1]
    price = params.item_price[items]
    value = (params.click_weight + env.purchase_prob(affinity, price, params)
             * (params.purchase_weight + params.revenue_weight * price))
    first = jnp.argmax(items[None, :] == items[:, None], axis=1)
    return jnp.zeros(slate.shape[0]).at[first].add(click * value)


def _pricing_expected(env: DynamicPricing, state, params, slate):
    price, _ = env.action_to_price(slate[0], params)
    margin = price - params.reward_profit * env.per_product(params.unit_cost)
    return jnp.sum(margin * env.expected_demand(price, state, params))[None]


def _crm_expected(env: CouponCRM, state, params, slate):
    """Margin minus incentive if the customer buys, minus the contact cost; an action whose
    cost exceeds the budget is replaced by doing nothing, as the env does."""
    incentive, contact_cost, reserve = env.action_costs(state, params)
    a = jnp.where(reserve[slate[0]] > state.budget + params.budget_per_step, 0, slate[0])
    p_buy = env.purchase_probs(state, params)[a]
    return (p_buy * (params.margin_rate * state.basket - incentive[a]) - contact_cost[a])[None]


def all_slates(num_actions: int, len_list: int) -> np.ndarray:
    """(S, len_list) int32: every ordered slate of distinct actions (S = K!/(K-L)!)."""
    count = math.perm(num_actions, len_list)
    if count > MAX_SLATES:
        raise ValueError(f"{count} ordered slates of {len_list} from {num_actions} actions; exact "
                         f"slate probabilities enumerate at most {MAX_SLATES}")
    return np.array(list(itertools.permutations(range(num_actions), len_list)), np.int32)


def slate_probs(probs: jax.Array, slates: np.ndarray) -> jax.Array:
    """(S,) Plackett-Luce probability of each ordered slate (rows of `slates`) under `probs`
    (K,): the product over positions of the item's share of what is not yet placed. The share's
    denominator sums the unplaced items' probabilities directly (not 1 minus the placed ones,
    which cancels catastrophically in float32 when a sharp policy places most of the mass)."""
    slates = np.asarray(slates)
    placed = np.eye(probs.shape[-1], dtype=bool)[slates]  # (S, L, K)
    unplaced = ~(np.cumsum(placed, axis=1) - placed).astype(bool)  # not placed before position l
    left = jnp.einsum("slk,k->sl", unplaced.astype(np.float32), probs)
    p = probs[slates]
    return jnp.prod(jnp.where(left > 0, p / jnp.where(left > 0, left, 1.0), 0.0), axis=1)


def position_marginals(probs: jax.Array, len_list: int) -> jax.Array:
    """(K, len_list): P(item at position) under the Plackett-Luce ranking of `probs` (K,);
    for len_list 1 the probabilities themselves. Differentiable in `probs`."""
    if len_list == 1:
        return probs[:, None]
    slates = all_slates(probs.shape[-1], len_list)
    shown = np.eye(probs.shape[-1], dtype=np.float32)[slates]  # (S, len_list, K)
    return jnp.einsum("s,slk->kl", slate_probs(probs, slates), shown)


def action_dist(policy: Policy, context: jax.Array, len_list: int) -> jax.Array:
    """(n, num_actions, len_list) position-wise action distribution of `policy` on the rows'
    contexts (n, d): the layout the off-policy estimators take (as OBP's `action_dist`)."""
    return _action_dist(as_pytree(policy), context, len_list)


@partial(jax.jit, static_argnums=2)
def _action_dist(policy, context, len_list):
    return jax.lax.map(lambda x: position_marginals(policy(x), len_list), context, batch_size=BATCH)


def _reset(env, params, key):
    obs, state = env.reset(key, params)
    return flatten(obs), state


def collect(env, params, behavior_policy: Policy, key: jax.Array, n: int) -> LoggedBandit:
    """`n` one-step decisions of `behavior_policy` in `env`: n rows for single actions, n *
    len_list rows for slates (decision-major, positions 0..len_list-1), as OBD logs a slate.

    A slate row's reward is what the step earned at that position: the shopper clicks at most
    one shown item, so all other positions earn 0.
    """
    spec = _check_env(env, params)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (decisions to log), got {n!r}")
    len_list = spec.len_list
    context, slate, reward, propensity = _decisions(env, params, as_pytree(behavior_policy),
                                                    jax.random.split(key, n))
    rows = n * len_list
    return LoggedBandit(
        context=jnp.repeat(context, len_list, axis=0).astype(jnp.float32),
        action=slate.reshape(rows),
        position=jnp.tile(jnp.arange(len_list, dtype=jnp.int32), n),
        reward=reward.reshape(rows).astype(jnp.float32),
        propensity=propensity.reshape(rows).astype(jnp.float32),
        num_actions=spec.num_actions, len_list=len_list)


@partial(jax.jit, static_argnums=0)
def _decisions(env, params, policy, keys):
    """Per key: the context, the slate drawn by `policy`, each position's reward and propensity."""
    len_list = _one_step(env).len_list

    def decide(key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        context, state = _reset(env, params, k_reset)
        probs = policy(context)
        slate = jax.random.categorical(k_act, jnp.log(probs)) if len_list == 1 else \
            jax.lax.top_k(jnp.log(probs) + jax.random.gumbel(k_act, probs.shape), len_list)[1]
        slate = jnp.atleast_1d(slate).astype(jnp.int32)
        action = slate[0] if len_list == 1 else slate
        _, next_state, reward, _, info = env.step_env(k_step, state, action, params)
        if len_list == 1:
            rewards = reward[None]
        else:  # credit the click to the first slot showing the clicked item (ShopperRec history)
            clicked = (info["clicks"] > 0) & (state.candidates[slate] == next_state.history_items[0])
            rewards = reward * jax.nn.one_hot(jnp.argmax(clicked), len_list) * jnp.any(clicked)
        propensity = position_marginals(probs, len_list)[slate, jnp.arange(len_list)]
        return context, slate, rewards, propensity

    return jax.lax.map(decide, keys, batch_size=BATCH)


def true_value(env, params, eval_policy: Policy, key: jax.Array, n: int) -> tuple[float, float, float]:
    """`(value, low, high)`: the simulator's expected reward per logged row of `eval_policy`
    on this one-step framing, exact in the policy's action draw and the reward noise, averaged
    over `n` contexts drawn from the reset distribution, with a 95% interval over contexts.

    For slates the value is the expected total reward of the Plackett-Luce slate divided by
    len_list (rows per decision), so it is comparable with a log's mean row reward.
    """
    _check_env(env, params)
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (contexts, for an interval), got {n!r}")
    values = _context_values(env, params, as_pytree(eval_policy), jax.random.split(key, n))
    return confidence_interval(np.asarray(values))


@partial(jax.jit, static_argnums=0)
def _context_values(env, params, policy, keys):
    """Per key: the expected reward per row of `policy` at the context that key resets to."""
    spec = _one_step(env)
    slates = all_slates(spec.num_actions, spec.len_list)

    def value(key):
        context, state = _reset(env, params, key)
        weight = slate_probs(policy(context), slates)
        reward = jax.vmap(lambda s: spec.expected_reward(state, params, s))(jnp.asarray(slates))
        return weight @ jnp.sum(reward, axis=1) / spec.len_list

    return jax.lax.map(value, keys, batch_size=BATCH)
