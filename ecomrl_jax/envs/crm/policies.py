"""Rule-based policies for CouponCRM-v0: never contact, always discount, RFM segment rules and
a myopic uplift policy that knows the customer's hidden latents.

Each factory returns `policy_fn(key, obs, env_state, env_params) -> action` for one
unbatched env, as `ecomrl_jax.evaluation.evaluate` expects.
"""

import jax.numpy as jnp

from ecomrl_jax.envs.crm.coupon_crm import MONETARY_SCALE, CouponCRM


def never_contact(env, env_params):
    """Action 0 every week: no mail, no coupon."""
    _require_crm(env, "never_contact")

    def policy_fn(key, obs, env_state, params):
        return jnp.int32(0)

    return policy_fn


def always_discount(env, env_params, level: int = 0):
    """A coupon at `params.coupon_discounts[level]` every week."""
    _require_crm(env, "always_discount")
    if not 0 <= level < env.num_coupons:
        raise ValueError(f"level must lie in [0, num_coupons={env.num_coupons}), got {level}")

    def policy_fn(key, obs, env_state, params):
        return jnp.int32(2 + level)

    return policy_fn


def rfm_rules(env, env_params, active_weeks: float = 4.0, contact_gap: float = 4.0,
              high_value: float = 70.0, level: int = 0):
    """Segment rules a CRM team would write, from the observation only.

    Active customers (bought within `active_weeks`) and those contacted within `contact_gap`
    weeks get nothing; other lapsing customers get a coupon at `level` if their smoothed
    basket is at least `high_value`, else a plain mail.
    """
    _require_crm(env, "rfm_rules")
    if not 0 <= level < env.num_coupons:
        raise ValueError(f"level must lie in [0, num_coupons={env.num_coupons}), got {level}")

    def policy_fn(key, obs, env_state, params):
        recency, weeks_since_contact = obs[0] * 52.0, obs[6] * 52.0
        lapsing = (recency >= active_weeks) & (weeks_since_contact >= contact_gap)
        offer = jnp.where(obs[2] * MONETARY_SCALE >= high_value, 2 + level, 1)
        return jnp.where(lapsing, offer, 0).astype(jnp.int32)

    return policy_fn


def expected_rewards(env, env_state, params):
    """Expected reward of each action this week (num_actions,), knowing the hidden latents;
    actions the budget would block are -inf."""
    incentive, contact_cost, reserve = env.action_costs(env_state, params)
    value = (env.purchase_probs(env_state, params)
             * (params.margin_rate * env_state.basket - incentive) - contact_cost)
    affordable = reserve <= env_state.budget + params.budget_per_step
    return jnp.where(affordable, value, -jnp.inf)


def myopic_uplift(env, env_params):
    """The action with the best expected reward this week (margin minus incentive cost),
    from the known model and the customer's latents in `env_state`; blind to churn."""
    _require_crm(env, "myopic_uplift")

    def policy_fn(key, obs, env_state, params):
        return jnp.argmax(expected_rewards(env, env_state, params)).astype(jnp.int32)

    return policy_fn


def _require_crm(env, name: str) -> None:
    if not isinstance(env, CouponCRM):
        raise ValueError(f"{name} supports only an unwrapped CouponCRM-v0 env, "
                         f"got {type(env).__name__}")
