"""RL, grid base-stock and the perfect-foresight oracle on SupplyChain-v1 (OR-Gym InvManagement).

OR-Gym's defaults (three stages, lead times (3, 5, 10), Poisson(20) demand, 30 periods,
alpha = 0.97), for both variants: backlog (OR-Gym InvManagement-v0) and lost sales (-v1).
PPO acts on the continuous order of every stage (`Box`); DQN on the `order_grid` variant
(ORDER_GRID per stage, len(ORDER_GRID) ** 3 actions). Both train with `vmap` over seeds
(keys 0..seeds-1) on the env's undiscounted profit divided by REWARD_SCALE, with their own
gamma. Base-stock levels come from `grid_search` over echelon levels (key 1), maximising
OR-Gym's discounted profit (the reported metric, as OR-Gym optimises it). Every policy then
runs the same episodes (key 2, common random numbers), and the perfect-foresight oracle solves
each of those episodes as a linear program with its realised demand. Reported: OR-Gym's
episode reward (profit discounted by alpha ** t, `info["discounted_profit"]`), as a fraction of
the oracle's, and the undiscounted profit, mean [95% t-interval] over seeds for learners (each
seed's mean over episodes) and over episodes otherwise, next to OR-Gym's published figures.
Writes `results/supply_chain.md` and `results/supply_chain.png`.

    python -m experiments.supply_chain [--quick]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.inventory import foresight, policies
from ecomrl_jax.evaluation import confidence_interval, evaluate
from ecomrl_jax.learners import dqn, ppo
from ecomrl_jax.logging import metric_rows, plot_learning_curve
from ecomrl_jax.wrappers import ScaleReward

REWARD_SCALE = 10.0
ORDER_GRID = (0.0, 10.0, 20.0, 30.0, 40.0, 60.0)
LEVELS = (np.arange(50, 131, 10), np.arange(125, 326, 25), np.arange(250, 651, 50))  # echelon S
PPO_CONFIG = ppo.PPOConfig(lr=3e-4, gamma=0.99, ent_coef=0.0, num_envs=64, num_steps=30,
                           update_epochs=4, num_minibatches=4, hidden_size=64)
DQN_CONFIG = dqn.DQNConfig(gamma=0.99, lr=5e-4, num_envs=16, learning_starts=2_000,
                           epsilon_end=0.02, hidden_size=64)
METRICS = ("discounted_profit", "profit")
VARIANTS = {"backlog": True, "lost sales": False}  # OR-Gym InvManagement-v0, -v1
# OR-Gym's mean episode reward (discounted profit, 30 periods), from the authors' results
# notebook notebooks/inv_management_plots.ipynb (hubbs5/or-gym @ a092b92; arXiv:2008.06319).
ORACLE = "oracle (perfect foresight)"
OR_GYM = {"backlog": {"PPO": 438.8, "base-stock (grid)": 388.0, ORACLE: 546.8},
          "lost sales": {"PPO": 409.8, "base-stock (grid)": 378.5, ORACLE: 542.7}}


def episode_metrics(env, params, policy, episodes: int) -> dict:
    """Per-episode discounted (OR-Gym's reward) and undiscounted profit on the key-2 episodes."""
    out = evaluate(env, params, policy, jax.random.key(2), episodes)
    return {m: np.asarray(out[m], np.float64) for m in METRICS}


def oracle_metrics(env, params, episodes: int) -> dict:
    """The perfect-foresight LP on each key-2 episode's realised demand."""
    demands = foresight.episode_demands(env, params, jax.random.key(2), episodes)
    solutions = [foresight.perfect_foresight(env, params, d) for d in demands]
    return {m: np.array([getattr(s, m) for s in solutions]) for m in METRICS}


def run_variant(env, params, learners, num_seeds, search_episodes, episodes, quiet):
    """(summary: policy -> metric -> (mean, low, high), notes, PPO curves, oracle gap): the gap
    is the least oracle - policy discounted profit over every episode (and seed), >= 0.
    `learners`: name -> (module, config, env to train on)."""
    oracle = oracle_metrics(env, params, episodes)
    search = policies.grid_search(env, params, policies.base_stock_policy,
                                  (np.stack(policies.product_grid(*LEVELS), axis=1),),
                                  jax.random.key(1), search_episodes, metric="discounted_profit")
    levels = search.best[0]
    base = episode_metrics(env, params, policies.base_stock_policy(env, levels), episodes)
    summary = {name: {m: confidence_interval(x[m]) for m in METRICS}
               for name, x in ((ORACLE, oracle), ("base-stock (grid)", base))}
    notes = {ORACLE: "LP per episode (scipy HiGHS), undiscounted profit of the same plan",
             "base-stock (grid)": "echelon levels (" + ", ".join(f"{x:.0f}" for x in levels) + ")"}
    gap = np.min(oracle["discounted_profit"] - base["discounted_profit"])
    curves = None
    for name, (module, config, learn_env) in learners.items():
        trained = harness.train_seeds(module, config, learn_env, params, num_seeds, label=name,
                                      quiet=quiet)
        seed_curves, seconds = trained.curves, trained.compile_s + trained.run_s
        per_seed = [episode_metrics(learn_env, params, p, episodes) for p in trained.policies]
        summary[name] = {m: confidence_interval([s[m].mean() for s in per_seed]) for m in METRICS}
        notes[name] = f"{config.total_timesteps:,} steps/seed, {seconds:.0f} s"
        gap = min(gap, *(np.min(oracle["discounted_profit"] - s["discounted_profit"])
                         for s in per_seed))
        curves = seed_curves if name == "PPO" else curves
    return summary, notes, curves, float(gap)


def run(learners, num_seeds, search_episodes, episodes, out: Path, quiet: bool = False) -> dict:
    """Both variants with the same env objects (one compilation of each evaluation program)."""
    env, params = ecomrl_jax.make("SupplyChain-v1")
    learners = {name: (module, config, ScaleReward(ecomrl_jax.make("SupplyChain-v1", **kwargs)[0],
                                                            REWARD_SCALE))
                for name, (module, config, kwargs) in learners.items()}
    results = {variant: run_variant(env, params.replace(backlog=backlog), learners, num_seeds,
                                    search_episodes, episodes, quiet)
               for variant, backlog in VARIANTS.items()}
    write_table(results, num_seeds, search_episodes, episodes, out / "supply_chain.md")
    plot(*results["backlog"][:3], out / "supply_chain.png")
    return {variant: result[0] for variant, result in results.items()}


def write_table(results, num_seeds, search_episodes, episodes, path: Path) -> None:
    lines = [
        "# SupplyChain-v1 (OR-Gym InvManagement defaults): RL, echelon base-stock and the "
        "perfect-foresight oracle", "",
        f"Base-stock: grid search over {np.prod([len(x) for x in LEVELS])} echelon level triples, "
        f"{search_episodes} episodes (key 1), maximising the discounted profit. Learners: "
        f"{num_seeds} seeds (keys 0..{num_seeds - 1}), vmapped, greedy at evaluation, trained on "
        f"the undiscounted profit / {REWARD_SCALE:g} with their own gamma; PPO on the Box action "
        f"(lr {PPO_CONFIG.lr}, {PPO_CONFIG.num_envs} envs x {PPO_CONFIG.num_steps} steps, gamma "
        f"{PPO_CONFIG.gamma}); DQN on order_grid={ORDER_GRID} ({len(ORDER_GRID) ** 3} actions, "
        f"gamma {DQN_CONFIG.gamma}). Oracle: each evaluation episode solved as a linear program "
        "with its realised demand known in advance (an upper bound no causal policy reaches). "
        f"Evaluation: {episodes} episodes of 30 periods (key 2, the same for every policy). Mean "
        "[95% t-interval] over seeds for learners, over episodes otherwise; the fraction of the "
        "oracle divides the mean and both bounds by the oracle's mean on the same episodes.", "",
        "OR-Gym column: the authors' mean episode reward from their results notebook "
        "(hubbs5/or-gym, notebooks/inv_management_plots.ipynb @ a092b92; Hubbs et al., "
        "arXiv:2008.06319): their PPO is RLlib's after 2M steps, the mean episode reward of the "
        "last training iteration; their base-stock (optimised by MIP) and oracle (a deterministic "
        "program with the realised demand) are means over 10 runs, not over our episodes.", "",
    ]
    for variant, (summary, notes, _, gap) in results.items():
        oracle_mean = summary[ORACLE]["discounted_profit"][0]
        or_gym_id = "InvManagement-v0" if variant == "backlog" else "InvManagement-v1"
        lines += [f"## {variant.capitalize()} (OR-Gym {or_gym_id})", "",
                  "| policy | discounted return (OR-Gym reward) | fraction of oracle | "
                  "profit (undiscounted) | OR-Gym published | notes |",
                  "|---|---|---|---|---|---|"]
        for name, stats in summary.items():
            mean, low, high = stats["discounted_profit"]
            profit = stats["profit"]
            published = OR_GYM[variant].get(name)
            lines.append(
                f"| {name} | {mean:.1f} [{low:.1f}, {high:.1f}] | {mean / oracle_mean:.3f} "
                f"[{low / oracle_mean:.3f}, {high / oracle_mean:.3f}] | {profit[0]:.1f} "
                f"[{profit[1]:.1f}, {profit[2]:.1f}] | "
                f"{'-' if published is None else f'{published:.1f}'} | {notes[name]} |")
        verdict = ("the oracle bounds every policy" if gap >= -1e-3
                   else "NEGATIVE: the oracle is not an upper bound here, a bug")
        lines += ["", f"Least margin of the oracle over any policy on any episode (and seed): "
                  f"{gap:.2f} ({verdict}).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print("\n".join(lines))


def plot(summary, notes, curves, path: Path) -> None:
    """PPO's learning curve on the backlog variant (training episodes' OR-Gym reward) with
    every final result as a line."""
    rows = metric_rows({"env_steps": curves["env_steps"],
                        "discounted_profit": curves["discounted_profit"]}, 0)
    plot_learning_curve(rows, path, metric="discounted_profit",
                        baselines={n: s["discounted_profit"][0] for n, s in summary.items()},
                        title="SupplyChain-v1, backlog: PPO training vs final greedy results")
    print(f"wrote {path.with_suffix('.md')} and {path}")


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and shorter runs (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("PPO env steps per seed", 500_000, 5_000_000),
        dqn_steps=harness.Size("DQN env steps per seed (0: no DQN)", 150_000, 1_000_000, 0),
        episodes=harness.Size("evaluation episodes", 500, 2000, minimum=2))
    learners = {"PPO": (ppo, PPO_CONFIG.replace(total_timesteps=args.total_steps), {})}
    if args.dqn_steps:
        learners["DQN"] = (dqn, DQN_CONFIG.replace(total_timesteps=args.dqn_steps),
                           {"order_grid": ORDER_GRID})
    return run(learners, args.seeds, 32 if args.quick else 64, args.episodes, args.out,
               args.quiet)


if __name__ == "__main__":
    main()
