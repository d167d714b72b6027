"""Helpers shared by the tests."""

import jax
import numpy as np

# XLA flags for tiny programs: backend optimisation off and the older CPU fusion code
# generation, each about halving XLA's compile time (tests/conftest.py sets them for the fast
# suite; slow, long runs keep XLA's defaults).
QUICK_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def assert_identical(a, b):
    """Same tree structure and bit-identical leaves (PRNG keys compared by their data)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

