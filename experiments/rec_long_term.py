"""Long-term value in recommendation: PPO vs myopic oracle vs popularity vs random on ShopperRec-v0.

PPO trains with `vmap` over seeds (`harness.train_seeds`). Every policy is then evaluated, per
seed, on the same episodes (common random numbers; seed i uses evaluation key 1000 + i), and
the table reports the mean over seeds with a 95% Student-t interval. Writes
`results/rec_long_term.md` and `results/rec_long_term.png`.

    python -m experiments.rec_long_term [--quick]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.recommendation import policies as baselines
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate
from ecomrl_jax.learners import ppo
from ecomrl_jax.logging import metric_rows, plot_learning_curve

METRICS = ("return", "length", "clicks", "purchases", "revenue")


def run(num_seeds: int, total_timesteps: int, eval_episodes: int, out: Path,
        quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("ShopperRec-v0")
    trained = harness.train_seeds(ppo, ppo.PPOConfig(total_timesteps=total_timesteps), env, params,
                                  num_seeds, label="PPO", quiet=quiet)
    ppo_policies, curves = trained.policies, trained.curves
    baseline_policies = {"myopic oracle": baselines.myopic_oracle(env, params),
                         "popularity": baselines.popularity_policy(env, params),
                         "random": baselines.random_policy(env, params)}
    policies = {"PPO": ppo_policies, **{name: [p] * num_seeds for name, p in baseline_policies.items()}}
    per_seed = {name: {m: [] for m in METRICS} for name in policies}
    for name, seed_policies in policies.items():
        for seed, policy in enumerate(seed_policies):
            episodes = evaluate(env, params, policy, jax.random.key(1000 + seed), eval_episodes)
            for m in METRICS:
                per_seed[name][m].append(float(np.mean(episodes[m])))
    summary = {name: {m: confidence_interval(np.array(v)) for m, v in metrics.items()}
               for name, metrics in per_seed.items()}
    ab = compare(env, params, baseline_policies["myopic oracle"], ppo_policies[0], jax.random.key(1000),
                 eval_episodes)
    write_table(summary, ab, num_seeds, total_timesteps, eval_episodes, trained,
                out / "rec_long_term.md")
    plot(curves, summary, out / "rec_long_term.png")
    return summary


def write_table(summary, ab, num_seeds, total_timesteps, eval_episodes, trained, path: Path) -> None:
    ppo_ret, oracle_ret = summary["PPO"]["return"], summary["myopic oracle"]["return"]
    gain = ppo_ret[0] / oracle_ret[0] - 1.0
    separated = ppo_ret[1] > oracle_ret[2]
    lines = [
        "# Long-term value on ShopperRec-v0", "",
        f"PPO: {total_timesteps:,} env steps per seed, {num_seeds} seeds (keys 0..{num_seeds - 1}), "
        f"vmapped, compile {trained.compile_s:.0f} s, run {trained.run_s:.0f} s. Each policy "
        f"evaluated on {eval_episodes} episodes per seed, greedy, same episodes for every policy. "
        "Mean over seeds [95% t-interval].", "",
        "| policy | return | session length | clicks | purchases | revenue |",
        "|---|---|---|---|---|---|",
    ]
    for name, stats in summary.items():
        cells = [harness.cell(stats[m], ".2f") for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"PPO vs myopic oracle on return: {gain:+.1%}; intervals "
              f"{'do not overlap' if separated else 'overlap'}. "
              f"Goal (>= +10%, non-overlapping): {'met' if gain >= 0.10 and separated else 'NOT met'}.",
              "", "A/B on common random numbers, PPO seed 0 vs myopic oracle, "
              f"{eval_episodes} paired episodes (key 1000):", "",
              comparison_table(ab, ("myopic oracle", "PPO"))]
    harness.write_table(lines, path)


def plot(curves, summary, path: Path) -> None:
    baseline_returns = {name: stats["return"][0] for name, stats in summary.items() if name != "PPO"}
    plot_learning_curve(metric_rows(curves, first_update=0), path, baselines=baseline_returns,
                        title="ShopperRec-v0: PPO learning curve vs baselines")
    print(f"wrote {path.with_suffix('.md')} and {path}")


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and a shorter run (CPU, minutes)")
    full = ppo.PPOConfig().total_timesteps
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("env steps per seed", full // 2, full),
        episodes=harness.Size("evaluation episodes per seed", 500, 2000))
    return run(args.seeds, args.total_steps, args.episodes, args.out, args.quiet)


if __name__ == "__main__":
    main()
