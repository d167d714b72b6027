"""Test-wide setup: XLA CPU flag that avoids deadlocks in jit(vmap(train)) over seeds."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
