"""ToyRec: the textbook tabular recommendation MDP, 10 users and 5 items by default.

An episode follows one user. The state is the user id and, per item, a status: 0 "new"
(never clicked), 1 "clicked" (clicked, not bought) or 2 "bought". Each step the shop
recommends one item; the user clicks it with a per-(user, item) probability and, given a
click, buys it with a per-(user, item) probability that is higher on a second look. A
purchase pays 1. The model is known in closed form (`transition_matrix`, `reward_matrix`),
so value iteration gives the exact optimal Q. See docs/envs/toy_rec.md.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, check_shapes
from ecomrl_jax.rules import POSITIVE_INT, UNIT_INTERVAL, check, check_value
from ecomrl_jax.spaces import check_action

NEW, CLICKED, BOUGHT = 0, 1, 2
NUM_STATUSES = 3
OBS_TYPES = ("index", "one_hot")


@struct.dataclass
class EnvState(environment.EnvState):
    user: jax.Array  # () int32, fixed for the episode
    status: jax.Array  # (num_items,) int32 in {NEW, CLICKED, BOUGHT}


@struct.dataclass
class EnvParams:
    click_prob: jax.Array  # (num_users, num_items) P(click | recommended, not bought)
    purchase_prob: jax.Array  # (num_users, num_items) P(buy | first click)
    revisit_boost: float = 0.5  # P(buy | later click) = p + revisit_boost * (1 - p)
    max_steps_in_episode: int = 20


# Valid values of every field (checked by `validate_params`, outside jit).
PARAM_RULES = {
    "click_prob": UNIT_INTERVAL,
    "purchase_prob": UNIT_INTERVAL,
    "revisit_boost": UNIT_INTERVAL,
    "max_steps_in_episode": POSITIVE_INT,
}
SCALAR_PARAM_FIELDS = ("revisit_boost", "max_steps_in_episode")  # what make_params overrides


class ToyRec(CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """Tabular recommendation: `num_users * 3 ** num_items` states, `num_items` actions.

    `obs_type="index"` observes the state index (`Discrete(num_states)`, int32) for tabular
    learners; `"one_hot"` observes the concatenated one-hots of the user and of each item's
    status (float32, length `num_users + 3 * num_items`) for neural learners.
    """

    out_of_range_action = "ignore"  # an invalid item is not shown: no click, no purchase
    param_rules = PARAM_RULES

    def __init__(self, num_users: int = 10, num_items: int = 5, obs_type: str = "index"):
        check_value(num_users, POSITIVE_INT, "ToyRec.num_users")
        check_value(num_items, POSITIVE_INT, "ToyRec.num_items")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"ToyRec.obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if num_users * NUM_STATUSES ** num_items > np.iinfo(np.int32).max:
            raise ValueError(f"ToyRec: num_users * 3 ** num_items must fit in int32; got "
                             f"num_users={num_users}, num_items={num_items}")
        self.num_users = num_users
        self.num_items = num_items
        self.obs_type = obs_type
        self.num_states = num_users * NUM_STATUSES ** num_items
        self._place = NUM_STATUSES ** np.arange(num_items, dtype=np.int32)  # base-3 digit weights

    @property
    def name(self) -> str:
        return "ToyRec-v0"

    @property
    def num_actions(self) -> int:
        return self.num_items

    @property
    def default_params(self) -> EnvParams:
        return self.make_params(jax.random.key(0))

    def make_params(self, key: jax.Array, **overrides: Any) -> EnvParams:
        """Click probabilities ~ U(0.2, 0.9), first-click purchase probabilities ~ U(0.05, 0.5),
        per (user, item), drawn from `key`; jittable and vmappable."""
        k_click, k_buy = jax.random.split(key)
        shape = (self.num_users, self.num_items)
        params = EnvParams(click_prob=jax.random.uniform(k_click, shape, minval=0.2, maxval=0.9),
                           purchase_prob=jax.random.uniform(k_buy, shape, minval=0.05, maxval=0.5))
        unknown = set(overrides) - set(SCALAR_PARAM_FIELDS)
        if unknown:
            raise ValueError(f"unknown ToyRec params {sorted(unknown)}; "
                             f"valid: {list(SCALAR_PARAM_FIELDS)}")
        return params.replace(**overrides)

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        shape = (self.num_users, self.num_items)
        check_shapes(params, {"click_prob": shape, "purchase_prob": shape}, "ToyRec.params",
                     f"num_users={self.num_users}, num_items={self.num_items}")
        check(params, PARAM_RULES, "ToyRec.params")

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        user = jax.random.randint(key, (), 0, self.num_users, jnp.int32)
        state = EnvState(time=jnp.int32(0), user=user,
                         status=jnp.zeros(self.num_items, jnp.int32))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        action = check_action(self.name, action, (), integer=True)
        valid = (action >= 0) & (action < self.num_items)
        item = jnp.where(valid, action, 0).astype(jnp.int32)
        status = state.status[item]
        p_click, p_buy = self.outcome_probs(state.user, item, status, params)
        u = jax.random.uniform(key)  # one draw: buy if u < p_buy, click if u < p_click
        clicked = valid & (u < p_click)
        bought = valid & (u < p_buy)
        new_status = jnp.where(bought, BOUGHT, jnp.where(clicked, CLICKED, status))
        state = EnvState(time=state.time + 1, user=state.user,
                         status=state.status.at[item].set(new_status))
        info = {"clicks": clicked.astype(jnp.float32), "purchases": bought.astype(jnp.float32),
                "invalid_actions": (~valid).astype(jnp.float32)}
        terminated = self.is_terminated(state, params)
        return self.get_obs(state, params), state, bought.astype(jnp.float32), terminated, info

    @staticmethod
    def outcome_probs(user, item, status, params: EnvParams) -> tuple[jax.Array, jax.Array]:
        """`(P(click), P(buy))` when `item` (with `status`) is recommended to `user`; the purchase
        is joint (click and buy). A bought item is never clicked again."""
        p_click = jnp.where(status == BOUGHT, 0.0, params.click_prob[user, item])
        p = params.purchase_prob[user, item]
        p_buy_given_click = jnp.where(status == CLICKED, p + params.revisit_boost * (1.0 - p), p)
        return p_click, p_click * p_buy_given_click

    def state_index(self, state: EnvState) -> jax.Array:
        """`user * 3 ** num_items + sum_i status_i * 3 ** i`, int32 in [0, num_states)."""
        return (state.user * NUM_STATUSES ** self.num_items
                + jnp.sum(state.status * self._place)).astype(jnp.int32)

    def decode_index(self, index: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`(user, status)` of a state index (inverse of `state_index`); broadcasts over `index`."""
        index = jnp.asarray(index, jnp.int32)
        user = index // NUM_STATUSES ** self.num_items
        status = (index[..., None] // self._place) % NUM_STATUSES
        return user, status.astype(jnp.int32)

    def successors(self, params: EnvParams) -> tuple[jax.Array, jax.Array]:
        """The model in sparse form: `next_state[s, a, k]` (int32) and `prob[s, a, k]` for the
        k = 3 outcomes no click, click only, purchase (a next state may repeat, e.g. a click on
        an already clicked item leaves the state as it is). Same `outcome_probs` as `step_env`."""
        s = jnp.arange(self.num_states, dtype=jnp.int32)[:, None]  # (S, 1)
        a = jnp.arange(self.num_items, dtype=jnp.int32)[None, :]  # (1, A): action a shows item a
        user, item_status = self.decode_index(s[:, 0])  # (S,), (S, A)
        p_click, p_buy = self.outcome_probs(user[:, None], a, item_status, params)
        place = jnp.asarray(self._place)[None, :]
        clicked_next = s + (jnp.maximum(item_status, CLICKED) - item_status) * place
        bought_next = s + (BOUGHT - item_status) * place
        unchanged = jnp.broadcast_to(s, clicked_next.shape)
        next_state = jnp.stack([unchanged, clicked_next, bought_next], -1)
        prob = jnp.stack([1.0 - p_click, p_click - p_buy, p_buy], -1).astype(jnp.float32)
        return next_state, prob

    def transition_matrix(self, params: EnvParams) -> jax.Array:
        """Dense `P[s, a, s']` (float32, `num_states ** 2 * num_items` entries) built from
        `successors`. All-bought states are absorbing."""
        next_state, prob = self.successors(params)
        s = jnp.arange(self.num_states)[:, None, None]
        a = jnp.arange(self.num_items)[None, :, None]
        shape = (self.num_states, self.num_items, self.num_states)
        return jnp.zeros(shape, jnp.float32).at[s, a, next_state].add(prob)

    def reward_matrix(self, params: EnvParams) -> jax.Array:
        """`R[s, a]`: expected reward, the purchase probability of recommending item a in s."""
        user, status = self.decode_index(jnp.arange(self.num_states))
        items = jnp.arange(self.num_items)[None, :]
        return self.outcome_probs(user[:, None], items, status, params)[1].astype(jnp.float32)

    def initial_state_distribution(self, params: EnvParams) -> jax.Array:
        """`(num_states,)` reset distribution: uniform over users, every item new."""
        starts = jnp.arange(self.num_users) * NUM_STATUSES ** self.num_items
        return jnp.zeros(self.num_states, jnp.float32).at[starts].set(1.0 / self.num_users)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        if self.obs_type == "index":
            return self.state_index(state)
        return jnp.concatenate([jax.nn.one_hot(state.user, self.num_users),
                                jax.nn.one_hot(state.status, NUM_STATUSES).ravel()])

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.all(state.status == BOUGHT)

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_items)

    def observation_space(self, params: EnvParams | None = None):
        if self.obs_type == "index":
            return spaces.Discrete(self.num_states)
        size = self.num_users + NUM_STATUSES * self.num_items
        return spaces.Box(0.0, 1.0, (size,), jnp.float32)
