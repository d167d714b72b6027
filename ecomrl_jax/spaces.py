"""Spaces that gymnax.environments.spaces lacks, and the static action check every env uses."""

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from ecomrl_jax.rules import POSITIVE_INT, check_value


class _Indices(spaces.Space):
    """int32 arrays of a fixed `shape` whose entries index [0, n)."""

    def __init__(self, n: int, shape: tuple[int, ...]):
        self.n = n
        self.shape = shape
        self.dtype = jnp.int32

    def contains(self, x: jax.Array) -> jax.Array:
        """Whether `x` has this shape, an integer dtype and every entry in [0, n)."""
        x = jnp.asarray(x)
        if x.shape != self.shape or not jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.array(False)
        return jnp.all((x >= 0) & (x < self.n))


SEQUENTIAL_SLATE_MAX = 8  # slates up to this size are sampled draw by draw (`Slate.sample`)


class Slate(_Indices):
    """An ordered slate of `slate_size` distinct indices drawn from `num_candidates`.

    `sample` draws a uniformly random slate without repetition; `contains` checks
    shape, integer dtype, range and distinctness.
    """

    def __init__(self, num_candidates: int, slate_size: int):
        check_value(num_candidates, POSITIVE_INT, "Slate.num_candidates")
        check_value(slate_size, POSITIVE_INT, "Slate.slate_size")
        if slate_size > num_candidates:
            raise ValueError(f"Slate.slate_size must be <= num_candidates={num_candidates}, "
                             f"got {slate_size}")
        super().__init__(num_candidates, (slate_size,))
        self.slate_size = slate_size

    def __repr__(self) -> str:
        return f"Slate(num_candidates={self.n}, slate_size={self.slate_size})"

    def sample(self, key: jax.Array) -> jax.Array:
        """A uniformly random slate. Up to `SEQUENTIAL_SLATE_MAX` slots, draw by draw: the j-th
        slot is the r-th candidate not yet drawn, r uniform in [0, n - j) (k random integers
        and O(k^3) comparisons; a permutation of all n candidates sorts n random keys, which
        took ~99% of OBDClicks' random-action benchmark); longer slates take a random
        permutation's first k."""
        k = self.slate_size
        if k > SEQUENTIAL_SLATE_MAX:
            return jax.random.permutation(key, self.n)[:k].astype(self.dtype)
        ranks = jax.random.randint(key, (k,), 0, self.n - jnp.arange(k))
        slate = []
        for rank in ranks:
            # the rank-th candidate not in `slate`: the fixed point of c = rank + #{s <= c}
            # (rising from c = rank, it settles within len(slate) rounds)
            c = rank
            for _ in slate:
                c = rank + sum(s <= c for s in slate)
            slate.append(c)
        return jnp.stack(slate).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        distinct = x.shape == self.shape and jnp.sum(x[:, None] == x[None, :]) == self.slate_size
        return super().contains(x) & distinct


def check_action(env_name: str, action, shape: tuple[int, ...], integer: bool) -> jax.Array:
    """`action` as an array once its static shape and dtype are right (checked at trace time):
    a wrong shape is a ValueError, a non-integer where an index is expected a TypeError.
    Range rules are each env's own (documented on its card); each env class states its rule
    for an out-of-range index in `out_of_range_action`: "clip" (acts as the nearest valid
    index) or "ignore" (acts as doing nothing, whatever the index). A `Box` action is always
    clipped to the box, NaN acting as its low end. Either way `info["invalid_actions"]`
    counts the entries that broke the rule."""
    action = jnp.asarray(action)
    if integer and not jnp.issubdtype(action.dtype, jnp.integer):
        raise TypeError(f"{env_name} actions must be integers, got dtype {action.dtype}")
    if not integer and not jnp.issubdtype(action.dtype, jnp.number):
        raise TypeError(f"{env_name} actions must be numbers, got dtype {action.dtype}")
    if action.shape != tuple(shape):
        raise ValueError(f"{env_name} expects an action of shape {tuple(shape)}, got {action.shape}")
    return action


def shown_slots(action: jax.Array, num_candidates: int):
    """`(slots, shown, num_invalid)` of a checked integer slot action (a scalar or a slate) of
    a recommendation env, by their shared rule: a slot outside [0, num_candidates) or repeating
    an earlier slot of the slate is shown empty (`shown` False, its `slots` entry 0);
    `num_invalid` counts those slots as float32 for `info["invalid_actions"]`."""
    slots = jnp.atleast_1d(action).astype(jnp.int32)
    in_range = (slots >= 0) & (slots < num_candidates)
    earlier = jnp.tril(slots[:, None] == slots[None, :], k=-1)
    shown = in_range & ~jnp.any(earlier, axis=1)
    return jnp.where(shown, slots, 0), shown, jnp.sum(~shown).astype(jnp.float32)


class MultiDiscrete(_Indices):
    """`size` independent indices, each in [0, n) (e.g. one price-grid index per product)."""

    def __init__(self, n: int, size: int):
        check_value(n, POSITIVE_INT, "MultiDiscrete.n")
        check_value(size, POSITIVE_INT, "MultiDiscrete.size")
        super().__init__(n, (size,))
        self.size = size

    def __repr__(self) -> str:
        return f"MultiDiscrete(n={self.n}, size={self.size})"

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, 0, self.n, self.dtype)
