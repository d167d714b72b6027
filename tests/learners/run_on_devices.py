"""Run tiny learners on meshes of 1, 2 and 4 devices and print their metrics as JSON (one line).

`python -m tests.learners.run_on_devices OUT [--sweep] NAME...` in a process whose `XLA_FLAGS` give it 4 CPU
devices (`--xla_force_host_platform_device_count=4`); `test_data_parallel` starts it, so the rest
of the suite keeps its one device. Per learner (2 seeds vmapped, `UPDATES` updates in two
chunks), JSON maps each run to its metrics (lists over seeds x updates) and final network params:
"1" and "4" devices; "2->1" runs the first chunk on 2 devices, checkpoints it (orbax), restores it
onto 1 device and runs the second there. "envs_per_device" is how many of a seed's envs one
device held in the 4-device run, "indivisible" the error of 6 envs on 4 devices; with --sweep,
"sweep" the scores of a 2-point x 3-seed sweep of the first learner (`UPDATES` updates of
TINY's envs and steps), its 6 runs on 1 and on 4 devices.
"""

import dataclasses
import json
import sys

import jax
import numpy as np

from ecomrl_jax import checkpoint, sweep
from ecomrl_jax.learners import LEARNERS
from ecomrl_jax.learners.loop import compile_updates, make_mesh
from tests.contract.test_learners import TINY, example_env

UPDATES = 6  # per run, in two chunks
SEEDS = 2


def make_learner(name: str, **overrides):
    config_cls, module = LEARNERS[name]
    env, params = example_env(name)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    config = config_cls(**{k: v for k, v in {**TINY, **overrides}.items() if k in fields})
    return module, module.make_learner(config, env, params)


def init(learner, mesh):
    with jax.set_mesh(mesh):
        return jax.jit(jax.vmap(learner.init))(jax.random.split(jax.random.key(0), SEEDS))


def as_lists(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64).tolist(), jax.device_get(tree))


def runs(name: str, directory: str) -> dict:
    module, learner = make_learner(name, num_envs=8)
    meshes = {n: make_mesh(n) for n in (1, 2, 4)}
    chunk = UPDATES // 2
    compiled = {}

    def run(n, state):
        if n not in compiled:
            compiled[n] = compile_updates(learner, state, chunk, meshes[n])
        return compiled[n](state)

    out = {}
    for n in (1, 4):
        state, first = run(n, init(learner, meshes[n]))
        if n == 4:
            leaf = jax.tree.leaves(state.loop.env_state)[0]
            out["envs_per_device"] = leaf.addressable_shards[0].data.shape[1]
        state, second = run(n, state)
        metrics = jax.tree.map(lambda a, b: np.concatenate([a, b], 1), first, second)
        out[str(n)] = {"metrics": as_lists(metrics), "params": as_lists(module.network_params(state))}
    state, first = run(2, init(learner, meshes[2]))
    checkpoint.save(directory, chunk, state, {"learner": name})
    state, _, _ = checkpoint.restore(directory, init(learner, meshes[1]))
    state, second = run(1, state)
    metrics = jax.tree.map(lambda a, b: np.concatenate([a, b], 1), first, second)
    out["2->1"] = {"metrics": as_lists(metrics), "params": as_lists(module.network_params(state))}
    return out


def indivisible(name: str) -> str:
    _, learner = make_learner(name, num_envs=6)
    try:
        init(learner, make_mesh(4))
    except ValueError as error:
        return str(error)
    return ""


def sweep_scores(name: str) -> dict:
    config_cls, module = LEARNERS[name]
    env, params = example_env(name)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    steps = UPDATES * TINY["num_envs"] * TINY["num_steps"]
    base = {k: v for k, v in {**TINY, "total_timesteps": steps}.items() if k in fields}
    field = sweep.traced_fields(config_cls)[0]  # e.g. lr: its default and twice that
    grid = {field: [getattr(config_cls(), field) * factor for factor in (1, 2)]}
    return {n: [row["scores"] for row in sweep.run_sweep(module, config_cls, env, params, base, grid,
                                                          num_seeds=3, quiet=True, devices=n)]
            for n in (1, 4)}


if __name__ == "__main__":
    directory, *names = sys.argv[1:]
    with_sweep = "--sweep" in names
    names = [name for name in names if name != "--sweep"]
    assert jax.device_count() == 4, jax.devices()
    result = {name: runs(name, f"{directory}/{name}") for name in names}
    result["indivisible"] = indivisible(names[0])
    if with_sweep:
        result["sweep"] = sweep_scores(names[0])
    print(json.dumps(result))
