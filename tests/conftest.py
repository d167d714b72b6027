"""Test-wide setup, before any test module starts jax: the fast suite's programs are tiny, so XLA
compiles them with backend optimisation off (under half the compile time; `-m slow` keeps it
on for its long runs); importing ecomrl_jax then adds the XLA CPU flag that avoids deadlocks in
jit(vmap(train)) over seeds (ecomrl_jax/xla.py)."""

import os

QUICK_COMPILE = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    flags = os.environ.get("XLA_FLAGS", "")
    if config.option.markexpr == "not slow" and QUICK_COMPILE not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {QUICK_COMPILE}".strip()
    import ecomrl_jax  # noqa: F401
