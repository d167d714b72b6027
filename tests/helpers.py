"""Helpers shared by the tests."""

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parent.parent

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


def to_numpy(tree):
    """`tree` with numpy arrays for leaves."""
    return jax.tree.map(np.asarray, tree)


def scripted_episode(env, params, key, actions):
    """Per-step records of `env` reset with `key` and stepped (auto-resetting) with `actions`
    (leading axis: steps): the state before and after, the observation, action, final
    observation, reward, flags and the rest of `info`."""
    k_reset, k_steps = jax.random.split(key)
    obs0, state = env.reset(k_reset, params)

    def body(carry, x):
        obs, state = carry
        k, action = x
        next_obs, nxt, reward, terminated, truncated, info = env.step(k, state, action, params)
        info = dict(info)
        final = info.pop("final_observation")
        info.pop("terminated"), info.pop("truncated")
        return (next_obs, nxt), dict(state=state, obs=obs, action=action, next=nxt, final=final,
                                     reward=reward, terminated=terminated, truncated=truncated,
                                     info=info)

    keys = jax.random.split(k_steps, actions.shape[0])
    return jax.lax.scan(body, (obs0, state), (keys, actions))[1]


def train_once(module, config, env, params):
    """`(config, (final runner state, metrics))` of `module`'s jitted `train` on key 0: the
    tiny run that a learner's test file shares between its tests."""
    return config, jax.jit(module.make_train(config, env, params))(jax.random.key(0))


def run_quickly(module: str, argv: list[str]):
    """`<module>.main(argv)` (e.g. module "experiments.ad_pacing") in a fresh Python compiling
    with `QUICK_COMPILE`, which only a process's first use of jax can set: a smoke run of an
    experiment or the CLI is tiny, so compiling is most of its time. Returns what `main`
    returned; what it prints goes to the test's captured output (read it with `capfd`)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.pkl"
        code = (f"import pickle, sys; from {module} import main; "
                "pickle.dump(main(sys.argv[2:]), open(sys.argv[1], 'wb'))")
        flags = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE}".strip()
        subprocess.run([sys.executable, "-c", code, str(result), *argv], cwd=REPO, check=True,
                       env={**os.environ, "XLA_FLAGS": flags})
        return pickle.loads(result.read_bytes())
