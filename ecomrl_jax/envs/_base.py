"""Plumbing every env shares: comparison by constructor arguments and the params shape check.

Envs (and wrappers) are static arguments of jitted functions (gymnax's `step` is
`jit(..., static_argnames="self")`), so two envs built with the same arguments must be equal
and hash equal: then a second `make()` of the same configuration reuses every compiled
function, and caches keyed on the env hold one entry per configuration, not per object.
"""

import inspect
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


class CompareByArgs:
    """Equal and hash equal when of the same class and built with the same constructor
    arguments (defaults filled in; lists and arrays compared as tuples, **kwargs as items)."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        bound = inspect.signature(cls.__init__).bind_partial(self, *args, **kwargs)
        bound.apply_defaults()
        self._ctor_args = tuple((name, _hashable(value))
                                for name, value in list(bound.arguments.items())[1:])
        return self

    def __eq__(self, other):
        return type(self) is type(other) and self._ctor_args == other._ctor_args

    def __hash__(self):
        return hash((type(self), self._ctor_args))


def _hashable(value):
    """`value` with lists and arrays as tuples and dicts (e.g. **kwargs) as sorted items."""
    if isinstance(value, (np.ndarray, jax.Array)):
        value = np.asarray(value).tolist()
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def check_shapes(params, shapes: dict[str, tuple[int, ...]], where: str, sizes: str) -> None:
    """ValueError unless each field of `params` named in `shapes` is an array of that shape
    (not a list: that would be a pytree of scalars); `sizes` names the constructor arguments
    the shapes come from."""
    for field, shape in shapes.items():
        value = getattr(params, field)
        if not hasattr(value, "shape"):
            raise ValueError(f"{where}.{field} must be an array of shape {tuple(shape)}, "
                             f"got {type(value).__name__}")
        got = np.shape(value)
        if got != tuple(shape):
            raise ValueError(f"{where}.{field} must have shape {tuple(shape)} ({sizes}), "
                             f"got shape {got}")



class HorizonEndsEpisode:
    """For envs whose horizon is the problem's own end (a shopping session, a day of bidding, a
    selling season, OR-Gym's 30 periods) and whose observation shows the time: reaching
    `max_steps_in_episode` comes as `terminated`, never `truncated`, so learners (which bootstrap
    from the final observation on truncation) do not value time past the end. Envs of an ongoing
    process cut by a time limit (Inventory-v0, ToyRec-v0, bandits) keep gymnax's truncation."""

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        terminated = jnp.logical_or(terminated, truncated)
        truncated = jnp.zeros_like(truncated)
        return obs, state, reward, terminated, truncated, {**info, "terminated": terminated,
                                                           "truncated": truncated}
