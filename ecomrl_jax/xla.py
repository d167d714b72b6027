"""The XLA CPU flag that jit(vmap(train)) over seeds needs, added to the user's own XLA_FLAGS.

On CPU, `jit(vmap(train))` over seeds can deadlock with XLA's multi-threaded Eigen kernels, so
the flag below turns them off. XLA reads `XLA_FLAGS` once, when jax starts its backend (the
first array or computation, not `import jax`), and importing gymnax creates arrays. So
`ecomrl_jax/__init__.py` calls `add_cpu_flags()` before anything else: the CLI, the
experiments, the benchmarks, the tests and a user's own script get the flag by importing
`ecomrl_jax` before they compute anything with jax.
"""

import os

CPU_FLAG = "--xla_cpu_multi_thread_eigen=false"


def add_cpu_flags() -> str:
    """Append CPU_FLAG to `XLA_FLAGS`, keeping the user's flags; a user's own setting of
    `--xla_cpu_multi_thread_eigen` wins. Returns the resulting `XLA_FLAGS`."""
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_FLAG.split("=")[0] not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()
    return os.environ["XLA_FLAGS"]
