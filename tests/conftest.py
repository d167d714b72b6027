"""Test-wide setup: importing ecomrl_jax first adds the XLA CPU flag that avoids deadlocks in
jit(vmap(train)) over seeds (ecomrl_jax/xla.py), before any test module starts jax."""

import ecomrl_jax  # noqa: F401
