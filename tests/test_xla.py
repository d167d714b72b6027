"""The XLA CPU flags (ecomrl_jax/xla.py): appended to a user's XLA_FLAGS, read when jax starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecomrl_jax.xla import CPU_FLAGS, add_cpu_flags

ROOT = Path(__file__).resolve().parent.parent


def python(code: str, xla_flags: str | None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter from the repo root with XLA_FLAGS set (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


OURS = " ".join(CPU_FLAGS)
EIGEN, WIDTH = CPU_FLAGS


@pytest.mark.parametrize("before, after", [
    ("", OURS),
    ("--xla_dump_to=/tmp/x", f"--xla_dump_to=/tmp/x {OURS}"),
    (OURS, OURS),
    (WIDTH, f"{WIDTH} {EIGEN}"),
    # the user's own settings win
    ("--xla_cpu_multi_thread_eigen=true", f"--xla_cpu_multi_thread_eigen=true {WIDTH}"),
    ("--xla_cpu_prefer_vector_width=128", f"--xla_cpu_prefer_vector_width=128 {EIGEN}"),
])
def test_add_cpu_flags_appends_to_the_users_flags(before, after, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", before)
    assert add_cpu_flags() == after == os.environ["XLA_FLAGS"]


@pytest.mark.slow
def test_importing_ecomrl_jax_keeps_the_users_flag_and_adds_ours(tmp_path):
    """The user's --xla_dump_to takes effect (XLA writes its dump) and ours is appended, before
    the import of ecomrl_jax itself starts jax's backend (gymnax creates arrays on import)."""
    dump = tmp_path / "dump"
    done = python("import os, ecomrl_jax, jax; from jax._src import xla_bridge; "
                  "print(bool(xla_bridge._backends)); jax.jit(lambda x: x + 1)(1.0); "
                  "print(os.environ['XLA_FLAGS'])", f"--xla_dump_to={dump}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", f"--xla_dump_to={dump}", *CPU_FLAGS]
    assert any(dump.iterdir())


@pytest.mark.slow
def test_xla_reads_its_flags_when_jax_starts_not_at_import():
    """Why ecomrl_jax/__init__.py sets the flag first: a flag set after `import jax` still
    counts (here an unknown one aborts), one set after the backend started is ignored."""
    late = "import os, jax; os.environ['XLA_FLAGS'] = '--no_such_flag'; jax.numpy.ones(1)"
    assert "Unknown flag" in python(late, None).stderr
    too_late = ("import os, jax; jax.numpy.ones(1); os.environ['XLA_FLAGS'] = '--no_such_flag'; "
                "print(jax.numpy.ones(2).sum())")
    assert python(too_late, None).stdout.strip() == "2.0"


# draws and whether their lowering loops; run with and without ecomrl_jax imported
DRAWS = ("import jax, numpy as np; k = jax.random.key(3); "
         "print('while' in jax.jit(jax.random.normal).lower(k).as_text(), "
         "np.asarray(jax.random.key_data(jax.random.split(k, 3))).tolist(), "
         "np.asarray(jax.vmap(lambda k: jax.random.normal(k, (5,)))(jax.random.split(k))).tolist())")


@pytest.mark.slow
def test_threefry_is_unrolled_on_cpu_with_the_same_numbers():
    """Importing ecomrl_jax swaps jax's rolled CPU threefry loop for the unrolled lowering of
    GPUs and TPUs: no loop left, and the keys and numbers of plain jax, bit for bit."""
    plain = python(DRAWS, None)
    ours = python("import ecomrl_jax; " + DRAWS, None)
    assert plain.returncode == ours.returncode == 0, plain.stderr + ours.stderr
    assert plain.stdout.startswith("True ") and ours.stdout.startswith("False ")
    assert plain.stdout[len("True "):] == ours.stdout[len("False "):]
