"""Hyperparameter search at an equal env-step budget: grid vs random vs TPE vs PBT tuning PPO.

Three envs, PPO configs as their experiments train it: ShopperRec-v0 (PPO's defaults),
DynamicPricing-v0 seasonal (`pricing_rl`: revenue / 50 as reward, gamma 0.5) and AdBidding-v1
(`ad_pacing`: gamma 1). Searched: `lr` in [1e-4, 1e-2] (log) and `ent_coef` in [0, 0.05].
Each search has the same budget, `trials` x `total_steps` env steps:
- grid, random, TPE: `trials` runs of `total_steps` steps each through `ecomrl_jax.tune.run_tune`
  (Optuna ask/tell, `batch` trials trained side by side, one training key per search: common
  random numbers). Grid: `trials` points, log-spaced lr x evenly spaced ent_coef, in a
  shuffled order (seed r; `tune`'s grid sampler). TPE: the first batch random
  (`n_startup_trials` = batch), then TPE with the constant liar. A trial's score is its mean training return over its last tenth of
  updates; the search picks the best score.
- PBT (`ecomrl_jax.learners.pbt`): a population of `trials` members of `total_steps` steps each,
  initial values drawn from the same ranges, 8 generations, or fewer where a generation must be
  longer to see each env finish an episode (its fitness is the return of finished episodes); exploit (bottom quarter copies
  the top quarter) and explore (x0.8 or x1.25, clipped). Its pick: the member with the best
  fitness (mean return of the training episodes finished) in the last generation.

Winner's curse: a search's own best score is a noisy maximum, so every search's pick is
evaluated afresh on held-out episodes: grid, random and TPE's best config is retrained with the
search's key (the same run again), PBT's best member is taken as trained; the greedy policy runs
`episodes` episodes on evaluation key 1000 + repeat (every method of a repeat meets the same
episodes; on DynamicPricing the unscaled revenue). The whole search is repeated `repeats` times
(repeat r: training key and sampler seed r); intervals are 95% Student-t over repeats.
Budget to reach 95%: env steps a search spent until its best-so-far training score first reached
95% of the best mean final training score of any method on that env (trials of a batch finish
together; PBT counts whole generations of the population); mean over the repeats that reached it.
On AdBidding-v1 the evaluation also reports value as % of the hindsight bound (`ad_pacing`'s
measure) for the picked policy and for linear pacing on the same days. Writes
`results/tuning.md` and `results/tuning.png`.

    python -m experiments.tuning [--quick]
"""

import functools
import math
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np
import optuna
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution, FloatDistribution

import ecomrl_jax
from ecomrl_jax import tune
from ecomrl_jax.envs.ads import policies as ads
from ecomrl_jax.envs.pricing.dynamic_pricing import SETTINGS
from ecomrl_jax.evaluation import confidence_interval, evaluate
from ecomrl_jax.learners import pbt, ppo
from ecomrl_jax.wrappers import ScaleReward

EVAL_KEY = harness.EVAL_KEY
METHODS = ("grid", "random", "TPE", "PBT")
BOUNDS = {"lr": (1e-4, 1e-2), "ent_coef": (0.0, 0.05)}
ENVS = ("ShopperRec-v0", "DynamicPricing-v0 (seasonal)", "AdBidding-v1")
TARGET = 0.95  # budget to reach this fraction of the best score
REWARD_SCALE = 50.0  # DynamicPricing: PPO sees revenue / 50, as in pricing_rl


class Task(NamedTuple):
    env: Any  # the env PPO trains on
    eval_env: Any  # the env the pick is evaluated on (unscaled reward)
    params: Any
    base: dict  # PPOConfig fields besides the searched ones

    def retrain(self, config, key):
        """PPO's final runner state on this task; one compile per task (the config is traced)."""
        return _train_ppo(config, key, self.params, self.env)[0]


@functools.partial(jax.jit, static_argnums=3)
def _train_ppo(config, key, params, env):
    return ppo.make_train(config, env, params)(key)


def make_task(name: str, total_steps: int) -> Task:
    """An env of ENVS with PPO configured as its own experiment trains it (`rec_long_term`'s
    defaults, `pricing_rl`'s seasonal setting, `ad_pacing`'s gamma 1)."""
    base = {"total_timesteps": total_steps}
    if name == "ShopperRec-v0":
        env, params = ecomrl_jax.make(name)
        return Task(env, env, params, base)
    if name == "AdBidding-v1":
        env, params = ecomrl_jax.make(name)
        return Task(env, env, params, {**base, "num_envs": 64, "num_steps": 96, "gamma": 1.0})
    env, params = ecomrl_jax.make("DynamicPricing-v0", **SETTINGS["seasonal"], reward_profit=0.0)
    return Task(ScaleReward(env, REWARD_SCALE), env, params,
                {**base, "gamma": 0.5, "num_envs": 64, "num_steps": 32, "update_epochs": 4,
                 "hidden_size": 64})


def grid_values(trials: int) -> dict:
    """`trials` grid points: 2 ent_coef values (4 from 16 trials on) x log-spaced lr."""
    num_ent = 4 if trials >= 16 else 2
    low, high = BOUNDS["lr"]
    return {"lr": np.geomspace(low, high, trials // num_ent).tolist(),
            "ent_coef": np.linspace(*BOUNDS["ent_coef"], num_ent).tolist()}


class Search(NamedTuple):
    budget: np.ndarray  # env steps spent at each batch's (PBT: generation's) end
    scores: np.ndarray  # the batch's (generation's) best training score
    pick: Any  # (config, network params) of the search's pick
    values: dict  # the pick's searched hyperparameters


def run_optuna(method: str, task: Task, trials: int, batch: int, repeat: int) -> Search:
    """One grid / random / TPE search through `tune.run_tune`; its best trial retrained."""
    space = {n: FloatDistribution(low, high, log=n == "lr") for n, (low, high) in BOUNDS.items()}
    sampler = "random"
    if method == "grid":  # every point once, in the order of the repeat's seed
        space = {n: CategoricalDistribution(v) for n, v in grid_values(trials).items()}
        sampler = "grid"
    elif method == "TPE":
        with warnings.catch_warnings():  # constant_liar is experimental in Optuna 4
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=repeat, constant_liar=True,
                                                 n_startup_trials=batch)
    result = tune.run_tune(ppo, ppo.PPOConfig, task.env, task.params, task.base, space, trials,
                           batch=batch, sampler=sampler, seed=repeat, quiet=True)
    done = sorted((t for t in result.study.trials if "env_steps" in t.user_attrs),
                  key=lambda t: t.number)  # diverged trials (no value) spent steps too
    steps = np.cumsum([t.user_attrs["env_steps"] for t in done], dtype=np.float64)
    ends = list(range(batch, len(done), batch)) + [len(done)]  # a batch's trials finish together
    scores = [max(-math.inf if t.value is None else t.value for t in done[a:b])
              for a, b in zip([0] + ends[:-1], ends)]
    best = result.study.best_trial
    config = tune.config_from(ppo.PPOConfig, task.base, best.params)
    state = task.retrain(config, jax.random.fold_in(jax.random.key(repeat), 0))  # the search's key
    return Search(steps[np.array(ends) - 1], np.array(scores), (config, ppo.network_params(state)),
                  dict(best.params))


def run_pbt(task: Task, trials: int, repeats: int) -> list[Search]:
    """`repeats` PBT searches (key r each), vmapped in one jit."""
    config = ppo.PPOConfig(**task.base)
    episode = -(-int(task.params.max_steps_in_episode) // config.num_steps)  # updates per episode
    ready_every = min(config.num_updates, max(episode, config.num_updates // 8))
    settings = pbt.PBTConfig(population=trials, ready_every=ready_every,
                             truncation=0.25, explore=tuple((n, *b) for n, b in BOUNDS.items()))
    train = pbt.make_train(settings, ppo, config, task.env, task.params)
    keys = jax.numpy.stack([jax.random.key(r) for r in range(repeats)])
    population, metrics = jax.jit(jax.vmap(train))(keys)
    weights = ppo.network_params(population.states)
    searches = []
    for r in range(repeats):
        fitness = np.asarray(metrics["fitness"][r])  # (generations, population)
        best = int(np.argmax(fitness[-1]))
        values = {n: float(getattr(population.configs, n)[r, best]) for n in BOUNDS}
        searches.append(Search(np.asarray(metrics["env_steps"][r], np.float64), fitness.max(1),
                               (config.replace(**values),
                                jax.tree.map(lambda x: x[r, best], weights)), values))
    return searches


def held_out(name: str, task: Task, policy, repeat: int, episodes: int) -> dict:
    """Mean return of `policy` on repeat `repeat`'s evaluation episodes, and on AdBidding its
    value as % of the hindsight bound (`ad_pacing`'s measure: mean of per-day ratios)."""
    key = jax.random.key(EVAL_KEY + repeat)
    e = evaluate(task.eval_env, task.params, policy, key, episodes)
    result = {"return": float(np.mean(e["return"]))}
    if name == "AdBidding-v1":
        bound = np.asarray(ads.evaluated_bounds(task.eval_env, task.params, key, episodes))
        result["bound_pct"] = 100.0 * float(np.mean(np.asarray(e["expected_value"]) / bound))
    return result


def pick_policy(task: Task, search: Search):
    """The greedy policy of a search's pick."""
    config, weights = search.pick
    return ppo.make_policy(config, task.env, weights, deterministic=True)


def budget_to_reach(searches: list[Search], target: float) -> tuple[float, int]:
    """(mean env steps to a best-so-far score >= target over the searches that got there, how many)."""
    reached = [s.budget[np.argmax(np.maximum.accumulate(s.scores) >= target)]
               for s in searches if s.scores.max() >= target]
    return (float(np.mean(reached)) if reached else math.nan), len(reached)


def run_env(name: str, trials: int, batch: int, total_steps: int, repeats: int,
            episodes: int) -> dict:
    """method -> {"searches", "evaluations"} for one env, plus "linear pacing" on AdBidding."""
    task = make_task(name, total_steps)
    results = {}
    for method in METHODS:
        start = time.perf_counter()
        searches = (run_pbt(task, trials, repeats) if method == "PBT" else
                    [run_optuna(method, task, trials, batch, r) for r in range(repeats)])
        results[method] = {"searches": searches,
                           "evaluations": [held_out(name, task, pick_policy(task, s), r, episodes)
                                           for r, s in enumerate(searches)]}
        print(f"{name} {method}: {repeats} searches of {trials} x {total_steps:,} env steps in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    if name == "AdBidding-v1":
        pacing = ads.linear_pacing(task.eval_env, task.params)
        results["linear pacing"] = np.array([held_out(name, task, pacing, r, episodes)["bound_pct"]
                                             for r in range(repeats)])
    return results


def summarise(results: dict) -> dict:
    """method -> table cells: held-out return (and % of bound), search score, budget to 95%."""
    methods = [m for m in METHODS if m in results]
    best = max(np.mean([s.scores.max() for s in results[m]["searches"]]) for m in methods)
    rows = {}
    for m in methods:
        searches, evaluations = results[m]["searches"], results[m]["evaluations"]
        steps, reached = budget_to_reach(searches, TARGET * best)
        rows[m] = {
            "held_out": confidence_interval([e["return"] for e in evaluations]),
            "bound_pct": (confidence_interval([e["bound_pct"] for e in evaluations])
                          if "bound_pct" in evaluations[0] else None),
            "search": confidence_interval([s.scores.max() for s in searches]),
            "budget": steps, "reached": reached, "repeats": len(searches),
            "total": float(np.mean([s.budget[-1] for s in searches])),
            "picks": [s.values for s in searches]}
    return rows


def write_table(summaries: dict, pacing: np.ndarray | None, args, seconds: float,
                path: Path) -> None:
    lines = ["# Hyperparameter search at an equal budget: grid vs random vs TPE vs PBT (PPO)", "",
             f"Each search: {args.trials} x {args.total_steps:,} env steps (grid / random / TPE: "
             f"{args.trials} trials, {args.batch} at a time; PBT: a population of {args.trials}), "
             f"searching lr in [1e-4, 1e-2] (log) and ent_coef in [0, 0.05]; {args.repeats} "
             f"repeats of the whole search (training key and sampler seed r = 0..{args.repeats - 1}). "
             f"Held-out: the search's pick (best config retrained with the search's key; PBT's "
             f"best final member), greedy, on {args.episodes} evaluation episodes (key "
             f"{EVAL_KEY} + r), mean [95% t-interval over repeats]. Search score: the search's own "
             "best training score (a noisy maximum). Budget to 95%: env steps until the best-so-far "
             "training score reached 95% of the best method's mean final search score (mean over "
             f"the repeats that reached it, how many did). Total run time {seconds:.0f} s.", ""]
    for name, rows in summaries.items():
        lines += [f"## {name}", "",
                  "| method | held-out return | search score | budget to 95% (env steps) | "
                  "env steps per search | picks (lr, ent_coef) |", "|---|---|---|---|---|---|"]
        for m, row in rows.items():
            budget = (f"{row['budget']:,.0f} ({row['reached']}/{row['repeats']})"
                      if row["reached"] else f"not reached (0/{row['repeats']})")
            picks = "; ".join(f"{p['lr']:.1e}, {p['ent_coef']:.3f}" for p in row["picks"])
            lines.append(f"| {m} | {harness.cell(row['held_out'])} | {harness.cell(row['search'])} "
                         f"| {budget} | {row['total']:,.0f} | {picks} |")
        winner = max(rows, key=lambda m: rows[m]["held_out"][0])
        lines += ["", f"Best held-out mean: {winner}; " + overlap_line(rows, winner), ""]
        if name == "AdBidding-v1" and pacing is not None:
            lines += ["Value as % of the hindsight bound (`ad_pacing`'s measure), same evaluation "
                      f"days: linear pacing {harness.ci_cell(pacing, '.2f')}; "
                      + "; ".join(f"{m} {harness.cell(r['bound_pct'], '.2f')}"
                                  for m, r in rows.items()) + ".", ""]
    harness.write_table(lines, path)


def overlap_line(rows: dict, winner: str) -> str:
    """Which methods' held-out intervals overlap the winner's."""
    low = rows[winner]["held_out"][1]
    tied = [m for m in rows if m != winner and rows[m]["held_out"][2] >= low]
    return (f"its interval overlaps {', '.join(tied)}." if tied
            else "its interval is apart from every other method's.")


def plot(results: dict, path: Path) -> None:
    """Per env: best-so-far training score against env steps, mean over repeats per method."""
    fig = Figure(figsize=(4.5 * len(results), 4))
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, (name, methods) in zip(axes, results.items()):
        for i, m in enumerate(METHODS):
            searches = methods[m]["searches"]
            budget = searches[0].budget
            best = np.mean([np.maximum.accumulate(s.scores) for s in searches], axis=0)
            ax.plot(budget, best, "o-", ms=3, color=f"C{i}", label=m, drawstyle="steps-post")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.set_xlabel("env steps spent by the search")
        ax.set_ylabel("best-so-far training score")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "2 repeats, 8 trials, short runs (CPU, minutes)",
                                 seeds=False)
    parser.add_argument("--envs", nargs="+", choices=ENVS, default=list(ENVS))
    args = harness.parse_sizes(
        parser, argv, trials=harness.Size("trials per search (PBT: population)", 8, 16, minimum=4),
        batch=harness.Size("trials trained at a time (grid, random, TPE)", 4, 4),
        total_steps=harness.Size("env steps per trial / member", 49_152, 200_000),
        repeats=harness.Size("repeats of the whole search", 2, 3, minimum=2),
        episodes=harness.Size("held-out evaluation episodes", 32, 128))
    if args.trials % 4:
        parser.error(f"--trials must be a multiple of 4 (the grid and PBT's quarter), got {args.trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    results = {name: run_env(name, args.trials, args.batch, args.total_steps, args.repeats,
                             args.episodes) for name in args.envs}
    pacing = results.get("AdBidding-v1", {}).pop("linear pacing", None)
    summaries = {name: summarise(r) for name, r in results.items()}
    write_table(summaries, pacing, args, time.perf_counter() - start, args.out / "tuning.md")
    plot(results, args.out / "tuning.png")
    return summaries


if __name__ == "__main__":
    main()
