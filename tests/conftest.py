"""Test-wide setup, before any test module starts jax: the fast suite's programs are tiny, so XLA
compiles them quickly (`QUICK_COMPILE`: backend optimisation off and the older, faster to
compile CPU fusion code generation, together under a quarter of the compile time; `-m slow`
keeps the defaults for its long runs); importing ecomrl_jax then adds the XLA CPU flag that
avoids deadlocks in jit(vmap(train)) over seeds (ecomrl_jax/xla.py)."""

import os

from tests.helpers import QUICK_COMPILE


def pytest_configure(config):
    flags = os.environ.get("XLA_FLAGS", "")
    if config.option.markexpr == "not slow" and QUICK_COMPILE not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {QUICK_COMPILE}".strip()
    import ecomrl_jax  # noqa: F401
