"""Wrappers: episode statistics, observation flattening and normalisation, legacy 5-tuple step."""

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.wrappers.purerl import GymnaxWrapper

GYMNAX_INFO_KEYS = ("terminated", "truncated", "final_observation")


def business_metric_names(info: dict) -> list[str]:
    """The env's own per-step scalar metrics in `info` (clicks, revenue, ...)."""
    return sorted(k for k, v in info.items() if k not in GYMNAX_INFO_KEYS and jnp.ndim(v) == 0)


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    running: dict  # "return", "length" and each business metric, summed over the episode so far
    last: dict  # the same sums for the most recently finished episode


class EpisodeStatistics(GymnaxWrapper):
    """Sums reward, length and the env's business metrics over each episode.

    `info["episode"]` holds the totals of the most recently finished episode and
    `info["episode_done"]` is True on the step that finished it.
    """

    def _zeros(self, key, params) -> dict:
        obs, state = self._env.reset(key, params)
        action = self._env.action_space(params).sample(key)
        info = jax.eval_shape(self._env.step, key, state, action, params)[-1]
        names = ["return", "length"] + business_metric_names(info)
        return {name: jnp.zeros((), jnp.float32) for name in names}

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        zeros = self._zeros(key, params)
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
