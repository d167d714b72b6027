"""OBDClicks: a click simulator fitted to the Open Bandit Dataset's random-policy logs.

Each step a user drawn uniformly from the logged users (their one-hot features, OBD's context)
is shown an ordered slate of `slate_size` of the `num_items` items and clicks each shown item
independently, with a logistic click model fitted to OBD's uniform-random log by penalised
maximum likelihood (`fit_params`; the default params are fitted to the vendored 'all' sample):

    P(click | user x, item i, position k) = sigmoid(bias + item_logit[i] + position_logit[k]
                                                    + item_position_logit[i, k] + x . context_weight)

The reward is the number of clicks. Users are independent, so an episode is only a block of
`max_steps_in_episode` impressions (truncated, never terminated). See docs/envs/obd_clicks.md.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, check_shapes
from ecomrl_jax.rules import FINITE, NON_NEGATIVE, POSITIVE_INT, check, check_value
from ecomrl_jax.spaces import Slate, check_action, shown_slots


@struct.dataclass
class EnvState(environment.EnvState):
    user: jax.Array  # () int32 row of params.user_context shown this step


@struct.dataclass
class EnvParams:
    user_context: jax.Array  # (num_users, context_dim) logged users' features
    item_logit: jax.Array  # (num_items,)
    position_logit: jax.Array  # (slate_size,)
    item_position_logit: jax.Array  # (num_items, slate_size)
    context_weight: jax.Array  # (context_dim,)
    bias: float = 0.0
    max_steps_in_episode: int = 100


PARAM_RULES = {
    "user_context": FINITE,
    "item_logit": FINITE,
    "position_logit": FINITE,
    "item_position_logit": FINITE,
    "context_weight": FINITE,
    "bias": FINITE,
    "max_steps_in_episode": POSITIVE_INT,
}


@struct.dataclass
class FitConfig:
    """Penalised maximum likelihood: full-batch Adam on the mean logistic loss plus
    `l2` / 2 times the squared norm of every coefficient but the bias."""

    l2: float = 1e-3
    num_steps: int = 2000
    learning_rate: float = 0.05


FIT_RULES = {"l2": NON_NEGATIVE, "num_steps": POSITIVE_INT}


class OBDClicks(CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """Slates of `slate_size` distinct items (a `Slate` action) shown to logged OBD users."""

    out_of_range_action = "ignore"  # an invalid or repeated slot shows nothing (no click)
    param_rules = PARAM_RULES

    def __init__(self, num_items: int = 80, slate_size: int = 3, context_dim: int = 20,
                 num_users: int = 10_000):
        for name, value in (("num_items", num_items), ("slate_size", slate_size),
                            ("context_dim", context_dim), ("num_users", num_users)):
            check_value(value, POSITIVE_INT, f"OBDClicks.{name}")
        if slate_size > num_items:
            raise ValueError(f"OBDClicks.slate_size must be <= num_items ({num_items}), got {slate_size}")
        self.num_items = num_items
        self.slate_size = slate_size
        self.context_dim = context_dim
        self.num_users = num_users

    @property
    def name(self) -> str:
        return "OBDClicks-v0"

    @property
    def num_actions(self) -> int:
        return self.num_items

    @property
    def default_params(self) -> EnvParams:
        """Fitted to the vendored OBD 'all' sample of the uniform-random policy (cached)."""
        return _vendored_fit(self)

    def fit_params(self, data, config: FitConfig = FitConfig()) -> EnvParams:
        """Params fitted to `data` (a `LoggedBandit` whose sizes match this env, e.g.
        `offline.load_obd("random")`), users its contexts. Fit on a uniform-random log: the
        model has no confounding to correct only because such a log's items do not depend on
        the user."""
        check(config, FIT_RULES, "FitConfig")
        sizes = (data.num_actions, data.len_list, np.shape(data.context)[1], np.shape(data.context)[0])
        if sizes != (self.num_items, self.slate_size, self.context_dim, self.num_users):
            raise ValueError(f"OBDClicks(num_items={self.num_items}, slate_size={self.slate_size}, "
                             f"context_dim={self.context_dim}, num_users={self.num_users}) cannot fit "
                             f"a log of num_actions, len_list, context dim, rows = {sizes}; build the env "
                             f"with the log's sizes")
        return _fit(data.context, data.action, data.position, data.reward, self.num_items,
                    self.slate_size, config)

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        n, k, d, u = self.num_items, self.slate_size, self.context_dim, self.num_users
        check_shapes(params, {"user_context": (u, d), "item_logit": (n,), "position_logit": (k,),
                              "item_position_logit": (n, k), "context_weight": (d,)},
                     "OBDClicks.params", f"num_items={n}, slate_size={k}, context_dim={d}, num_users={u}")
        check(params, PARAM_RULES, "OBDClicks.params")

    def click_probs(self, context: jax.Array, params: EnvParams) -> jax.Array:
        """(num_items, slate_size) click probability of every item at every position for a user
        with features `context` (d,)."""
        logit = (params.bias + params.item_logit[:, None] + params.position_logit[None, :]
                 + params.item_position_logit + context @ params.context_weight)
        return jax.nn.sigmoid(logit)

    def reset_env(self, key: jax.Array, params: EnvParams):
        state = EnvState(time=jnp.int32(0), user=jax.random.randint(key, (), 0, self.num_users))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        action = check_action(f"{self.name} with slate_size={self.slate_size}", action,
                              (self.slate_size,), integer=True)
        k_click, k_user = jax.random.split(key)
        slots, shown, num_invalid = shown_slots(action, self.num_items)
        probs = self.click_probs(params.user_context[state.user], params)
        p = probs[slots, jnp.arange(self.slate_size)] * shown
        clicks = jax.random.bernoulli(k_click, p).astype(jnp.float32)
        state = EnvState(time=state.time + 1, user=jax.random.randint(k_user, (), 0, self.num_users))
        reward = jnp.sum(clicks)
        info = {"clicks": reward, "click_rate": reward / self.slate_size,
                "invalid_actions": num_invalid}
        return self.get_obs(state, params), state, reward, jnp.bool_(False), info

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        return params.user_context[state.user].astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.bool_(False)

    def action_space(self, params: EnvParams | None = None) -> Slate:
        return Slate(self.num_items, self.slate_size)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.context_dim,), jnp.float32)


@functools.cache
def _vendored_fit(env: OBDClicks) -> EnvParams:
    from ecomrl_jax.offline.obd import load_obd  # the loader reads package data; import on use

    return env.fit_params(load_obd("random"))


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _fit(context, action, position, reward, num_items, slate_size, config) -> EnvParams:
    context = jnp.asarray(context, jnp.float32)
    mean = jnp.clip(jnp.mean(reward), 1e-4, 1 - 1e-4)
    coef = {"item_logit": jnp.zeros(num_items), "position_logit": jnp.zeros(slate_size),
            "item_position_logit": jnp.zeros((num_items, slate_size)),
            "context_weight": jnp.zeros(context.shape[1]), "bias": jnp.log(mean / (1 - mean))}

    def loss(c):
        logit = (c["bias"] + c["item_logit"][action] + c["position_logit"][position]
                 + c["item_position_logit"][action, position] + context @ c["context_weight"])
        penalty = sum(jnp.sum(v ** 2) for k, v in c.items() if k != "bias")
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logit, reward)) + 0.5 * config.l2 * penalty

    optimiser = optax.adam(config.learning_rate)

    def step(carry, _):
        c, opt_state = carry
        updates, opt_state = optimiser.update(jax.grad(loss)(c), opt_state)
        return (optax.apply_updates(c, updates), opt_state), None

    (coef, _), _ = jax.lax.scan(step, (coef, optimiser.init(coef)), None, config.num_steps)
    return EnvParams(user_context=context, **coef)
