"""Cumulative regret of bandit algorithms: 10-arm Bernoulli (with the Lai-Robbins bound), price
points (PricingBandit-v0) and a contextual linear bandit; throughput of 10,000 vectorised runs.

Every algorithm plays the same keys on an env (run i uses key i of `split(key(seed), runs)`;
seeds: Bernoulli 0, pricing 1, contextual 2, throughput 3). Each (algorithm, env) is one
`jit(vmap(vmap(run)))` over a grid of configs and the runs, in chunks of runs. Checks that
Thompson sampling and UCB have sub-linear regret below epsilon-greedy's on the Bernoulli
bandit; textbook UCB1 (c=1) explores so much that it passes epsilon-greedy only after ~10^4
rounds, so it is also run alone against epsilon-greedy over a long horizon (`--long-rounds`).
Writes `results/bandit_regret.md` and `results/bandit_regret.png`.

    python -m experiments.bandit_regret [--quick]
"""

import math
import time
from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.learners.bandits import (
    UCB1, BernoulliThompson, EpsilonGreedy, GaussianThompson, LinearThompson, LinUCB, Softmax,
    lai_robbins_constant, make_run)
from ecomrl_jax.logging import ProgressBar

SEEDS = {"BernoulliBandit-v0": 0, "PricingBandit-v0": 1, "ContextualLinearBandit-v0": 2}
THROUGHPUT_SEED, THROUGHPUT_RUNS = 3, 10_000
NUM_POINTS = 200  # rounds at which curves are recorded
EPS = "epsilon-greedy (eps=0.1)"
BERNOULLI, LONG = "BernoulliBandit-v0", "BernoulliBandit-v0, long horizon"


def non_contextual(reward_scale: float, prior_mean: float, noise_std: float) -> dict:
    """Label -> list of configs (one compiled program per list) for a non-contextual env whose
    rewards span about `reward_scale`; scale-dependent hyperparameters follow it."""
    gaussian = GaussianThompson(prior_mean=prior_mean, prior_std=noise_std, noise_std=noise_std)
    return {
        EPS: [EpsilonGreedy(epsilon=0.1)],
        "epsilon-greedy (eps_t = min(1, 50/t))": [EpsilonGreedy(epsilon=1.0, decay_steps=50.0,
                                                                schedule="inverse")],
        "UCB1 (c=1) | UCB (c=0.5)": [UCB1(c=1.0), UCB1(c=0.5)],
        "Thompson (Beta-Bernoulli)": [BernoulliThompson()],
        f"Thompson (Gaussian, known sigma={noise_std:g})": [gaussian],
        "Thompson (Gaussian, estimated sigma)": [gaussian.replace(estimate_noise=True)],
        f"softmax (tau={0.05 * reward_scale:g})": [Softmax(temperature=0.05 * reward_scale)],
    }


CONTEXTUAL = {
    "LinUCB (alpha=1)": [LinUCB(alpha=1.0)],
    "linear Thompson (v=0.5)": [LinearThompson(v=0.5)],
    EPS + ", context-free": [EpsilonGreedy(epsilon=0.1)],
    "Thompson (Gaussian), context-free": [GaussianThompson(noise_std=1.0)],
}


def labels(group_label: str, configs: list) -> list[str]:
    """One label per config of a group ("A | B" names a grid of two)."""
    names = group_label.split(" | ")
    if len(names) != len(configs):
        raise ValueError(f"{group_label!r} names {len(names)} configs, got {len(configs)}")
    return names


def regret_curves(groups: dict, env, params, num_runs: int, num_rounds: int, seed: int, chunk: int,
                  title: str = "", quiet: bool = False):
    """Cumulative regret at NUM_POINTS rounds: {group: array (configs, runs, points)}, the rounds,
    compile seconds and run seconds (compiled code only). All groups share one program (far
    quicker to compile than one program each), run on equal chunks of at most `chunk` runs and
    at most a tenth of the runs, with a progress line between chunks."""
    points = np.linspace(num_rounds / NUM_POINTS, num_rounds, NUM_POINTS).round().astype(int)
    index = jnp.asarray(points - 1)
    grids = {group: jax.tree.map(lambda *x: jnp.stack(x), *configs)
             for group, configs in groups.items()}

    def curves(grids, keys):
        run = lambda algo, key: make_run(algo, env, params, num_rounds)(key)[1]  # noqa: E731
        batched = jax.vmap(jax.vmap(run, in_axes=(None, 0)), in_axes=(0, None))
        return {group: batched(grid, keys)["cumulative_regret"][..., index]
                for group, grid in grids.items()}

    keys = jax.random.split(jax.random.key(seed), num_runs)
    limit = min(chunk, -(-num_runs // 10))
    chunk = max(d for d in range(1, limit + 1) if num_runs % d == 0)
    start = time.perf_counter()
    compiled = jax.jit(curves).lower(grids, keys[:chunk]).compile()
    compile_s = time.perf_counter() - start
    num_configs = sum(len(c) for c in groups.values())
    progress = ProgressBar(num_runs, num_rounds * num_configs, label=title, unit="runs", quiet=quiet)
    start, parts = time.perf_counter(), []
    for i in range(0, num_runs, chunk):
        parts.append(jax.tree.map(np.asarray, compiled(grids, keys[i:i + chunk])))
        progress.update(i + chunk)
    out = {group: np.concatenate([p[group] for p in parts], axis=1) for group in groups}
    return out, points, compile_s, time.perf_counter() - start


def throughput(configs, env, params, num_rounds: int) -> dict:
    """Rounds/s of `jit(vmap(run))` over THROUGHPUT_RUNS runs of the first config (best of 2) and
    its AOT compile seconds."""
    run = jax.jit(jax.vmap(make_run(configs[0], env, params, num_rounds)))
    keys = jax.random.split(jax.random.key(THROUGHPUT_SEED), THROUGHPUT_RUNS)
    start = time.perf_counter()
    compiled = run.lower(keys).compile()
    compile_s = time.perf_counter() - start
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        best = min(best, time.perf_counter() - start)
    return {"rounds_per_s": THROUGHPUT_RUNS * num_rounds / best, "compile_s": compile_s,
            "rounds": num_rounds}


def summarise(curves: np.ndarray, points: np.ndarray) -> dict:
    """Final regret (mean, low, high), 95% band over the curve, and the second half's growth
    over the first half's regret (1 for linear regret, ln 2 / ln(T/2) for logarithmic)."""
    half = int(np.searchsorted(points, points[-1] // 2))
    band = np.array([confidence_interval(curves[:, j]) for j in range(len(points))])
    final, at_half = curves[:, -1].mean(), curves[:, half].mean()
    return {"final": confidence_interval(curves[:, -1]), "band": band,
            "growth": (final - at_half) / at_half, "slope": (final - at_half) / math.log(2)}


def run_env(title: str, env_id: str, groups: dict, num_runs: int, num_rounds: int, chunk: int,
            quiet: bool = False) -> dict:
    """Per algorithm label: summary and recorded rounds; plus the env's compile and run seconds."""
    env, params = ecomrl_jax.make(env_id)
    curves, points, compile_s, run_s = regret_curves(groups, env, params, num_runs, num_rounds,
                                                     SEEDS[env_id], chunk, title, quiet)
    print(f"{env_id}: {len(groups)} programs in one: compile {compile_s:.1f} s, run {run_s:.1f} s",
          flush=True)
    rows = {label: {**summarise(c, points), "points": points}
            for group, configs in groups.items()
            for label, c in zip(labels(group, configs), curves[group])}
    return {"rows": rows, "compile_s": compile_s, "run_s": run_s}


def checks(results: dict) -> list[tuple[str, bool]]:
    """Thompson and UCB: sub-linear (second half adds < half the first half's regret, linear
    adds all of it) and final regret below epsilon-greedy's (95% intervals apart); textbook
    UCB1 (c=1) is checked over the long horizon (at 10^4 rounds it is still level with it)."""
    out = []
    for label, names in ((BERNOULLI, ("Thompson (Beta-Bernoulli)", "UCB (c=0.5)")),
                         (LONG, ("UCB1 (c=1)",))):
        rows = results[label]["rows"]
        eps_mean, eps_low, _ = rows[EPS]["final"]
        for name in names:
            growth, (mean, _, high) = rows[name]["growth"], rows[name]["final"]
            out.append((f"{label}, {name}: sub-linear (growth {growth:.2f} < 0.5)", growth < 0.5))
            out.append((f"{label}, {name}: below {EPS} ({mean:.1f} [.., {high:.1f}] vs "
                        f"{eps_mean:.1f} [{eps_low:.1f}, ..])", high < eps_low))
    return out


def write_table(results: dict, sizes: dict, speed: dict, lai_robbins: float, checks_: list,
                path: Path) -> None:
    seeds = ", ".join(f"{k} {v}" for k, v in SEEDS.items())
    lines = ["# Bandit regret", "",
             "Cumulative pseudo-regret (sum over rounds of the best expected reward minus the "
             "chosen arm's), mean over runs [95% t-interval]. Growth: regret added over the second "
             "half of the rounds divided by the regret of the first half (1 for linear regret; "
             f"ln 2 / ln(T/2) for logarithmic regret). Seeds: {seeds}, throughput "
             f"{THROUGHPUT_SEED}; run i uses key i of split(key(seed), runs), so every algorithm "
             "meets the same keys.", ""]
    for label, result in results.items():
        runs, rounds, rows = *sizes[label], result["rows"]
        lines += [f"## {label}: {runs:,} runs x {rounds:,} rounds", "",
                  f"All algorithms in one program: compile {result['compile_s']:.1f} s, "
                  f"run {result['run_s']:.1f} s.", "",
                  "| algorithm | final cumulative regret [95% CI] | growth |", "|---|---|---:|"]
        for name, r in rows.items():
            mean, low, high = r["final"]
            lines.append(f"| {name} | {mean:.1f} [{low:.1f}, {high:.1f}] | {r['growth']:.2f} |")
        if label == BERNOULLI:
            thompson = rows["Thompson (Beta-Bernoulli)"]
            lines += ["", f"Lai-Robbins: sum_a Delta_a / KL(mu_a, mu*) = {lai_robbins:.2f}, so "
                      f"any consistent algorithm has regret >= {lai_robbins:.2f} ln t "
                      f"asymptotically ({lai_robbins * math.log(rounds):.1f} at t = {rounds:,}). "
                      "It bounds the slope in ln t, not finite-t regret: over the second half "
                      f"Thompson's regret grew {thompson['slope']:.1f} per unit of ln t, "
                      f"UCB (c=0.5)'s {rows['UCB (c=0.5)']['slope']:.1f}."]
        lines.append("")
    lines += [f"## Checks ({BERNOULLI})", ""]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks_]
    lines += ["", f"## Throughput: jit(vmap(run)) over {THROUGHPUT_RUNS:,} runs", "",
              "Best of 2 timed calls of the compiled program; compile time (AOT lower().compile()) "
              f"apart. Device: {jax.devices()[0].device_kind}.", "",
              "| env | algorithm | rounds per run | rounds/s | compile s |",
              "|---|---|---:|---:|---:|"]
    for (env_id, name), r in speed.items():
        lines.append(f"| {env_id} | {name} | {r['rounds']:,} | {r['rounds_per_s']:,.0f} | "
                     f"{r['compile_s']:.1f} |")
    harness.write_table(lines, path)


def plot(results: dict, lai_robbins: float, path: Path) -> None:
    fig = Figure(figsize=(5.3 * len(results), 4.8))
    colors = {}
    for i, (label, result) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        for name, r in result["rows"].items():
            color = colors.setdefault(name, f"C{len(colors) % 10}")
            mean, low, high = r["band"].T
            ax.plot(r["points"], mean, color=color, label=name)
            ax.fill_between(r["points"], low, high, color=color, alpha=0.25)
        if label in (BERNOULLI, LONG):
            t = np.arange(1, r["points"][-1] + 1)
            ax.plot(t, lai_robbins * np.log(t), color="k", ls="--", label="Lai-Robbins C ln t")
        if label == "ContextualLinearBandit-v0":
            ax.set_yscale("log")  # linear regret of context-free learners dwarfs the rest
        ax.set_title(label)
        ax.set_xlabel("round")
        ax.set_ylabel("cumulative regret (mean, 95% CI band)")
        ax.legend(fontsize=7)
    harness.save_figure(fig, path, dpi=110)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "fewer runs (CPU, ~4 min)", seeds=False)
    args = harness.parse_sizes(
        parser, argv, runs=harness.Size("runs per algorithm on Bernoulli", 1000, 10_000, 2),
        rounds=harness.Size("rounds on Bernoulli", 10_000, 10_000, NUM_POINTS),
        long_rounds=harness.Size("rounds of the long-horizon UCB1 (c=1) vs epsilon-greedy run",
                                 100_000, 100_000, NUM_POINTS))
    side = (100, 2_000) if args.quick else (2_000, 10_000)  # pricing and contextual
    bernoulli = non_contextual(reward_scale=1.0, prior_mean=0.5, noise_std=0.5)
    # pricing: rewards price x purchase in [0, 10]; the largest arm std is about 2.8
    pricing = non_contextual(reward_scale=10.0, prior_mean=2.5, noise_std=2.5)
    long_horizon = {EPS: bernoulli[EPS], "UCB1 (c=1)": [UCB1(c=1.0)]}
    plan = {BERNOULLI: (BERNOULLI, bernoulli, args.runs, args.rounds),
            LONG: (BERNOULLI, long_horizon, min(args.runs, 1000), args.long_rounds),
            "PricingBandit-v0": ("PricingBandit-v0", pricing, *side),
            "ContextualLinearBandit-v0": ("ContextualLinearBandit-v0", CONTEXTUAL, *side)}
    # chunks of 10^7 rounds keep the per-round outputs of one chunk within a few GB
    results = {label: run_env(label, env_id, groups, n, t, max(1, 10_000_000 // t), args.quiet)
               for label, (env_id, groups, n, t) in plan.items()}

    measured = {"BernoulliBandit-v0": bernoulli, "ContextualLinearBandit-v0": CONTEXTUAL}
    if args.quick:  # one of each kind: index, Beta sampling, linear
        measured = {
            "BernoulliBandit-v0": {k: bernoulli[k] for k in (EPS, "Thompson (Beta-Bernoulli)")},
            "ContextualLinearBandit-v0": {k: CONTEXTUAL[k] for k in ("LinUCB (alpha=1)",)}}
    speed = {}
    for env_id, groups in measured.items():
        env, params = ecomrl_jax.make(env_id)
        for group, configs in groups.items():
            r = throughput(configs, env, params, 20 if args.quick else 1000)
            speed[(env_id, labels(group, configs)[0])] = r
            print(f"throughput {env_id} {group}: {r['rounds_per_s']:,.0f} rounds/s", flush=True)

    lai_robbins = lai_robbins_constant(ecomrl_jax.make("BernoulliBandit-v0")[1].means)
    checks_ = checks(results)
    sizes = {label: (n, t) for label, (_, _, n, t) in plan.items()}
    write_table(results, sizes, speed, lai_robbins, checks_, args.out / "bandit_regret.md")
    plot(results, lai_robbins, args.out / "bandit_regret.png")
    return {"results": results, "checks": checks_, "throughput": speed}


if __name__ == "__main__":
    main()
