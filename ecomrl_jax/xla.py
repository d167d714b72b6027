"""XLA CPU settings made on import: flags added to the user's own XLA_FLAGS (`add_cpu_flags`),
and jax's unrolled threefry lowering on CPU (`unroll_cpu_threefry`).

On CPU, `jit(vmap(train))` over seeds can deadlock with XLA's multi-threaded Eigen kernels, so
the first flag turns them off. The second lets XLA use 512-bit vectors where the CPU has them
(AVX-512; XLA's default is 256): env steps up to ~1.4x faster in `benchmarks/env_throughput.py`
(AdBidding-v1 0.94M -> 1.33M at 4,096 envs), training unchanged; CPUs without AVX-512 ignore it.
XLA reads `XLA_FLAGS` once, when jax starts its backend (the first array or computation, not
`import jax`), and importing gymnax creates arrays. So `ecomrl_jax/__init__.py` calls
`add_cpu_flags()` before anything else: the CLI, the experiments, the benchmarks, the tests and
a user's own script get the flags by importing `ecomrl_jax` before they compute anything with jax.
"""

import os

CPU_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "--xla_cpu_prefer_vector_width=512")


def add_cpu_flags() -> str:
    """Append each of CPU_FLAGS to `XLA_FLAGS`, keeping the user's flags; a user's own setting
    of the same flag wins. Returns the resulting `XLA_FLAGS`."""
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in CPU_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
    return flags


def unroll_cpu_threefry() -> bool:
    """Lower jax's threefry PRNG hash on CPU as GPUs and TPUs do: unrolled (the same bits).

    On CPU jax emits its 20 rounds as a rolled 5-iteration loop, to save compile time; every
    iteration writes its arrays to memory and nothing fuses with the numbers' consumer. In the
    profiles of `benchmarks/env_throughput.py` and `benchmarks/train_throughput.py` those loops
    and their copies were the largest cost (61% of AdBidding-v0's step); unrolled, env steps
    and training run up to ~1.8x faster and compile no slower. Returns False, changing
    nothing, where this jax version keeps the lowering elsewhere (jax internals).
    """
    try:
        from jax._src.random import threefry2x32 as threefry
    except ImportError:
        try:
            from jax._src import prng as threefry  # jax < 0.10
        except ImportError:
            return False
    from jax.interpreters import mlir

    primitive = getattr(threefry, "threefry2x32_p", None)
    unrolled = getattr(threefry, "_threefry2x32_lowering_rule", None)
    if primitive is None or unrolled is None:
        return False
    mlir.register_lowering(primitive, unrolled, platform="cpu")
    return True
