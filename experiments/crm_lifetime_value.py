"""Customer lifetime value on CouponCRM-v0: PPO, DQN and A2C vs rule baselines.

Each learner trains with `vmap` over seeds (training keys 0..seeds-1) in one jit. Every policy
is then evaluated on the same `runs` evaluation runs of `episodes` customers each (run r uses
evaluation key 1000 + r: common random numbers, so all policies meet the same customers and
draws as far as their actions allow). A learner's seed scores the mean over the runs and the
learner's interval is over seeds; a rule's interval is over the runs. Intervals are 95%
Student-t. PPO and A2C act by sampling their trained stochastic policy (its argmax mostly
never contacts and is far worse: contacts pay when they are occasional); DQN acts greedily.
Writes `results/crm_lifetime_value.md` and `results/crm_lifetime_value.png`.

    python -m experiments.crm_lifetime_value [--quick]
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import ecomrl_jax  # noqa: E402
from ecomrl_jax.learners import a2c, dqn, ppo  # noqa: E402
from ecomrl_jax.envs.crm import policies as crm  # noqa: E402
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate  # noqa: E402

EVAL_KEY = 1000
COLUMNS = {"return": "lifetime value", "churned": "churn rate", "coupon_cost": "coupon spend",
           "coupon_per_purchase": "coupon spend / purchase", "contacts": "contacts",
           "purchases": "purchases"}


def learner_configs(total_timesteps: int) -> dict:
    """name -> (agent module, config, deterministic evaluation); tuned on CouponCRM-v0."""
    return {
        "PPO": (ppo, ppo.PPOConfig(total_timesteps=total_timesteps, num_envs=64, num_steps=64,
                                   ent_coef=0.001), False),
        "A2C": (a2c, a2c.A2CConfig(total_timesteps=total_timesteps, ent_coef=0.001), False),
        "DQN": (dqn, dqn.DQNConfig(total_timesteps=total_timesteps), True),
    }


def rule_policies(env, params) -> dict:
    """The rule baselines of `ecomrl_jax.envs.crm.policies`, including RFM rules tuned on the env card."""
    return {"never contact": crm.never_contact(env, params),
            "always discount 10%": crm.always_discount(env, params, 0),
            "RFM rules": crm.rfm_rules(env, params),
            "RFM rules (tuned: 2 / 3 weeks)": crm.rfm_rules(env, params, active_weeks=2,
                                                            contact_gap=3),
            "myopic uplift (knows latents)": crm.myopic_uplift(env, params)}


def train_learners(learners: dict, env, params, num_seeds: int) -> dict:
    """Train each learner vmapped over seeds; name -> (seed policies, curves, cpu s, wall s)."""
    trained = {}
    for name, (module, config, deterministic) in learners.items():
        cpu, wall = time.process_time(), time.perf_counter()
        train = jax.jit(jax.vmap(module.make_train(config, env, params)))
        state, curves = jax.block_until_ready(train(jax.random.split(jax.random.key(0), num_seeds)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        weights = module.network_params(state)
        policies = [module.make_policy(config, env, jax.tree.map(lambda x: x[seed], weights),
                                       deterministic=deterministic) for seed in range(num_seeds)]
        trained[name] = (policies, {k: np.asarray(v) for k, v in curves.items()}, cpu, wall)
        print(f"{name}: {config.total_timesteps:,} steps x {num_seeds} seeds in {cpu:.0f} s CPU "
              f"({wall:.0f} s wall)", flush=True)
    return trained


def run_means(env, params, policy, num_runs: int, episodes: int) -> dict:
    """metric -> (num_runs,) per-run means on evaluation keys EVAL_KEY + r, plus
    `coupon_per_purchase` (coupon spend over purchases of the run)."""
    runs = [evaluate(env, params, policy, jax.random.key(EVAL_KEY + r), episodes)
            for r in range(num_runs)]
    means = {m: np.array([float(np.mean(run[m])) for run in runs]) for m in runs[0]}
    means["coupon_per_purchase"] = means["coupon_cost"] / np.maximum(means["purchases"], 1e-9)
    return means


def run(num_seeds: int, total_timesteps: int, num_runs: int, episodes: int, out: Path) -> dict:
    env, params = ecomrl_jax.make("CouponCRM-v0")
    trained = train_learners(learner_configs(total_timesteps), env, params, num_seeds)
    rules = rule_policies(env, params)
    samples = {}
    for name, (policies, *_) in trained.items():
        per_seed = [run_means(env, params, p, num_runs, episodes) for p in policies]
        samples[name] = {m: np.array([s[m].mean() for s in per_seed]) for m in COLUMNS}
    for name, policy in rules.items():
        samples[name] = run_means(env, params, policy, num_runs, episodes)
    summary = {name: {m: confidence_interval(s[m]) for m in COLUMNS} for name, s in samples.items()}
    best_learner = max(trained, key=lambda n: summary[n]["return"][0])
    best_rule = max(rules, key=lambda n: summary[n]["return"][0])
    ab = compare(env, params, rules[best_rule], trained[best_learner][0][0], jax.random.key(EVAL_KEY),
                 episodes)
    timing = {name: (t[2], t[3]) for name, t in trained.items()}
    write_table(summary, best_learner, best_rule, ab, timing, num_seeds, total_timesteps, num_runs,
                episodes, out / "crm_lifetime_value.md")
    plot_curves({n: t[1] for n, t in trained.items()},
                {n: summary[n]["return"][0] for n in rules}, "episode_return",
                "CouponCRM-v0: lifetime value while training vs rules", out / "crm_lifetime_value.png")
    return summary


def goal_line(summary, best_learner: str, best_rule: str, metric: str, goal: bool = True) -> str:
    """The best learner against the best rule on `metric`; with `goal`, whether it meets this
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


def format_rows(summary: dict, columns: dict) -> list[str]:
    """Markdown header and one row per policy: mean [low, high] of each column."""
    lines = ["| policy | " + " | ".join(columns.values()) + " |",
             "|---|" + "---|" * len(columns)]
    for name, stats in summary.items():
        cells = ["{:.3g} [{:.3g}, {:.3g}]".format(*stats[m]) for m in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def timing_line(timing: dict, total_timesteps: int, num_seeds: int) -> str:
    parts = [f"{name} {cpu:.0f} s CPU / {wall:.0f} s wall" for name, (cpu, wall) in timing.items()]
    return (f"Learners: {total_timesteps:,} env steps per seed, {num_seeds} seeds (training keys "
            f"0..{num_seeds - 1}), vmapped over seeds, one jit each (compile included): "
            + "; ".join(parts) + ".")


def write_table(summary, best_learner, best_rule, ab, timing, num_seeds, total_timesteps,
                num_runs, episodes, path: Path) -> None:
    lines = ["# Customer lifetime value on CouponCRM-v0", "",
             timing_line(timing, total_timesteps, num_seeds),
             f"Evaluation: {num_runs} runs of {episodes} customers (keys {EVAL_KEY}.."
             f"{EVAL_KEY + num_runs - 1}), the same for every policy. Learners: mean over seeds "
             "[95% t-interval over seeds], each seed averaged over the runs; rules: mean [95% "
             "t-interval over runs]. Per customer (episode of up to 78 weeks): lifetime value = "
             "return (margin - coupon cost - contact cost); churn rate = share lost within the "
             "horizon; coupon spend / purchase = total incentive paid / purchases. PPO and A2C "
             "sample their stochastic policy; DQN is greedy.", ""]
    lines += format_rows(summary, COLUMNS)
    lines += ["", goal_line(summary, best_learner, best_rule, "return"), "",
              f"A/B on common random numbers, {best_learner} seed 0 vs {best_rule}, {episodes} "
              f"paired customers (key {EVAL_KEY}):", "",
              comparison_table(ab, (best_rule, best_learner))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path.with_suffix('.md')} and {path}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds and a shorter run (CPU, minutes)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--total-steps", type=int, default=None, help="env steps per seed")
    parser.add_argument("--runs", type=int, default=None, help="evaluation runs")
    parser.add_argument("--episodes", type=int, default=None, help="customers per evaluation run")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 5)
    total = args.total_steps or (2_000_000 if args.quick else 4_000_000)
    runs = args.runs or (10 if args.quick else 20)
    episodes = args.episodes or 1000
    if seeds < 2 or runs < 2 or total < 1 or episodes < 1:
        parser.error("--seeds and --runs must be >= 2 (for an interval); --total-steps and "
                     "--episodes positive")
    return run(seeds, total, runs, episodes, args.out)


if __name__ == "__main__":
    main()
