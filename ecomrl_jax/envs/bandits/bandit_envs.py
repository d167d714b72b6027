"""Multi-armed bandits: Bernoulli, Gaussian, contextual linear and price-point bandits.

Each step is one round: the agent pulls an arm and gets a reward. An episode is
`max_steps_in_episode` rounds; the arms' reward model lives in params and never changes,
so a learner can play straight across the auto-reset. `info["regret"]` is the per-round
pseudo-regret (expected reward of the best arm minus that of the arm played) and
`expected_rewards(state, params)` the oracle's view. See docs/envs/bandits.md.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, check_shapes
from ecomrl_jax.rules import (FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, UNIT_INTERVAL, Rule,
                              check, check_value, int_at_least)
from ecomrl_jax.spaces import check_action


@struct.dataclass
class EnvState(environment.EnvState):
    # this round's contexts as observed: (context_dim,) when shared by every arm, else
    # (num_arms * context_dim,) arm by arm; `arm_contexts` gives the (num_arms, context_dim) view.
    # Flat because gymnax's auto-reset select over a (num_arms, context_dim) leaf is several
    # times slower under vmap on CPU (a short innermost dimension defeats XLA's vectorisation).
    contexts: jax.Array


@struct.dataclass
class BernoulliParams:
    means: jax.Array  # (num_arms,) success probability of each arm
    max_steps_in_episode: int = 1000


BERNOULLI_RULES = {"means": UNIT_INTERVAL, "max_steps_in_episode": POSITIVE_INT}


@struct.dataclass
class GaussianParams:
    means: jax.Array  # (num_arms,)
    stds: jax.Array  # (num_arms,) > 0
    max_steps_in_episode: int = 1000


GAUSSIAN_RULES = {"means": FINITE, "stds": POSITIVE, "max_steps_in_episode": POSITIVE_INT}


@struct.dataclass
class ContextualParams:
    theta: jax.Array  # (num_arms, context_dim) hidden weights: E[reward | x] = <theta_a, x_a>
    context_scale: float = 1.0  # std of each context coordinate
    noise_std: float = 0.5
    max_steps_in_episode: int = 1000


CONTEXTUAL_RULES = {"theta": FINITE, "context_scale": NON_NEGATIVE, "noise_std": NON_NEGATIVE,
                    "max_steps_in_episode": POSITIVE_INT}


@struct.dataclass
class PricingParams:
    prices: jax.Array  # (num_arms,) the price points on offer, > 0
    wtp_mean: float = 5.0  # location of the shoppers' logistic willingness to pay
    wtp_scale: float = 1.5  # its scale, > 0
    max_steps_in_episode: int = 1000


PRICING_RULES = {"prices": POSITIVE, "wtp_mean": FINITE, "wtp_scale": POSITIVE,
                 "max_steps_in_episode": POSITIVE_INT}


class BanditEnv(CompareByArgs, environment.Environment):
    """One round per step: clipped arm, reward draw, regret bookkeeping, fresh contexts.

    Subclasses give `expected_rewards`, `draw_reward`, `reward_range`, `make_params`, their
    params' `param_rules` and `array_shapes`; non-contextual ones observe the constant `[1.0]`.
    """

    is_contextual = False
    out_of_range_action = "clip"  # see `_clip_arm`
    param_rules: dict[str, Rule]  # the params' rules table

    def __init__(self, num_arms: int = 10):
        check_value(num_arms, int_at_least(2), f"{type(self).__name__}.num_arms")
        self.num_arms = num_arms
        self.context_dim = 1
        self.shared_context = True

    @property
    def num_actions(self) -> int:
        return self.num_arms

    @property
    def default_params(self):
        return self.make_params(jax.random.key(0))

    def expected_rewards(self, state: EnvState, params) -> jax.Array:
        """(num_arms,) expected reward of each arm in this round (the oracle's view)."""
        raise NotImplementedError

    def draw_reward(self, key: jax.Array, state: EnvState, arm: jax.Array, params):
        """`(reward, business metrics)` of pulling `arm` this round."""
        raise NotImplementedError

    def reward_range(self, params) -> tuple[jax.Array, jax.Array] | None:
        """`(low, high)` bounds of every possible reward, or None when rewards are unbounded."""
        raise NotImplementedError

    def make_params(self, key: jax.Array, **overrides: Any):
        """A random instance drawn from `key` (jittable, vmappable), with scalar overrides."""
        raise NotImplementedError

    def array_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each array field of the params."""
        raise NotImplementedError

    def validate_params(self, params) -> None:
        """Raise ValueError naming the first invalid field and its valid range; call outside jit."""
        where = f"{type(self).__name__}.params"
        check_shapes(params, self.array_shapes(), where,
                     f"num_arms={self.num_arms}, context_dim={self.context_dim}")
        check(params, self.param_rules, where)

    def draw_contexts(self, key: jax.Array, params) -> jax.Array:
        """The contexts of a new round, flat as observed (`EnvState.contexts`)."""
        return jnp.ones((1,), jnp.float32)

    def arm_contexts(self, obs: jax.Array) -> jax.Array:
        """(num_arms, context_dim) view of an observation: a shared context is repeated per arm."""
        if self.shared_context:
            return jnp.broadcast_to(obs, (self.num_arms, self.context_dim))
        return obs.reshape(self.num_arms, self.context_dim)

    def reset_env(self, key: jax.Array, params) -> tuple[jax.Array, EnvState]:
        state = EnvState(time=jnp.int32(0), contexts=self.draw_contexts(key, params))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params):
        arm, invalid = self._clip_arm(action)
        k_reward, k_context = jax.random.split(key)
        expected = self.expected_rewards(state, params)
        best = jnp.max(expected)
        reward, metrics = self.draw_reward(k_reward, state, arm, params)
        info = {"regret": best - expected[arm],
                "optimal_arm_chosen": (expected[arm] >= best).astype(jnp.float32),
                "invalid_actions": invalid, **metrics}
        state = EnvState(time=state.time + 1, contexts=self.draw_contexts(k_context, params))
        obs = self.get_obs(state, params)
        return obs, state, reward.astype(jnp.float32), jnp.bool_(False), info

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        return state.contexts

    def is_terminated(self, state: EnvState, params) -> jax.Array:
        return jnp.bool_(False)

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.num_arms)

    def observation_space(self, params=None) -> spaces.Box:
        if not self.is_contextual:
            return spaces.Box(1.0, 1.0, (1,), jnp.float32)
        size = self.context_dim if self.shared_context else self.num_arms * self.context_dim
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    def _clip_arm(self, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Rule (env card): an arm outside [0, num_arms) is clipped to the nearest valid arm
        and counted in info["invalid_actions"]."""
        action = check_action(self.name, action, (), integer=True).astype(jnp.int32)
        arm = jnp.clip(action, 0, self.num_arms - 1)
        return arm, (arm != action).astype(jnp.float32)


class BernoulliBandit(BanditEnv):
    """Arm `a` pays 1 with probability `means[a]`, else 0 (e.g. conversion of an offer)."""

    param_rules = BERNOULLI_RULES

    @property
    def name(self) -> str:
        return "BernoulliBandit-v0"

    @property
    def default_params(self) -> BernoulliParams:
        """Success probabilities evenly spaced in [0.1, 0.7]; the best arm is the last."""
        return BernoulliParams(means=jnp.linspace(0.1, 0.7, self.num_arms, dtype=jnp.float32))

    def make_params(self, key: jax.Array, **overrides: Any) -> BernoulliParams:
        """Means drawn uniformly from [0, 1]; jittable and vmappable."""
        params = BernoulliParams(means=jax.random.uniform(key, (self.num_arms,)))
        return _override(params, overrides, ("max_steps_in_episode",))

    def expected_rewards(self, state: EnvState, params: BernoulliParams) -> jax.Array:
        return jnp.asarray(params.means, jnp.float32)

    def draw_reward(self, key, state, arm, params):
        return jax.random.bernoulli(key, params.means[arm]).astype(jnp.float32), {}

    def reward_range(self, params):
        return jnp.float32(0.0), jnp.float32(1.0)

    def array_shapes(self):
        return {"means": (self.num_arms,)}


class GaussianBandit(BanditEnv):
    """Arm `a` pays a normal draw with mean `means[a]` and std `stds[a]`."""

    param_rules = GAUSSIAN_RULES

    @property
    def name(self) -> str:
        return "GaussianBandit-v0"

    @property
    def default_params(self) -> GaussianParams:
        """Means evenly spaced in [0, 1], unit stds."""
        return GaussianParams(means=jnp.linspace(0.0, 1.0, self.num_arms, dtype=jnp.float32),
                              stds=jnp.ones(self.num_arms, jnp.float32))

    def make_params(self, key: jax.Array, **overrides: Any) -> GaussianParams:
        """The 10-armed testbed of Sutton & Barto: means ~ N(0, 1), unit stds."""
        params = GaussianParams(means=jax.random.normal(key, (self.num_arms,)),
                                stds=jnp.ones(self.num_arms, jnp.float32))
        return _override(params, overrides, ("max_steps_in_episode",))

    def expected_rewards(self, state: EnvState, params: GaussianParams) -> jax.Array:
        return jnp.asarray(params.means, jnp.float32)

    def draw_reward(self, key, state, arm, params):
        return params.means[arm] + params.stds[arm] * jax.random.normal(key), {}

    def reward_range(self, params):
        return None

    def array_shapes(self):
        return {"means": (self.num_arms,), "stds": (self.num_arms,)}


class ContextualLinearBandit(BanditEnv):
    """Each round every arm `a` gets a context `x_a` (or all share one); pulling `a` pays
    `<theta_a, x_a> + noise`. Contexts are i.i.d. normal; `theta` is hidden in params."""

    param_rules = CONTEXTUAL_RULES

    is_contextual = True

    def __init__(self, num_arms: int = 10, context_dim: int = 5, shared_context: bool = False):
        super().__init__(num_arms)
        check_value(context_dim, POSITIVE_INT, "ContextualLinearBandit.context_dim")
        if not isinstance(shared_context, bool):
            raise ValueError(f"ContextualLinearBandit.shared_context must be a bool, "
                             f"got {shared_context!r}")
        self.context_dim = context_dim
        self.shared_context = shared_context

    @property
    def name(self) -> str:
        return "ContextualLinearBandit-v0"

    def make_params(self, key: jax.Array, **overrides: Any) -> ContextualParams:
        """theta_a ~ N(0, I / context_dim), so each arm's mean reward has std ~ context_scale."""
        shape = (self.num_arms, self.context_dim)
        params = ContextualParams(theta=jax.random.normal(key, shape) / np.sqrt(self.context_dim))
        return _override(params, overrides, ("context_scale", "noise_std", "max_steps_in_episode"))

    def draw_contexts(self, key: jax.Array, params: ContextualParams) -> jax.Array:
        size = self.context_dim if self.shared_context else self.num_arms * self.context_dim
        return (params.context_scale * jax.random.normal(key, (size,))).astype(jnp.float32)

    def expected_rewards(self, state: EnvState, params: ContextualParams) -> jax.Array:
        return jnp.sum(params.theta * self.arm_contexts(state.contexts), axis=-1)

    def draw_reward(self, key, state, arm, params):
        mean = jnp.dot(params.theta[arm], self.arm_contexts(state.contexts)[arm])
        return mean + params.noise_std * jax.random.normal(key), {}

    def reward_range(self, params):
        return None

    def array_shapes(self):
        return {"theta": (self.num_arms, self.context_dim)}


class PricingBandit(BanditEnv):
    """Arms are price points. A shopper buys at price `p` when their willingness to pay, logistic
    with location `wtp_mean` and scale `wtp_scale`, is at least `p`; the reward is the revenue."""

    param_rules = PRICING_RULES

    @property
    def name(self) -> str:
        return "PricingBandit-v0"

    @property
    def default_params(self) -> PricingParams:
        """Prices 1, 2, ..., 10 (for 10 arms; evenly spaced in [1, 10] otherwise); best price 4."""
        return PricingParams(prices=jnp.linspace(1.0, 10.0, self.num_arms, dtype=jnp.float32))

    def make_params(self, key: jax.Array, **overrides: Any) -> PricingParams:
        """Default prices; wtp_mean ~ U(3, 8) and wtp_scale ~ U(0.5, 2) drawn from `key`."""
        k_mean, k_scale = jax.random.split(key)
        params = self.default_params.replace(
            wtp_mean=jax.random.uniform(k_mean, (), minval=3.0, maxval=8.0),
            wtp_scale=jax.random.uniform(k_scale, (), minval=0.5, maxval=2.0))
        return _override(params, overrides, ("prices", "max_steps_in_episode"))

    def purchase_prob(self, params: PricingParams) -> jax.Array:
        """(num_arms,) P(purchase) at each price: P(willingness to pay >= price)."""
        return jax.nn.sigmoid((params.wtp_mean - params.prices) / params.wtp_scale)

    def expected_rewards(self, state: EnvState, params: PricingParams) -> jax.Array:
        return params.prices * self.purchase_prob(params)

    def draw_reward(self, key, state, arm, params):
        bought = jax.random.bernoulli(key, self.purchase_prob(params)[arm]).astype(jnp.float32)
        revenue = bought * params.prices[arm]
        return revenue, {"purchases": bought, "revenue": revenue}

    def reward_range(self, params):
        return jnp.float32(0.0), jnp.max(params.prices).astype(jnp.float32)

    def array_shapes(self):
        return {"prices": (self.num_arms,)}


def _override(params, overrides: dict, allowed: tuple[str, ...]):
    unknown = set(overrides) - set(allowed)
    if unknown:
        raise ValueError(f"unknown overrides {sorted(unknown)}; valid: {list(allowed)}")
    return params.replace(**overrides)
