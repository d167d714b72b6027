"""Wrappers: episode statistics, observation flattening and normalisation, reward scaling,
legacy 5-tuple step, drift of params over time (`Drift`). A wrapper compares by its inner env
and arguments, like the envs, so it can be a static argument of a jitted function without
recompiling per object."""

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper

from ecomrl_jax.envs._base import CompareByArgs
from ecomrl_jax.rules import NON_NEGATIVE, POSITIVE, check

# info entries that are bookkeeping (gymnax's and EpisodeStatistics'), not business metrics
NON_METRIC_INFO_KEYS = ("terminated", "truncated", "final_observation", "discount", "episode_done")


def business_metric_names(info: dict) -> list[str]:
    """The env's own per-step scalar metrics in `info` (clicks, revenue, ...)."""
    return sorted(k for k, v in info.items()
                  if k not in NON_METRIC_INFO_KEYS and not isinstance(v, (dict, list, tuple))
                  and jnp.ndim(v) == 0)


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    running: dict  # "return", "length" and each business metric, summed over the episode so far
    last: dict  # the same sums for the most recently finished episode


class EpisodeStatistics(CompareByArgs, GymnaxWrapper):
    """Sums reward, length and the env's business metrics over each episode.

    `info["episode"]` holds the totals of the most recently finished episode and
    `info["episode_done"]` is True on the step that finished it.
    """

    def _zeros(self, key, state, params) -> dict:
        action = self._env.action_space(params).sample(key)
        info = jax.eval_shape(self._env.step, key, state, action, params)[-1]
        names = ["return", "length"] + business_metric_names(info)
        return {name: jnp.zeros((), jnp.float32) for name in names}

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        zeros = self._zeros(key, env_state, params)
        return obs, EpisodeStatisticsState(env_state=env_state, running=zeros, last=zeros)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        step_values = {"return": reward, "length": 1.0, **{k: info[k] for k in state.running
                                                           if k not in ("return", "length")}}
        totals = {k: state.running[k] + jnp.asarray(v, jnp.float32) for k, v in step_values.items()}
        running = {k: jnp.where(done, 0.0, v) for k, v in totals.items()}
        last = {k: jnp.where(done, totals[k], state.last[k]) for k in totals}
        info = {**info, "episode": last, "episode_done": done}
        return obs, EpisodeStatisticsState(env_state, running, last), reward, terminated, truncated, info


def _space_leaves(space) -> list:
    """Leaf spaces of a nested Dict/Tuple space, in jax.tree order (dict keys sorted)."""
    if isinstance(space, spaces.Dict):
        return [leaf for k in sorted(space.spaces) for leaf in _space_leaves(space.spaces[k])]
    if isinstance(space, spaces.Tuple):
        return [leaf for s in space.spaces for leaf in _space_leaves(s)]
    return [space]


def _map_space(fn, space):
    """Apply `fn` to each leaf of a nested Dict/Tuple space, keeping the structure."""
    if isinstance(space, spaces.Dict):
        return spaces.Dict({k: _map_space(fn, s) for k, s in space.spaces.items()})
    if isinstance(space, spaces.Tuple):
        return spaces.Tuple([_map_space(fn, s) for s in space.spaces])
    return fn(space)


def flatten(obs) -> jax.Array:
    """One float32 vector: the raveled leaves of `obs` in jax.tree order (dict keys sorted)."""
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(obs)])


class FlattenObservation(CompareByArgs, GymnaxWrapper):
    """Observations (any pytree of arrays) become one flat float32 vector, see `flatten`.

    For ShopperRec-v0 the order is candidates (row-major), history (row-major), time.
    `info["final_observation"]` is flattened too.
    """

    def observation_space(self, params=None) -> spaces.Box:
        lows, highs = [], []
        for leaf in _space_leaves(self._env.observation_space(params)):
            discrete = isinstance(leaf, spaces.Discrete)
            low, high = (0, leaf.n - 1) if discrete else (leaf.low, leaf.high)
            lows.append(np.broadcast_to(np.asarray(low, np.float32), leaf.shape).ravel())
            highs.append(np.broadcast_to(np.asarray(high, np.float32), leaf.shape).ravel())
        low, high = np.concatenate(lows), np.concatenate(highs)
        return spaces.Box(jnp.asarray(low), jnp.asarray(high), low.shape, jnp.float32)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return flatten(obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        info = {**info, "final_observation": flatten(info["final_observation"])}
        return flatten(obs), state, reward, terminated, truncated, info


@struct.dataclass
class NormalizeObservationState:
    env_state: Any
    mean: Any  # running mean, a pytree shaped like one observation
    var: Any  # running (population) variance, same structure
    count: jax.Array  # number of observations folded in, starting at COUNT_INIT


class NormalizeObservation(CompareByArgs, GymnaxWrapper):
    """Running mean/variance normalisation of every observation leaf (cast to float32).

    Normalises each element of each leaf of a pytree observation (dict observations stay
    dicts; use it after FlattenObservation for one vector): `clip((x - mean) /
    sqrt(var + epsilon), -clip, clip)`. The statistics start at mean 0, var 1, count
    1e-4 (as in gym), live in the wrapper state and survive auto-resets; every observation
    returned by `reset` and `step` is folded in (parallel-moments update) before it is
    normalised. `info["final_observation"]` is normalised with the same statistics but
    not folded in.

    With `axis_name=None` each env keeps its own statistics. With `axis_name=NAME` call
    both `reset` and `step` under `jax.vmap(..., axis_name=NAME)` (or another named
    axis, e.g. shard_map's): each step the batch's moments are combined across the axis
    with `lax.pmean`/`lax.psum`, so all envs carry the same statistics, identical to one
    normaliser fed the whole batch.
    """

    COUNT_INIT = 1e-4

    def __init__(self, env, axis_name=None, epsilon: float = 1e-8, clip: float = 10.0):
        super().__init__(env)
        self.axis_name = axis_name
        self.epsilon = epsilon
        self.clip = clip

    def observation_space(self, params=None):
        return _map_space(lambda s: spaces.Box(-self.clip, self.clip, s.shape, jnp.float32),
                          self._env.observation_space(params))

    def _batch_moments(self, obs):
        """Mean, variance and count of this step's observations (over the named axis, if any)."""
        if self.axis_name is None:
            return obs, jax.tree.map(jnp.zeros_like, obs), jnp.float32(1.0)
        try:
            mean = jax.lax.pmean(obs, self.axis_name)
        except NameError as error:
            raise ValueError(f"NormalizeObservation(axis_name={self.axis_name!r}) must run under "
                             f"jax.vmap(..., axis_name={self.axis_name!r}), reset and step "
                             f"alike; pass axis_name=None for per-env statistics") from error
        var = jax.lax.pmean(jax.tree.map(lambda x, m: jnp.square(x - m), obs, mean), self.axis_name)
        return mean, var, jax.lax.psum(jnp.float32(1.0), self.axis_name)

    def _update(self, state: NormalizeObservationState, obs) -> NormalizeObservationState:
        batch_mean, batch_var, batch_count = self._batch_moments(obs)
        count, total = state.count, state.count + batch_count
        delta = jax.tree.map(jnp.subtract, batch_mean, state.mean)
        mean = jax.tree.map(lambda m, d: m + d * batch_count / total, state.mean, delta)
        var = jax.tree.map(
            lambda v, b_v, d: (v * count + b_v * batch_count
                               + jnp.square(d) * count * batch_count / total) / total,
            state.var, batch_var, delta)
        return state.replace(mean=mean, var=var, count=total)

    def _normalize(self, state: NormalizeObservationState, obs):
        return jax.tree.map(
            lambda x, m, v: jnp.clip((x - m) / jnp.sqrt(v + self.epsilon), -self.clip, self.clip),
            obs, state.mean, state.var)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        obs = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), obs)
        state = NormalizeObservationState(
            env_state=env_state, mean=jax.tree.map(jnp.zeros_like, obs),
            var=jax.tree.map(jnp.ones_like, obs), count=jnp.float32(self.COUNT_INIT))
        state = self._update(state, obs)
        return self._normalize(state, obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        obs, final_obs = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32),
                                      (obs, info["final_observation"]))
        state = self._update(state.replace(env_state=env_state), obs)
        info = {**info, "final_observation": self._normalize(state, final_obs)}
        return self._normalize(state, obs), state, reward, terminated, truncated, info


class ScaleReward(CompareByArgs, GymnaxWrapper):
    """Reward `(reward - shift) / scale`, for learners that need O(1) rewards (e.g. PPO's value
    loss on money-valued rewards). Observations, states and `info` are unchanged, so business
    metrics such as revenue stay in the env's own units."""

    def __init__(self, env, scale: float, shift: float = 0.0):
        super().__init__(env)
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(shift)):
            raise ValueError(f"ScaleReward needs a finite scale > 0 and a finite shift, "
                             f"got scale={scale!r}, shift={shift!r}")
        self.scale, self.shift = float(scale), float(shift)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, (reward - self.shift) / self.scale, terminated, truncated, info


class LegacyStepWrapper(CompareByArgs, GymnaxWrapper):
    """Old gymnax's 5-tuple step: `(obs, state, reward, done, info)`, done = terminated | truncated.

    `reset` is unchanged and `info` keeps "terminated" and "truncated". Put it outermost:
    other wrappers expect the 6-value step.
    """

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        info = {**info, "terminated": terminated, "truncated": truncated}
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


DRIFT_KINDS = ("step", "linear", "periodic")


@struct.dataclass
class DriftSchedule:
    """Weight w(t) in [0, 1] of the target params at clock t (env steps since the wrapper's
    reset): "step" jumps from 0 to 1 at t = start; "linear" ramps from 0 at t = start to 1 at
    t = start + length; "periodic" is (1 - cos(2 pi (t - start) / length)) / 2, so base at
    t = start and target half a period later. `start` and `length` are leaves (vmappable)."""

    start: float = 0.0
    length: float = 1.0
    kind: str = struct.field(pytree_node=False, default="step")

    def validate(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"DriftSchedule.kind must be one of {DRIFT_KINDS}, got {self.kind!r}")
        check(self, {"start": NON_NEGATIVE, "length": POSITIVE})

    def weight(self, t: jax.Array) -> jax.Array:
        t = jnp.asarray(t, jnp.float32)
        if self.kind == "step":
            return (t >= self.start).astype(jnp.float32)
        if self.kind == "linear":
            return jnp.clip((t - self.start) / self.length, 0.0, 1.0)
        return 0.5 * (1.0 - jnp.cos(2.0 * jnp.pi * (t - self.start) / self.length))


@struct.dataclass
class DriftParams:
    """The inner env's params before (`base`) and after (`target`) the drift, and its schedule."""

    base: Any
    target: Any
    schedule: DriftSchedule = DriftSchedule()

    @property
    def max_steps_in_episode(self):
        return self.base.max_steps_in_episode


@struct.dataclass
class DriftState:
    env_state: Any
    clock: jax.Array  # () int32 steps since reset; survives the inner env's auto-resets


class Drift(CompareByArgs, GymnaxWrapper):
    """Non-stationary env: its params move from `params.base` to `params.target` by the weight
    `params.schedule.weight(clock)`, computed inside every step from a clock in the wrapper state
    that episodes do not reset (a deployment's time), so jit and vmap (over schedules, targets or
    envs) need no recompile per value. Float leaves are (1 - w) base + w target (exact at w = 0
    and 1; equal leaves, inf included, stay put); other leaves (ints, bools) switch to the
    target's where w >= 1/2. Step i (0-based) runs on `params_at(i, params)`."""

    @property
    def default_params(self) -> DriftParams:
        base = self._env.default_params
        return DriftParams(base=base, target=base)

    def validate_params(self, params: DriftParams) -> None:
        """Both ends must be valid params of the same structure and shapes; valid float params
        stay valid in between since every param rule is an interval."""
        params.schedule.validate()

        def spec(tree):
            return jax.tree.structure(tree), [np.shape(x) for x in jax.tree.leaves(tree)]

        if spec(params.base) != spec(params.target):
            raise ValueError("Drift params: base and target must have the same fields and shapes")
        for name in ("base", "target"):
            try:
                self._env.validate_params(getattr(params, name))
            except ValueError as error:
                raise ValueError(f"Drift params.{name}: {error}") from error

    @staticmethod
    def params_at(clock: jax.Array, params: DriftParams):
        """The inner env's params at `clock` (see the class docstring)."""
        w = params.schedule.weight(clock)

        def blend(base, target):
            base, target = jnp.asarray(base), jnp.asarray(target)
            if jnp.issubdtype(base.dtype, jnp.floating):
                mixed = ((1.0 - w) * base + w * target).astype(base.dtype)
                return jnp.where(base == target, base, mixed)
            return jnp.where(w >= 0.5, target, base)

        return jax.tree.map(blend, params.base, params.target)

    def reset_env(self, key, params: DriftParams):
        obs, env_state = self._env.reset_env(key, self.params_at(0, params))
        return obs, DriftState(env_state, jnp.int32(0))

    def step_env(self, key, state: DriftState, action, params: DriftParams):
        obs, env_state, reward, terminated, info = self._env.step_env(
            key, state.env_state, action, self.params_at(state.clock, params))
        return obs, DriftState(env_state, state.clock + 1), reward, terminated, info

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        return self.reset_env(key, self.default_params if params is None else params)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state: DriftState, action, params=None):
        params = self.default_params if params is None else params
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, self.params_at(state.clock, params))
        return obs, DriftState(env_state, state.clock + 1), reward, terminated, truncated, info

    def action_space(self, params=None):
        return self._env.action_space(None if params is None else params.base)

    def observation_space(self, params=None):
        return self._env.observation_space(None if params is None else params.base)

    def reward_range(self, params: DriftParams):
        """Bounds over both ends (bandit envs): the reward range of any blend lies within."""
        ends = [self._env.reward_range(p) for p in (params.base, params.target)]
        if any(end is None for end in ends):
            return None
        return jnp.minimum(ends[0][0], ends[1][0]), jnp.maximum(ends[0][1], ends[1][1])


def drift_preset(env, name: str, schedule: DriftSchedule, params=None, **kwargs) -> DriftParams:
    """`DriftParams` from `params` (default: the env's) to the env's named preset target
    (`env.drift_presets[name](env, params, **kwargs)`), e.g. DynamicPricing-v0's
    "competitor_entry" at a step change: `drift_preset(env, "competitor_entry",
    DriftSchedule(start=500.0))`."""
    presets = getattr(env, "drift_presets", {})
    if name not in presets:
        raise ValueError(f"{getattr(env, 'name', type(env).__name__)} has no drift preset "
                         f"{name!r}; valid: {sorted(presets)}")
    params = env.default_params if params is None else params
    return DriftParams(base=params, target=presets[name](env, params, **kwargs), schedule=schedule)
