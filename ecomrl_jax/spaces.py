"""Spaces that gymnax.environments.spaces lacks."""

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces


class Slate(spaces.Space):
    """An ordered slate of `slate_size` distinct indices drawn from `num_candidates`.

    `sample` draws a uniformly random slate without repetition; `contains` checks
    shape, integer dtype, range and distinctness.
    """

    def __init__(self, num_candidates: int, slate_size: int):
        for name, value in (("num_candidates", num_candidates), ("slate_size", slate_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if not 1 <= slate_size <= num_candidates:
            raise ValueError(
                f"slate_size must be in [1, num_candidates={num_candidates}], got {slate_size}"
            )
        self.n = num_candidates
        self.slate_size = slate_size
        self.shape = (slate_size,)
        self.dtype = jnp.int32

    def __repr__(self) -> str:
        return f"Slate(num_candidates={self.n}, slate_size={self.slate_size})"

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.permutation(key, self.n)[: self.slate_size].astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape or not jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.array(False)
        in_range = jnp.all((x >= 0) & (x < self.n))
        distinct = jnp.sum(x[:, None] == x[None, :]) == self.slate_size
        return in_range & distinct
