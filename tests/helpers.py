"""Helpers shared by the learner tests."""

import jax
import numpy as np


def quick_jit(fn, *args):
    """`fn` compiled for `args` with the fast-to-compile, slow-to-run XLA CPU backend setting."""
    return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})


def assert_identical(a, b):
    """Same tree structure and bit-identical leaves (PRNG keys compared by their data)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
