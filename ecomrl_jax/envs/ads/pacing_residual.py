"""PacingResidual: AdBidding with the action a factor on linear pacing's bid multiplier.

A learner on the raw multiplier grid must learn budget pacing itself; here the pacing rule
(`policies.pacing_multiplier`) is given and the learner picks only how far to bid above or
below it this step (e.g. by time of day, as competition and traffic peak).
Factor 1.0 at every step is linear pacing exactly. See docs/envs/ad_bidding.md.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper

from ecomrl_jax.envs._base import CompareByArgs
from ecomrl_jax.envs.ads.ad_bidding import AdBidding
from ecomrl_jax.envs.ads.policies import pacing_multiplier
from ecomrl_jax.spaces import check_action

DEFAULT_FACTORS = tuple(2.0 ** (k / 4) for k in range(-4, 5))  # 0.5 .. 2, ratio 2**0.25


class PacingResidual(CompareByArgs, GymnaxWrapper):
    """Discrete(len(factors)): action i bids `factors[i] x pacing_multiplier(base, gain)` for
    the step, clipped to [0, max_multiplier], on a continuous AdBidding env. An index outside
    [0, len(factors)) bids 0 (sits the step out) and counts 1 in `info["invalid_actions"]`;
    a clip at max_multiplier is the rule's, not counted. State, observation, reward and info
    are the inner env's."""

    def __init__(self, env, factors: tuple = DEFAULT_FACTORS, base: float = 1.0,
                 gain: float = 10.0):
        if not (isinstance(env, AdBidding) and env.continuous):
            raise ValueError("PacingResidual needs an unwrapped AdBidding env made with "
                             f"continuous=True, got {env!r}")
        factors = tuple(float(f) for f in factors)
        if not factors or not all(np.isfinite(f) and f >= 0 for f in factors):
            raise ValueError(f"PacingResidual factors must be a non-empty sequence of finite "
                             f"numbers >= 0, got {factors!r}")
        if not (np.isfinite(base) and base > 0 and np.isfinite(gain)):
            raise ValueError(f"PacingResidual needs a finite base > 0 and a finite gain, got "
                             f"base={base!r}, gain={gain!r}")
        super().__init__(env)
        self.factors, self.base, self.gain = factors, float(base), float(gain)

    @property
    def name(self) -> str:
        return f"PacingResidual({self._env.name})"

    @property
    def num_actions(self) -> int:
        return len(self.factors)

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(len(self.factors))

    def multiplier(self, state, action, params):
        """(bid multiplier, invalid) for `action` in `state`."""
        action = check_action(self.name, action, (), integer=True)
        valid = (action >= 0) & (action < len(self.factors))
        factor = jnp.asarray(self.factors, jnp.float32)[jnp.clip(action, 0, len(self.factors) - 1)]
        pace = pacing_multiplier(state.time / self._env.num_steps,
                                 state.budget_left / params.daily_budget, self.base, self.gain)
        m = jnp.where(valid, jnp.minimum(factor * pace, params.max_multiplier), 0.0)
        return m.astype(jnp.float32), (~valid).astype(jnp.float32)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        m, invalid = self.multiplier(state, action, params)
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, m, params)
        return obs, state, reward, terminated, truncated, {**info, "invalid_actions": invalid}
