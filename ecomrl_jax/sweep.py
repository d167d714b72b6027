"""Hyperparameter sweeps: a grid over a learner's traced config fields, trained as one vmapped `train`.

Every grid point x seed is one element of a batch of configs (`RunBatch`, which `tune` shares),
so the whole sweep compiles once (per chunk size) and runs vmapped over configs. Large grids run in chunks of `chunk_size`
runs to bound memory; each trains in chunks of updates, with a progress line between them. The
runs of a chunk are split over the devices (`devices`, default all; a chunk is padded with copies
of its last run to a multiple of them, and the copies dropped): they are independent, so each
device trains its share with no communication. A
point's score is the mean `episode_return` over the last tenth of its updates, summarised over
seeds with a 95% t-interval.
"""

import dataclasses
import functools
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from matplotlib.figure import Figure

from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.learners.loop import RUNS, make_mesh, run_updates
from ecomrl_jax.logging import ProgressBar, chunk_sizes


def traced_fields(config_cls) -> list[str]:
    """The config fields a sweep may vary: those that are pytree leaves (not static sizes)."""
    return [f.name for f in dataclasses.fields(config_cls) if f.metadata.get("pytree_node", True)]


def check_traced(name: str, config_cls, verb: str) -> None:
    """ValueError unless `name` is a traced field of `config_cls`: only those can vary between
    the runs of one vmapped `train` (a static size changes shapes). `verb`: what the caller
    does with the field ("sweep", "tune", "explore")."""
    valid = traced_fields(config_cls)
    if name not in valid:
        raise ValueError(f"cannot {verb} {name!r}: the {config_cls.__name__} fields that can vary "
                         f"are {valid} (sizes are static and need a separate run)")


def expand_grid(grid: dict[str, list[float]], config_cls) -> list[dict]:
    """All combinations of `grid` values, in row-major order; names must be traced fields."""
    for name, values in grid.items():
        check_traced(name, config_cls, "sweep")
        if not values:
            raise ValueError(f"grid for {name!r} has no values")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]


class RunBatch:
    """A batch of runs (one config and key each) of one learner on one env, trained side by side:
    `init` and `update` are one vmapped jit each over the runs' traced configs, the runs split
    over `devices` devices (default all) along their leading axis, with no communication. Sweeps
    and `tune` share it; every config must have the same static fields (sizes)."""

    def __init__(self, module, env, env_params, devices: int | None = None):
        self.split = NamedSharding(make_mesh(devices, RUNS), PartitionSpec(RUNS))

        def learner(config):
            return module.make_learner(config, env, env_params)

        def on_devices(state):
            return jax.lax.with_sharding_constraint(state, self.split)

        self.init = jax.jit(lambda configs, keys: on_devices(
            jax.vmap(lambda config, key: learner(config).init(key))(configs, keys)))

        @functools.partial(jax.jit, static_argnums=2)
        def update(configs, state, n):
            state, metrics = jax.vmap(lambda config, state: run_updates(learner(config), state, n))(
                configs, state)
            return on_devices(state), metrics

        self.update = update  # (configs, state, n updates) -> (state, metrics with a leading run axis)
        # (configs, keys, state, fresh) -> state with the runs where `fresh` initialised anew:
        # a new config takes over a run in the same compiled function (`tune` refills slots so)
        self.refill = jax.jit(lambda configs, keys, state, fresh: jax.tree.map(
            lambda new, old: jnp.where(fresh.reshape(fresh.shape + (1,) * (old.ndim - 1)), new, old),
            self.init(configs, keys), state))
        self.env_params = env_params

    def stack(self, configs: list, keys: list) -> tuple:
        """`configs` and `keys` stacked along a leading run axis and placed on the devices, padded
        with copies of the last run to a multiple of their number (drop the copies' results)."""
        padding = -len(configs) % self.split.mesh.size
        batch = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]),
                             *configs, *configs[-1:] * padding)
        return (jax.device_put(batch, self.split),
                jax.device_put(jnp.stack(keys + keys[-1:] * padding), self.split))


_BATCHES: dict = {}  # (learner module, env, devices) -> the latest RunBatch built for them


def run_batch(module, env, env_params, devices: int | None = None) -> RunBatch:
    """`RunBatch(module, env, env_params, devices)`, reused while `env_params` holds the same
    values (envs compare by their constructor arguments), so repeated sweeps and searches on one
    env compile once."""
    key = (module, env, devices)
    cached = _BATCHES.get(key)
    if cached is None or not _same_values(cached.env_params, env_params):
        cached = _BATCHES[key] = RunBatch(module, env, env_params, devices)
    return cached


def _same_values(a, b) -> bool:
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    return tree_a == tree_b and all(np.shape(x) == np.shape(y) and np.array_equal(x, y)
                                    for x, y in zip(leaves_a, leaves_b))


def run_sweep(module, config_cls, env, env_params, base: dict, grid: dict[str, list[float]],
              num_seeds: int, seed: int = 0, chunk_size: int | None = None,
              quiet: bool = False, devices: int | None = None) -> list[dict]:
    """Train every grid point with `num_seeds` seeds, the runs split over `devices` devices
    (default all); returns one row per point: the point's values, `score` = (mean, low, high)
    over seeds, and the per-seed `scores`."""
    points = expand_grid(grid, config_cls)
    configs = [config_cls(**{**base, **point}) for point in points]
    for config in configs:
        config.validate()
    runs = [(config, jax.random.fold_in(jax.random.key(seed), s)) for config in configs
            for s in range(num_seeds)]
    chunk_size = chunk_size or len(runs)
    first = module.make_learner(configs[0], env, env_params)  # its sizes are every point's (static)
    batched = run_batch(module, env, env_params, devices)

    scores = []
    for start in range(0, len(runs), chunk_size):
        chunk = runs[start:start + chunk_size]
        batch, keys = batched.stack([c for c, _ in chunk], [k for _, k in chunk])
        state, returns, done = batched.init(batch, keys), [], 0
        progress = ProgressBar(first.num_updates, first.steps_per_update, len(chunk), quiet=quiet,
                               label=f"runs {start + 1}-{start + len(chunk)} of {len(runs)}")
        for n in chunk_sizes(first.num_updates):
            state, metrics = batched.update(batch, state, n)
            metrics = jax.tree.map(lambda x: np.asarray(x)[:len(chunk)], metrics)  # no copies
            returns.append(metrics["episode_return"])
            done += n
            progress.update(done, metrics)
        returns = np.concatenate(returns, axis=1)
        scores.extend(final_score(returns).tolist())
    rows = []
    for i, point in enumerate(points):
        per_seed = np.array(scores[i * num_seeds:(i + 1) * num_seeds])
        score = confidence_interval(per_seed) if num_seeds > 1 else (per_seed[0], math.nan, math.nan)
        rows.append({**point, "score": score, "scores": per_seed.tolist()})
    return rows


def final_score(returns: np.ndarray) -> np.ndarray:
    """A run's score from its (runs, updates) episode returns: the mean over the last tenth of
    its updates (at least one)."""
    tail = max(1, returns.shape[1] // 10)
    return returns[:, -tail:].mean(axis=1)


def sweep_table(rows: list[dict], names: list[str]) -> str:
    """Markdown table: one line per grid point, score mean [95% CI over seeds]."""
    lines = ["| " + " | ".join(names) + " | episode return (mean [95% CI]) |",
             "|" + "---|" * (len(names) + 1)]
    for row in rows:
        mean, low, high = row["score"]
        lines.append("| " + " | ".join(f"{row[n]:g}" for n in names)
                     + f" | {mean:.3f} [{low:.3f}, {high:.3f}] |")
    return "\n".join(lines)


def plot_sweep(rows: list[dict], names: list[str], png_path) -> None:
    """A line with its interval band for one swept field, a heat map of means for two."""
    if len(names) not in (1, 2):
        raise ValueError(f"can plot a sweep over 1 or 2 fields, got {len(names)}: {names}")
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    means = np.array([r["score"][0] for r in rows])
    if len(names) == 1:
        xs = np.array([r[names[0]] for r in rows])
        ax.plot(xs, means, "o-")
        ax.fill_between(xs, [r["score"][1] for r in rows], [r["score"][2] for r in rows], alpha=0.25)
        ax.set_xlabel(names[0])
        ax.set_ylabel("episode return")
        if np.all(xs > 0) and xs.max() / xs.min() >= 100:
            ax.set_xscale("log")
    else:
        xs = sorted({r[names[1]] for r in rows})
        ys = sorted({r[names[0]] for r in rows})
        grid = means.reshape(len(ys), len(xs))
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="w")
        fig.colorbar(image, ax=ax, label="episode return")
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
