"""ShopperRec: recommendation to simulated shoppers with drifting interests and finite patience.

Each step the shop sees a shopper's recent clicks and a set of candidate items, and shows
one item or an ordered slate. The shopper picks at most one shown item by a multinomial
logit with position bias, may buy it, drifts toward it, and spends patience; high-quality
clicks restore patience and clickbait drains it, so a myopic click-maximiser ends
sessions early. See docs/envs/shopper_rec.md.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, HorizonEndsEpisode, check_shapes
from ecomrl_jax.rules import (FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                              UNIT_INTERVAL, check, check_value)
from ecomrl_jax.spaces import Slate, check_action, shown_slots


@struct.dataclass
class EnvState(environment.EnvState):
    interest: jax.Array  # (embed_dim,) latent interest, hidden from the agent
    patience: jax.Array  # () session ends when it reaches 0
    candidates: jax.Array  # (num_candidates,) item ids offered this step
    history_items: jax.Array  # (history_len,) last clicked item ids, newest first
    history_purchased: jax.Array  # (history_len,) 1.0 where the click became a purchase
    history_valid: jax.Array  # (history_len,) 1.0 where the slot holds a click


@struct.dataclass
class EnvParams:
    item_embedding: jax.Array  # (num_items, embed_dim), unit norm
    item_category: jax.Array  # (num_items,) int32
    item_price: jax.Array  # (num_items,) > 0
    item_appeal: jax.Array  # (num_items,) click-logit bonus
    item_quality: jax.Array  # (num_items,) in [0, 1]
    shopper_interest: jax.Array  # (num_shoppers, embed_dim) population to draw from
    affinity_scale: float = 4.0
    no_click_logit: float = 1.0
    position_bias: float = 0.5
    purchase_bias: float = -1.0
    purchase_affinity: float = 3.0
    purchase_price: float = 0.02
    interest_drift: float = 0.1
    patience_init: float = 1.0
    patience_step_cost: float = 0.05
    quality_effect: float = 0.6
    quality_threshold: float = 0.5
    click_weight: float = 1.0
    purchase_weight: float = 1.0
    revenue_weight: float = 0.0
    max_steps_in_episode: int = 50


# Valid values of every field (checked by `validate_params`, outside jit).
PARAM_RULES = {
    "item_embedding": FINITE,
    "item_category": NON_NEGATIVE_INT,  # and < num_categories
    "item_price": POSITIVE,
    "item_appeal": FINITE,
    "item_quality": UNIT_INTERVAL,
    "shopper_interest": FINITE,
    "affinity_scale": NON_NEGATIVE,
    "no_click_logit": FINITE,
    "position_bias": NON_NEGATIVE,
    "purchase_bias": FINITE,
    "purchase_affinity": NON_NEGATIVE,
    "purchase_price": NON_NEGATIVE,
    "interest_drift": UNIT_INTERVAL,
    "patience_init": POSITIVE,
    "patience_step_cost": NON_NEGATIVE,
    "quality_effect": NON_NEGATIVE,
    "quality_threshold": UNIT_INTERVAL,  # item quality's range
    "click_weight": FINITE,
    "purchase_weight": FINITE,
    "revenue_weight": FINITE,
    "max_steps_in_episode": POSITIVE_INT,
}
# Fields `make_params` may override: those with defaults (the rest are drawn from the key).
SCALAR_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(EnvParams)
                            if f.default is not dataclasses.MISSING)


def category_centers(params: EnvParams, num_categories: int) -> jax.Array:
    """(num_categories, embed_dim) unit mean embedding of each category's items (zero if empty)."""
    one_hot = jax.nn.one_hot(params.item_category, num_categories, dtype=jnp.float32)
    total = one_hot.T @ params.item_embedding
    return total / jnp.maximum(jnp.linalg.norm(total, axis=-1, keepdims=True), 1e-12)


def interest_shift(env: "ShopperRec", params: EnvParams, strength: float = 1.0) -> EnvParams:
    """Drift target: tastes move on. Each shopper's interest leaves the category it is closest
    to for the next one (category c -> c + 1 mod num_categories): interest - strength * centre_c
    + strength * centre_{c+1}, renormalised."""
    centers = category_centers(params, env.num_categories)
    nearest = jnp.argmax(params.shopper_interest @ centers.T, axis=-1)
    moved = (params.shopper_interest + strength
             * (centers[(nearest + 1) % env.num_categories] - centers[nearest]))
    return params.replace(shopper_interest=_unit(moved))


def new_items(env: "ShopperRec", params: EnvParams, key: jax.Array | None = None,
              fraction: float = 0.2) -> EnvParams:
    """Drift target: new products enter (cold start). The first `fraction` of item ids become
    items of a fresh catalogue drawn from `key` (default key 1) with no click history; the
    shop's catalogue size is a static shape, so they replace the oldest items."""
    fresh = env.make_params(jax.random.key(1) if key is None else key)
    new = jnp.arange(env.num_items) < int(round(fraction * env.num_items))

    def rows(old, young):
        return jnp.where(new.reshape((-1,) + (1,) * (old.ndim - 1)), young, old)

    return params.replace(**{name: rows(getattr(params, name), getattr(fresh, name))
                             for name in ("item_embedding", "item_category", "item_price",
                                          "item_appeal", "item_quality")})


DRIFT_PRESETS = {"interest_shift": interest_shift, "new_items": new_items}


class ShopperRec(HorizonEndsEpisode, CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """Single-item (`slate_size=1`, Discrete action) or slate recommendation."""

    out_of_range_action = "ignore"  # an invalid slot is shown empty (see `_shown_slots`)
    param_rules = PARAM_RULES
    drift_presets = DRIFT_PRESETS  # targets for `wrappers.drift_preset`

    def __init__(
        self,
        num_items: int = 1000,
        num_candidates: int = 10,
        slate_size: int = 1,
        history_len: int = 5,
        embed_dim: int = 8,
        num_shoppers: int = 1000,
        num_categories: int = 10,
    ):
        sizes = dict(num_items=num_items, num_candidates=num_candidates, slate_size=slate_size,
                     history_len=history_len, embed_dim=embed_dim, num_shoppers=num_shoppers,
                     num_categories=num_categories)
        for name, value in sizes.items():
            check_value(value, POSITIVE_INT, f"ShopperRec.{name}")
        if slate_size > num_candidates:
            raise ValueError(f"ShopperRec.slate_size must be <= num_candidates "
                             f"({num_candidates}), got {slate_size}")
        if num_candidates > num_items:
            raise ValueError(f"ShopperRec.num_candidates must be <= num_items ({num_items}), "
                             f"got {num_candidates}")
        self.num_items = num_items
        self.num_candidates = num_candidates
        self.slate_size = slate_size
        self.history_len = history_len
        self.embed_dim = embed_dim
        self.num_shoppers = num_shoppers
        self.num_categories = num_categories

    @property
    def name(self) -> str:
        return "ShopperRec-v0"

    @property
    def num_actions(self) -> int:
        return self.num_candidates

    @property
    def default_params(self) -> EnvParams:
        return self.make_params(jax.random.key(0))

    def make_params(self, key: jax.Array, **overrides: Any) -> EnvParams:
        """Draw a catalogue and shopper population from `key`; jittable and vmappable."""
        k_center, k_cat, k_emb, k_price, k_appeal, k_qual, k_pop_cat, k_pop = jax.random.split(key, 8)
        centers = _unit(jax.random.normal(k_center, (self.num_categories, self.embed_dim)))
        category = jax.random.randint(k_cat, (self.num_items,), 0, self.num_categories)
        noise = jax.random.normal(k_emb, (self.num_items, self.embed_dim))
        embedding = _unit(centers[category] + 0.5 * noise)
        price = jnp.exp(math.log(20.0) + 0.5 * jax.random.normal(k_price, (self.num_items,)))
        appeal = jax.random.normal(k_appeal, (self.num_items,))
        quality = jax.nn.sigmoid(-1.5 * appeal + jax.random.normal(k_qual, (self.num_items,)))
        shopper_cat = jax.random.randint(k_pop_cat, (self.num_shoppers,), 0, self.num_categories)
        interest = _unit(centers[shopper_cat]
                         + 0.5 * jax.random.normal(k_pop, (self.num_shoppers, self.embed_dim)))
        params = EnvParams(item_embedding=embedding, item_category=category.astype(jnp.int32),
                           item_price=price, item_appeal=appeal, item_quality=quality,
                           shopper_interest=interest)
        unknown = set(overrides) - set(SCALAR_PARAM_FIELDS)
        if unknown:
            raise ValueError(f"unknown ShopperRec params {sorted(unknown)}; "
                             f"valid: {list(SCALAR_PARAM_FIELDS)}")
        return params.replace(**overrides)

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        n, d, p = self.num_items, self.embed_dim, self.num_shoppers
        check_shapes(params, {"item_embedding": (n, d), "item_category": (n,), "item_price": (n,),
                              "item_appeal": (n,), "item_quality": (n,),
                              "shopper_interest": (p, d)},
                     "ShopperRec.params", f"num_items={n}, embed_dim={d}, num_shoppers={p}")
        check(params, PARAM_RULES, "ShopperRec.params")
        category = np.asarray(params.item_category)
        if np.any(category >= self.num_categories):
            raise ValueError(f"ShopperRec.params.item_category must be < num_categories="
                             f"{self.num_categories}, got max {category.max()}")

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[dict, EnvState]:
        k_shopper, k_cand = jax.random.split(key)
        shopper = jax.random.randint(k_shopper, (), 0, self.num_shoppers)
        h = self.history_len
        state = EnvState(
            time=jnp.int32(0),
            interest=params.shopper_interest[shopper],
            patience=jnp.asarray(params.patience_init, jnp.float32),
            candidates=self._draw_candidates(k_cand),
            history_items=jnp.zeros(h, jnp.int32),
            history_purchased=jnp.zeros(h, jnp.float32),
            history_valid=jnp.zeros(h, jnp.float32),
        )
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        k_choice, k_buy, k_cand = jax.random.split(key, 3)
        slots, valid, num_invalid = self._shown_slots(action)
        items = state.candidates[slots]
        logits, affinity = self.click_logits(state.interest, items, params)
        logits = jnp.where(valid, logits - params.position_bias * jnp.arange(self.slate_size), -jnp.inf)
        choice = jax.random.categorical(k_choice, jnp.append(logits, params.no_click_logit))
        clicked = choice < self.slate_size
        pos = jnp.minimum(choice, self.slate_size - 1)
        item = items[pos]
        price = params.item_price[item]
        p_buy = self.purchase_prob(affinity[pos], price, params)
        purchased = clicked & (jax.random.uniform(k_buy) < p_buy)
        click_f, buy_f = clicked.astype(jnp.float32), purchased.astype(jnp.float32)
        revenue = buy_f * price
        reward = (params.click_weight * click_f + params.purchase_weight * buy_f
                  + params.revenue_weight * revenue)

        drift = params.interest_drift * click_f
        interest = state.interest + drift * (params.item_embedding[item] - state.interest)
        quality_gain = params.quality_effect * (params.item_quality[item] - params.quality_threshold)
        patience = state.patience - params.patience_step_cost + click_f * quality_gain
        history_items = jnp.where(clicked, _push(state.history_items, item), state.history_items)
        history_purchased = jnp.where(clicked, _push(state.history_purchased, buy_f),
                                      state.history_purchased)
        history_valid = jnp.where(clicked, _push(state.history_valid, 1.0), state.history_valid)
        state = EnvState(time=state.time + 1, interest=interest, patience=patience,
                         candidates=self._draw_candidates(k_cand), history_items=history_items,
                         history_purchased=history_purchased, history_valid=history_valid)
        terminated = patience <= 0.0
        info = {"clicks": click_f, "purchases": buy_f, "revenue": revenue,
                "invalid_actions": num_invalid,
                "slot_clicks": (jnp.arange(self.slate_size) == choice).astype(jnp.float32)}
        return self.get_obs(state, params), state, reward.astype(jnp.float32), terminated, info

    def click_logits(self, interest: jax.Array, items: jax.Array, params: EnvParams):
        """Choice logits (before position bias) and interest affinity of `items`."""
        affinity = params.item_embedding[items] @ interest
        return params.affinity_scale * affinity + params.item_appeal[items], affinity

    @staticmethod
    def purchase_prob(affinity: jax.Array, price: jax.Array, params: EnvParams) -> jax.Array:
        """P(purchase | click): rises with affinity, falls with price."""
        return jax.nn.sigmoid(params.purchase_bias + params.purchase_affinity * affinity
                              - params.purchase_price * price)

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> dict:
        cand = state.candidates
        candidates = jnp.concatenate([
            params.item_embedding[cand],
            jnp.log(params.item_price[cand])[:, None],
            params.item_appeal[cand][:, None],
            params.item_quality[cand][:, None],
        ], axis=1)
        hist, valid = state.history_items, state.history_valid
        history = jnp.concatenate([
            params.item_embedding[hist],
            jnp.log(params.item_price[hist])[:, None],
            params.item_quality[hist][:, None],
            state.history_purchased[:, None],
            jnp.ones_like(valid)[:, None],
        ], axis=1) * valid[:, None]
        time = (state.time / params.max_steps_in_episode).astype(jnp.float32)[None]
        return {"candidates": candidates, "history": history, "time": time}

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.patience <= 0.0

    def action_space(self, params: EnvParams | None = None):
        if self.slate_size == 1:
            return spaces.Discrete(self.num_candidates)
        return Slate(self.num_candidates, self.slate_size)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Dict:
        d = self.embed_dim
        return spaces.Dict({
            "candidates": spaces.Box(-jnp.inf, jnp.inf, (self.num_candidates, d + 3), jnp.float32),
            "history": spaces.Box(-jnp.inf, jnp.inf, (self.history_len, d + 4), jnp.float32),
            "time": spaces.Box(0.0, 1.0, (1,), jnp.float32),
        })

    def _draw_candidates(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (self.num_candidates,), 0, self.num_items)

    def _shown_slots(self, action: jax.Array):
        """Candidate slots to show, a validity mask and the number of invalid slots, by
        `ecomrl_jax.spaces.shown_slots` (the rule on the env card)."""
        expected = () if self.slate_size == 1 else (self.slate_size,)
        action = check_action(f"{self.name} with slate_size={self.slate_size}", action, expected,
                              integer=True)
        return shown_slots(action, self.num_candidates)


class UserItemShopperRec(ShopperRec):
    """ShopperRec-v0 (same dynamics, keys and params) observed as one (1 + num_candidates,
    embed_dim + 3) matrix, row 0 the shopper and row 1 + i candidate i, as SlateQ's
    user-item networks read it.

    Candidate rows are `get_obs`'s `candidates` (embedding, log price, appeal, quality). The
    shopper row is [interest estimate (embed_dim), time / max_steps_in_episode, share of history
    slots filled, mean quality of the history's clicks]. The estimate is the mean embedding of
    the history's clicked items (zeros if none) or, with `reveal_interest`, the hidden interest
    itself, which makes the env's choice model (`choice_model`) a function of the observation.
    """

    def __init__(self, num_items: int = 1000, num_candidates: int = 10, slate_size: int = 1,
                 history_len: int = 5, embed_dim: int = 8, num_shoppers: int = 1000,
                 num_categories: int = 10, reveal_interest: bool = False):
        super().__init__(num_items, num_candidates, slate_size, history_len, embed_dim,
                         num_shoppers, num_categories)
        if not isinstance(reveal_interest, bool):
            raise ValueError(f"UserItemShopperRec.reveal_interest must be a bool, got "
                             f"{reveal_interest!r}")
        self.reveal_interest = reveal_interest

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        obs = super().get_obs(state, params)
        d, valid = self.embed_dim, state.history_valid
        clicks = jnp.maximum(jnp.sum(valid), 1.0)
        estimate = state.interest if self.reveal_interest else (
            valid @ obs["history"][:, :d] / clicks)
        shopper = jnp.concatenate([estimate, obs["time"], jnp.mean(valid)[None],
                                   (valid @ obs["history"][:, d + 1] / clicks)[None]])
        return jnp.concatenate([shopper[None], obs["candidates"]]).astype(jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (1 + self.num_candidates, self.embed_dim + 3),
                          jnp.float32)

    def choice_model(self, obs: jax.Array, params: EnvParams):
        """`(candidate weights (num_candidates,), no-click weight, slot weights (slate_size,))`
        of the shopper's choice at `obs`: candidate i shown at slot j is clicked with probability
        w_i b_j / (w_0 + the slate's sum of w b), as `step`'s multinomial logit with position
        bias. Needs `reveal_interest` (the weights depend on the hidden interest)."""
        if not self.reveal_interest:
            raise ValueError("UserItemShopperRec.choice_model needs reveal_interest=True: the "
                             "click weights depend on the shopper's hidden interest")
        d = self.embed_dim
        logits = params.affinity_scale * (obs[1:, :d] @ obs[0, :d]) + obs[1:, d + 1]
        top = jnp.maximum(jnp.max(logits), params.no_click_logit)
        return (jnp.exp(logits - top), jnp.exp(params.no_click_logit - top),
                jnp.exp(-params.position_bias * jnp.arange(self.slate_size, dtype=jnp.float32)))


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _push(buffer: jax.Array, value) -> jax.Array:
    """Insert `value` at the front of `buffer`, dropping the oldest entry."""
    return jnp.concatenate([jnp.asarray(value, buffer.dtype)[None], buffer[:-1]])
