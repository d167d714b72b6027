"""What the experiments share: seed training with progress, argument parsing, tables, figures.

`train_seeds` trains one learner vmapped over seeds (keys `split(key(0), seeds)`, as
`jit(vmap(make_train))` did) in chunks of updates, with a progress line between chunks, and
times compilation (AOT `lower().compile()`) apart from running. Importing `ecomrl_jax` here
first sets the XLA CPU flag (`ecomrl_jax/xla.py`) before jax starts.
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

import ecomrl_jax  # noqa: F401  (first: the XLA CPU flag)
import jax
import numpy as np
from matplotlib.figure import Figure

from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.learners.loop import run_updates
from ecomrl_jax.logging import ProgressBar, chunk_sizes

EVAL_KEY = 1000  # evaluation key of seed / run 0: every policy meets the same episodes


class Trained(NamedTuple):
    policies: list  # one policy per seed
    curves: dict  # metric -> array (seeds, updates)
    compile_s: float  # AOT compilation of init and the chunk functions
    run_s: float  # compiled code only


def train_seeds(module, config, env, params, num_seeds: int, deterministic: bool = True,
                label: str = "learner", quiet: bool = False, **learner_kwargs) -> Trained:
    """Train `module`'s learner on `num_seeds` seeds (training keys 0..seeds-1) vmapped;
    `learner_kwargs` go to `make_learner` (e.g. `init_network_params`)."""
    learner = module.make_learner(config, env, params, **learner_kwargs)
    keys = jax.random.split(jax.random.key(0), num_seeds)
    sizes = list(chunk_sizes(learner.num_updates))
    if not quiet:
        print(f"{label}: compiling", file=sys.stderr, flush=True)
    start = time.perf_counter()
    init = jax.jit(jax.vmap(learner.init)).lower(keys).compile()
    state_shape = jax.eval_shape(jax.vmap(learner.init), keys)
    chunks = {n: jax.jit(jax.vmap(partial(run_updates, learner, num_updates=n)))
              .lower(state_shape).compile() for n in set(sizes)}
    compile_s = time.perf_counter() - start
    progress = ProgressBar(learner.num_updates, learner.steps_per_update, num_seeds, label=label,
                           quiet=quiet)
    start = time.perf_counter()
    state, curves, done = init(keys), [], 0
    for n in sizes:
        state, metrics = chunks[n](state)
        curves.append(jax.device_get(metrics))
        done += n
        progress.update(done, metrics)
    run_s = time.perf_counter() - start
    curves = {k: np.concatenate([c[k] for c in curves], axis=1) for k in curves[0]}
    weights = module.network_params(state)
    policies = [module.make_policy(config, env, jax.tree.map(lambda x: x[seed], weights),
                                   deterministic=deterministic) for seed in range(num_seeds)]
    print(f"{label}: {int(curves['env_steps'][0, -1]):,} env steps x "
          f"{num_seeds} seeds, compile {compile_s:.1f} s, run {run_s:.1f} s", flush=True)
    return Trained(policies, curves, compile_s, run_s)


def train_learners(learners: dict, env, params, num_seeds: int, quiet: bool = False) -> dict:
    """name -> Trained for each `name -> (module, config, deterministic evaluation)`."""
    return {name: train_seeds(module, config, env, params, num_seeds, deterministic, name, quiet)
            for name, (module, config, deterministic) in learners.items()}


def make_parser(doc: str, quick_help: str, seeds: bool = True) -> argparse.ArgumentParser:
    """The arguments every experiment takes: --quick, --quiet, --seeds (if it trains), --out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--quiet", action="store_true", help="no progress lines while training")
    if seeds:
        parser.add_argument("--seeds", type=int, default=None,
                            help="training seeds, keys 0..seeds-1 (default 3 with --quick, else 5)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    return parser


def num_seeds(args) -> int:
    """--seeds, or 3 with --quick and 5 without."""
    return args.seeds or (3 if args.quick else 5)


class Size(NamedTuple):
    """An experiment's int option: its help, its default with --quick and without, its least
    valid value."""

    help: str
    quick: int
    full: int
    minimum: int = 1


def parse_sizes(parser: argparse.ArgumentParser, argv, **sizes: Size) -> argparse.Namespace:
    """Parse `argv` with an int option `--<name>` (underscores as dashes) per entry of `sizes`:
    one left unset takes its --quick or full default, one below its minimum is a parser error.
    With `--seeds` (`make_parser`), `args.seeds` becomes `num_seeds`, which must be >= 2 (for
    a confidence interval)."""
    for name, size in sizes.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=size.help)
    args = parser.parse_args(argv)
    if hasattr(args, "seeds"):
        args.seeds = num_seeds(args)
        if args.seeds < 2:
            parser.error(f"--seeds must be >= 2 (for an interval), got {args.seeds}")
    for name, size in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, size.quick if args.quick else size.full)
        if getattr(args, name) < size.minimum:
            parser.error(f"--{name.replace('_', '-')} must be >= {size.minimum}, "
                         f"got {getattr(args, name)}")
    return args


def cell(interval, fmt: str = ".3f") -> str:
    """'mean [low, high]' of a (mean, low, high) interval, each number formatted by `fmt`."""
    mean, low, high = interval
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def ci_cell(values, fmt: str = ".3f") -> str:
    """`cell` of the 95% Student-t interval of the mean of `values`."""
    return cell(confidence_interval(np.asarray(values)), fmt)


def timing_rows(trained: dict, num_seeds: int) -> list[str]:
    """Markdown table: env steps per seed, compile and run seconds, env steps/s over all seeds."""
    lines = ["| learner | env steps per seed | compile s | run s (wall) | env steps/s |",
             "|---|---|---|---|---|"]
    for name, t in trained.items():
        steps = int(t.curves["env_steps"][0, -1])
        lines.append(f"| {name} | {steps:,} | {t.compile_s:.1f} | {t.run_s:.1f} | "
                     f"{steps * num_seeds / t.run_s:,.0f} |")
    return lines


def format_rows(summary: dict, columns: dict) -> list[str]:
    """Markdown header and one row per policy: mean [low, high] of each column."""
    lines = ["| policy | " + " | ".join(columns.values()) + " |",
             "|---|" + "---|" * len(columns)]
    for name, stats in summary.items():
        lines.append(f"| {name} | " + " | ".join(cell(stats[m], ".3g") for m in columns) + " |")
    return lines


def timing_line(trained: dict, total_timesteps: int, num_seeds: int) -> str:
    """One sentence: the learners' budget and seeds, and each one's compile and run seconds."""
    parts = [f"{name} compile {t.compile_s:.0f} s, run {t.run_s:.0f} s" for name, t in trained.items()]
    return (f"Learners: {total_timesteps:,} env steps per seed, {num_seeds} seeds (training keys "
            f"0..{num_seeds - 1}), vmapped over seeds: " + "; ".join(parts) + ".")


def goal_line(summary, best_learner: str, best_rule: str, metric: str, goal: bool = True) -> str:
    """The best learner against the best rule on `metric`; with `goal`, whether it meets the
    experiment's goal: ahead with non-overlapping intervals."""
    learner, rule = summary[best_learner][metric], summary[best_rule][metric]
    apart = learner[1] > rule[2]
    line = (f"Best learner {best_learner} ({learner[0]:.2f}) vs best rule {best_rule} "
            f"({rule[0]:.2f}): {learner[0] / rule[0] - 1.0:+.1%}, intervals "
            f"{'do not overlap' if apart else 'overlap or the rule is ahead'}.")
    if goal:
        line += (" Goal (best learner beats best rule, non-overlapping 95% intervals): "
                 f"{'met' if apart else 'NOT met'}.")
    return line


def write_table(lines: list[str], path: Path) -> None:
    """Write the markdown `lines` to `path` and print them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> None:
    """Lay out and save `fig` at `path` (the table beside it, same stem, `.md`)."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    print(f"wrote {path.with_suffix('.md')} and {path}")


def plot_curves(curves: dict, baselines: dict, metric: str, title: str, path: Path,
                bins: int = 100) -> None:
    """Training `metric` against env steps, one line per learner (mean over seeds, binned into
    at most `bins` points), baselines as dashed lines."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for i, (name, c) in enumerate(curves.items()):
        steps, values = c["env_steps"][0], c[metric].mean(0)
        edges = np.linspace(0, steps.size, min(bins, steps.size) + 1).astype(int)
        ax.plot([steps[a:b].mean() for a, b in zip(edges[:-1], edges[1:])],
                [values[a:b].mean() for a, b in zip(edges[:-1], edges[1:])],
                color=f"C{i}", label=f"{name} (mean over {c[metric].shape[0]} seeds)")
    for i, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, color=f"C{len(curves) + i}", ls="--", label=name)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=7)
    save_figure(fig, path)
