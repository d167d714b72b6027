"""CouponCRM: weekly contact and coupon decisions for one customer over their lifetime.

Each week the shop sees what it records about a customer (recency, frequency, monetary value,
past contacts and responses) and does nothing, mails, sends a coupon at one of a few discount
levels, or offers free shipping. Incentives raise the purchase probability by the customer's
hidden discount sensitivity but cost margin; contacts build fatigue; neglect lets engagement
decay. Churn hazard rises with both low engagement and high fatigue, and churn is absorbing,
so the return is the customer's lifetime value. See docs/envs/coupon_crm.md.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, HorizonEndsEpisode, check_shapes
from ecomrl_jax.rules import (FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, UNIT_INTERVAL,
                              at_least, check, check_value, in_range)
from ecomrl_jax.spaces import check_action

RFM_DECAY = 0.9  # smoothing of the observed frequency, monetary, contact and response averages
MONETARY_SCALE = 100.0  # observed monetary value is divided by this
WEEKS_CAP = 104.0  # observed recency and weeks since contact are capped here, then / 52
NUM_OBS = 9


@struct.dataclass
class EnvState(environment.EnvState):
    purchase_logit: jax.Array  # () customer's base weekly purchase logit (hidden)
    basket: jax.Array  # () basket value at list price (observed: monetary at reset)
    sensitivity: jax.Array  # () discount sensitivity >= 0 (hidden)
    churn_logit: jax.Array  # () base weekly churn logit (hidden)
    engagement: jax.Array  # () in [0, 1], decays with neglect (hidden)
    fatigue: jax.Array  # () >= 0, rises with contacts and decays (hidden)
    weeks_since_purchase: jax.Array  # ()
    weeks_since_contact: jax.Array  # ()
    frequency: jax.Array  # () smoothed purchases per week
    monetary: jax.Array  # () smoothed amount paid per purchase
    contact_rate: jax.Array  # () smoothed contacts per week
    mail_response: jax.Array  # () smoothed purchase rate in weeks with a plain mail
    incentive_response: jax.Array  # () smoothed purchase rate in coupon / free-shipping weeks
    budget: jax.Array  # () unspent marketing budget carried into the next week (inf if unlimited)
    churned: jax.Array  # () bool, absorbing


@struct.dataclass
class EnvParams:
    customer_purchase_logit: jax.Array  # (num_customers,) base weekly purchase logit
    customer_basket: jax.Array  # (num_customers,) basket value at list price, > 0
    customer_sensitivity: jax.Array  # (num_customers,) discount sensitivity, >= 0
    customer_churn_logit: jax.Array  # (num_customers,) base weekly churn logit
    customer_engagement: jax.Array  # (num_customers,) engagement at acquisition, in [0, 1]
    coupon_discounts: jax.Array  # (num_coupons,) discount fraction of each coupon, in (0, 1)
    margin_rate: float = 0.35
    engagement_weight: float = 2.0
    coupon_lift: float = 10.0
    shipping_lift: float = 1.0
    contact_lift: float = 0.3
    fatigue_purchase: float = 0.3
    engagement_decay: float = 0.9
    purchase_engagement: float = 0.6
    contact_engagement: float = 0.3
    fatigue_decay: float = 0.6
    churn_neglect: float = 2.5
    churn_fatigue: float = 0.4
    mail_cost: float = 0.5
    shipping_cost: float = 6.0
    budget_per_step: float = float("inf")
    max_steps_in_episode: int = 78


# Valid values of every field (checked by `validate_params`, outside jit).
PARAM_RULES = {
    "customer_purchase_logit": FINITE,
    "customer_basket": POSITIVE,
    "customer_sensitivity": NON_NEGATIVE,
    "customer_churn_logit": FINITE,
    "customer_engagement": UNIT_INTERVAL,
    "coupon_discounts": in_range(0, 1, low_open=True, high_open=True),
    "margin_rate": UNIT_INTERVAL,
    "engagement_weight": NON_NEGATIVE,
    "coupon_lift": NON_NEGATIVE,
    "shipping_lift": NON_NEGATIVE,
    "contact_lift": NON_NEGATIVE,
    "fatigue_purchase": NON_NEGATIVE,
    "engagement_decay": UNIT_INTERVAL,
    "purchase_engagement": UNIT_INTERVAL,
    "contact_engagement": UNIT_INTERVAL,
    "fatigue_decay": UNIT_INTERVAL,
    "churn_neglect": NON_NEGATIVE,
    "churn_fatigue": NON_NEGATIVE,
    "mail_cost": NON_NEGATIVE,
    "shipping_cost": NON_NEGATIVE,
    "budget_per_step": at_least(0, allow_inf=True),  # inf: unlimited
    "max_steps_in_episode": POSITIVE_INT,
}
# Fields `make_params` may override: those with defaults (the rest are drawn from the key).
SCALAR_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(EnvParams)
                            if f.default is not dataclasses.MISSING)


class CouponCRM(HorizonEndsEpisode, CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """One customer per env; a population is a vmap. Actions: 0 nothing, 1 mail,
    2 .. num_coupons + 1 coupon at `params.coupon_discounts[a - 2]`,
    num_coupons + 2 free shipping."""

    out_of_range_action = "ignore"  # an invalid action does nothing, as action 0
    param_rules = PARAM_RULES

    def __init__(self, num_customers: int = 1000, num_coupons: int = 3):
        check_value(num_customers, POSITIVE_INT, "CouponCRM.num_customers")
        check_value(num_coupons, POSITIVE_INT, "CouponCRM.num_coupons")
        self.num_customers = num_customers
        self.num_coupons = num_coupons

    @property
    def name(self) -> str:
        return "CouponCRM-v0"

    @property
    def num_actions(self) -> int:
        return self.num_coupons + 3

    @property
    def shipping_action(self) -> int:
        return self.num_coupons + 2

    @property
    def default_params(self) -> EnvParams:
        return self.make_params(jax.random.key(0))

    def make_params(self, key: jax.Array, **overrides: Any) -> EnvParams:
        """Draw a customer population from `key`; jittable and vmappable.

        A third of customers are deal seekers (sensitivity about 1.5), the rest barely react
        to discounts (about 0.15); see the env card for every distribution.
        """
        k_rate, k_basket, k_seeker, k_sens, k_churn, k_eng = jax.random.split(key, 6)
        c = self.num_customers
        seeker = jax.random.uniform(k_seeker, (c,)) < 1.0 / 3.0
        sensitivity = jnp.where(seeker, 1.5, 0.15) * jnp.exp(0.3 * jax.random.normal(k_sens, (c,)))
        params = EnvParams(
            customer_purchase_logit=-3.5 + 0.6 * jax.random.normal(k_rate, (c,)),
            customer_basket=jnp.exp(jnp.log(60.0) + 0.4 * jax.random.normal(k_basket, (c,))),
            customer_sensitivity=sensitivity,
            customer_churn_logit=-5.5 + 0.5 * jax.random.normal(k_churn, (c,)),
            customer_engagement=jax.random.uniform(k_eng, (c,), minval=0.5, maxval=1.0),
            coupon_discounts=jnp.linspace(0.1, 0.1 * self.num_coupons, self.num_coupons),
        )
        unknown = set(overrides) - set(SCALAR_PARAM_FIELDS)
        if unknown:
            raise ValueError(f"unknown CouponCRM params {sorted(unknown)}; "
                             f"valid: {list(SCALAR_PARAM_FIELDS)}")
        return params.replace(**overrides)

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        c, k = self.num_customers, self.num_coupons
        check_shapes(params, {"customer_purchase_logit": (c,), "customer_basket": (c,),
                              "customer_sensitivity": (c,), "customer_churn_logit": (c,),
                              "customer_engagement": (c,), "coupon_discounts": (k,)},
                     "CouponCRM.params", f"num_customers={c}, num_coupons={k}")
        check(params, PARAM_RULES, "CouponCRM.params")

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """A customer drawn uniformly from the population, just acquired by a first purchase."""
        i = jax.random.randint(key, (), 0, self.num_customers)
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        state = EnvState(
            time=jnp.int32(0),
            purchase_logit=f32(params.customer_purchase_logit[i]),
            basket=f32(params.customer_basket[i]),
            sensitivity=f32(params.customer_sensitivity[i]),
            churn_logit=f32(params.customer_churn_logit[i]),
            engagement=f32(params.customer_engagement[i]),
            fatigue=f32(0.0),
            weeks_since_purchase=f32(0.0),
            weeks_since_contact=f32(0.0),
            frequency=f32(1.0 - RFM_DECAY),
            monetary=f32(params.customer_basket[i]),
            contact_rate=f32(0.0),
            mail_response=f32(0.0),
            incentive_response=f32(0.0),
            budget=f32(0.0),
            churned=jnp.bool_(False),
        )
        return self.get_obs(state, params), state

    def action_effects(self, params: EnvParams):
        """Per action (num_actions,): contact (0/1), discount fraction, free shipping (0/1)."""
        a = jnp.arange(self.num_actions)
        contact = (a >= 1).astype(jnp.float32)
        coupon = (a >= 2) & (a < self.shipping_action)
        level = jnp.clip(a - 2, 0, self.num_coupons - 1)
        discount = jnp.where(coupon, params.coupon_discounts[level], 0.0).astype(jnp.float32)
        shipping = (a == self.shipping_action).astype(jnp.float32)
        return contact, discount, shipping

    def purchase_probs(self, state: EnvState, params: EnvParams) -> jax.Array:
        """P(purchase this week) for every action (num_actions,), given the pre-step state."""
        contact, discount, shipping = self.action_effects(params)
        fatigue = params.fatigue_decay * state.fatigue + contact
        logit = (state.purchase_logit + params.engagement_weight * state.engagement
                 - params.fatigue_purchase * fatigue + params.contact_lift * contact
                 + state.sensitivity * (params.coupon_lift * discount
                                        + params.shipping_lift * shipping))
        return jax.nn.sigmoid(logit)

    def action_costs(self, state: EnvState, params: EnvParams):
        """Per action (num_actions,): incentive cost if the customer buys, contact cost, and
        the amount reserved against the budget (contact cost + incentive cost)."""
        contact, discount, shipping = self.action_effects(params)
        incentive = discount * state.basket + shipping * params.shipping_cost
        contact_cost = contact * params.mail_cost
        return incentive, contact_cost, incentive + contact_cost

    @staticmethod
    def churn_hazard(engagement: jax.Array, fatigue: jax.Array, churn_logit: jax.Array,
                     params: EnvParams) -> jax.Array:
        """Weekly churn probability: rises as engagement falls (neglect) and, with the square of
        fatigue, steeply under over-contact."""
        return jax.nn.sigmoid(churn_logit + params.churn_neglect * (1.0 - engagement)
                              + params.churn_fatigue * fatigue**2)

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        action = check_action(self.name, action, (), integer=True)
        k_buy, k_churn = jax.random.split(key)
        valid = (action >= 0) & (action < self.num_actions)
        a = jnp.where(valid, action, 0).astype(jnp.int32)
        budget = state.budget + params.budget_per_step
        incentive, contact_cost, reserve = self.action_costs(state, params)
        blocked = reserve[a] > budget
        a = jnp.where(blocked, 0, a)
        contact, discount, shipping = (x[a] for x in self.action_effects(params))

        bought = jax.random.uniform(k_buy) < self.purchase_probs(state, params)[a]
        buy = bought.astype(jnp.float32)
        revenue = buy * state.basket * (1.0 - discount)
        margin = buy * params.margin_rate * state.basket
        coupon_cost = buy * incentive[a]
        reward = margin - coupon_cost - contact_cost[a]

        fatigue = params.fatigue_decay * state.fatigue + contact
        engagement = params.engagement_decay * state.engagement
        engagement = engagement + buy * params.purchase_engagement * (1.0 - engagement)
        engagement = engagement + contact * params.contact_engagement * (1.0 - engagement)
        hazard = self.churn_hazard(engagement, fatigue, state.churn_logit, params)
        churn = jax.random.uniform(k_churn) < hazard
        incentive_sent = ((discount > 0) | (shipping > 0)).astype(jnp.float32)
        mail = contact - incentive_sent
        new = state.replace(
            time=state.time + 1,
            engagement=engagement,
            fatigue=fatigue,
            weeks_since_purchase=jnp.where(bought, 0.0, state.weeks_since_purchase + 1.0),
            weeks_since_contact=jnp.where(contact > 0, 0.0, state.weeks_since_contact + 1.0),
            frequency=_smooth(state.frequency, buy, 1.0),
            monetary=_smooth(state.monetary, revenue, buy),
            contact_rate=_smooth(state.contact_rate, contact, 1.0),
            mail_response=_smooth(state.mail_response, buy, mail),
            incentive_response=_smooth(state.incentive_response, buy, incentive_sent),
            budget=budget - contact_cost[a] - coupon_cost,
            churned=churn,
        )
        # Churn is absorbing: a churned customer's state stays put and earns nothing.
        gone = state.churned
        new = jax.tree.map(lambda old, x: jnp.where(gone, old, x), state, new)
        new = new.replace(time=state.time + 1)
        live = (~gone).astype(jnp.float32)
        info = {"purchases": live * buy, "revenue": live * revenue, "margin": live * margin,
                "coupon_cost": live * coupon_cost, "contact_cost": live * contact_cost[a],
                "contacts": live * contact, "churned": live * churn.astype(jnp.float32),
                "invalid_actions": live * (~valid).astype(jnp.float32),
                "budget_blocked": live * blocked.astype(jnp.float32)}
        return (self.get_obs(new, params), new, (live * reward).astype(jnp.float32),
                new.churned, info)

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        """RFM and contact history, scaled to O(1); see the env card for the columns."""
        largest = jnp.max(self.action_costs(state, params)[2])
        affordable = jnp.minimum(state.budget + params.budget_per_step, largest) / largest
        return jnp.stack([
            jnp.minimum(state.weeks_since_purchase, WEEKS_CAP) / 52.0,
            state.frequency,
            state.monetary / MONETARY_SCALE,
            state.contact_rate,
            state.mail_response,
            state.incentive_response,
            jnp.minimum(state.weeks_since_contact, WEEKS_CAP) / 52.0,
            state.time / params.max_steps_in_episode,
            affordable,
        ]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.churned

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, jnp.inf, (NUM_OBS,), jnp.float32)


def _smooth(average: jax.Array, value: jax.Array, weight: jax.Array) -> jax.Array:
    """Exponential average with decay RFM_DECAY, updated only where `weight` is 1."""
    return average + weight * (1.0 - RFM_DECAY) * (value - average)
