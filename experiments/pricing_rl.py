"""Dynamic pricing on DynamicPricing-v0: PPO, DQN and bandits vs rule, predictive and oracle prices.

Four settings, `envs.pricing.SETTINGS`: stationary, seasonal (365-day year), competitor and
finite_stock; linear demand and the default grid of 12 prices (1, 2, ..., 12). The params set
`reward_profit=0`, so the reward is revenue: the objective of every policy, oracle included,
and the metric reported. Oracle (knows the demand model): `myopic_oracle` with unlimited stock
(exactly optimal there), `dp_policy` with finite stock. Rules: a fixed price (the competitor's
long-run price, 7) and keystone cost-plus (2 x unit cost = 4). Predictive: `run_predictive`,
random prices for the first tenth of each episode, then the price optimal for a linear demand fit.

Learners train on keys 0..seeds-1, vmapped over seeds, and are evaluated frozen.
PPO and DQN (greedy at evaluation) see revenue / REWARD_SCALE (`wrappers.ScaleReward`: raw
rewards of ~50 a day make the value loss dominate) and discount with gamma 0.5 where today's
price does not affect tomorrow (unlimited stock), 0.99 with finite stock. Bandits
(`envs.pricing.policies.make_bandit_run`: arm = grid price, reward = revenue) play consecutive
episodes; epsilon-greedy and Gaussian Thompson sampling ignore contexts, LinUCB and linear
Thompson sampling use the calendar features and the competitor price of the observation.

Metric: every policy runs the same evaluation episodes (key EVAL_KEY, common random numbers),
paired with the oracle's. % of oracle = 100 x (1 + mean paired per-episode revenue difference /
oracle mean revenue) = 100 x policy mean / oracle mean; its 95% interval is the Student-t
interval of the mean paired difference over episodes, divided by the oracle mean (the oracle's
own mean taken as fixed). A learner's episode revenue is the mean over its seeds; each seed's
% of oracle is listed too. Writes `results/pricing_rl.md` and `results/pricing_rl.png`.

    python -m experiments.pricing_rl [--quick]
"""

import time
from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.envs.pricing import policies as policies
from ecomrl_jax.envs.pricing.dynamic_pricing import SETTINGS
from ecomrl_jax.evaluation import confidence_interval, evaluate
from ecomrl_jax.learners import bandits, dqn, ppo
from ecomrl_jax.wrappers import ScaleReward

EVAL_KEY = harness.EVAL_KEY
REWARD_SCALE = 50.0  # learners see revenue / 50: about 1 a day (the stationary oracle's 50)
GOALS = {"stationary": 98.0, "seasonal": 95.0}  # % of oracle revenue for the best learner
FIXED_PRICE, KEYSTONE_MARKUP = 7.0, 1.0
BANDITS = {  # name -> (algorithm, contextual); hyperparameters in revenue units (~50 a day)
    "epsilon-greedy (1/t)": (bandits.EpsilonGreedy(epsilon=1.0, schedule="inverse",
                                                   decay_steps=200.0), False),
    "Gaussian TS": (bandits.GaussianThompson(prior_std=100.0, noise_std=20.0,
                                             estimate_noise=True), False),
    "LinUCB (calendar, competitor)": (bandits.LinUCB(alpha=50.0), True),
    "linear TS (calendar, competitor)": (bandits.LinearThompson(v=20.0), True),
}


def make_setting(name: str):
    """`(env, params)` of a setting, with revenue as the reward."""
    return ecomrl_jax.make("DynamicPricing-v0", **SETTINGS[name], reward_profit=0.0)


def learner_configs(params, ppo_steps: int, dqn_steps: int) -> dict:
    """name -> (module, config, deterministic evaluation), tuned on these settings."""
    limited = bool(np.isfinite(params.initial_stock))
    gamma = 0.99 if limited else 0.5
    return {
        "PPO": (ppo, ppo.PPOConfig(total_timesteps=ppo_steps, gamma=gamma, lr=3e-3, ent_coef=0.001,
                                   num_envs=64, num_steps=32, update_epochs=4, hidden_size=64),
                True),
        "DQN": (dqn, dqn.DQNConfig(total_timesteps=dqn_steps, gamma=gamma, lr=1e-3, num_envs=16,
                                   learning_starts=2_000, epsilon_end=0.02, hidden_size=64,
                                   n_step=3 if limited else 1), True),
    }


def train_bandits(env, params, num_seeds: int, rounds: int) -> dict:
    """name -> (seed policies, wall s): each bandit of BANDITS, vmapped over seeds in one jit."""
    trained = {}
    for name, (algo, contextual) in BANDITS.items():
        wall = time.perf_counter()
        run = jax.jit(jax.vmap(policies.make_bandit_run(algo, env, params, rounds, contextual)))
        states, _ = jax.block_until_ready(run(jax.random.split(jax.random.key(0), num_seeds)))
        trained[name] = ([policies.bandit_policy(algo, env, jax.tree.map(lambda x: x[s], states),
                                                 contextual) for s in range(num_seeds)],
                         time.perf_counter() - wall)
        print(f"{name}: {rounds:,} rounds x {num_seeds} seeds in {trained[name][1]:.1f} s", flush=True)
    return trained


def percent_of_oracle(revenue: np.ndarray, oracle: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) % of oracle revenue from paired episodes: `revenue` (episodes,) or
    (seeds, episodes), averaged over seeds first; see the module docstring."""
    revenue = np.asarray(revenue, np.float64).reshape(-1, oracle.size).mean(0)
    diff = confidence_interval(revenue - oracle)
    return tuple(100.0 * (1.0 + d / oracle.mean()) for d in diff)


def run_setting(name: str, num_seeds: int, ppo_steps: int, dqn_steps: int, rounds: int,
                episodes: int, quiet: bool = False) -> dict:
    """policy -> {"revenue", "percent": (mean, low, high), "seeds": per-seed % or None, "note"}."""
    env, params = make_setting(name)
    key = jax.random.key(EVAL_KEY)
    limited = bool(np.isfinite(params.initial_stock))
    oracle_note = "DP over (period, stock left)" if limited else "myopic, exact on the grid"
    oracle_policy = (policies.dp_policy if limited else policies.myopic_oracle)(env, params)
    explore = max(2, int(params.max_steps_in_episode) // 10)
    revenues = {"oracle": (evaluate(env, params, oracle_policy, key, episodes)["revenue"],
                           oracle_note),
                f"fixed price {FIXED_PRICE:g}": (evaluate(
                    env, params, policies.fixed_price_policy(env, params, FIXED_PRICE), key,
                    episodes)["revenue"], "competitor's long-run price"),
                "cost-plus (keystone)": (evaluate(
                    env, params, policies.cost_plus_policy(env, params, KEYSTONE_MARKUP), key,
                    episodes)["revenue"], "price 2 x unit cost = 4"),
                "predictive (linear fit)": (policies.run_predictive(
                    env, params, key, episodes, explore)["revenue"],
                    f"random prices for {explore} periods, then fitted optimum")}
    learners = learner_configs(params, ppo_steps, dqn_steps)
    trained = harness.train_learners(learners, ScaleReward(env, REWARD_SCALE), params, num_seeds,
                                     quiet)
    seeds = {n: (t.policies, f"{learners[n][1].total_timesteps:,} steps/seed, compile "
                 f"{t.compile_s:.0f} s, run {t.run_s:.0f} s") for n, t in trained.items()}
    for n, (seed_policies, wall) in train_bandits(env, params, num_seeds, rounds).items():
        seeds[n] = (seed_policies, f"{rounds:,} rounds/seed, {wall:.0f} s wall")
    for n, (seed_policies, note) in seeds.items():
        revenues[n] = (np.stack([evaluate(env, params, p, key, episodes)["revenue"]
                                 for p in seed_policies]), note)
    oracle = np.asarray(revenues["oracle"][0], np.float64)
    return {n: {"revenue": confidence_interval(np.reshape(r, (-1, episodes)).mean(0)),
                "percent": percent_of_oracle(r, oracle),
                "seeds": [100.0 * float(x.mean()) / oracle.mean() for x in r] if n in seeds
                else None,
                "note": note}
            for n, (r, note) in revenues.items()}


def goal_line(results: dict) -> str:
    """Best learner (PPO, DQN or a bandit) per goal setting against its target."""
    parts, met = [], True
    for setting, target in GOALS.items():
        if setting in results:
            rows = results[setting]
            best = max((r for r in rows if rows[r]["seeds"] is not None),
                       key=lambda r: rows[r]["percent"][0])
            mean = rows[best]["percent"][0]
            met &= mean >= target
            parts.append(f"{setting}: {best} {mean:.2f}% (target {target:g}%)")
    verdict = ("not evaluated (its settings were not run)" if not parts
               else "met" if met else "NOT met")
    targets = ", ".join(f">= {t:g}% on {s}" for s, t in GOALS.items())
    line = f"Goal (best learner's mean revenue as % of the oracle's: {targets}): {verdict}."
    return f"{line} {'; '.join(parts)}." if parts else line


def write_table(results: dict, num_seeds: int, rounds: int, episodes: int, seconds: float,
                path: Path) -> None:
    lines = [
        "# Dynamic pricing on DynamicPricing-v0: learners vs rules, prediction and the oracle", "",
        "Settings `envs.pricing.SETTINGS`, linear demand, prices 1..12, `reward_profit=0`: the "
        "reward, maximised by every policy (oracle included) and reported here, is revenue. "
        "Oracle: myopic (exact on the grid, optimal with unlimited stock) or dynamic programming "
        "(finite stock). Learners: vmapped over seeds, frozen at evaluation; PPO and DQN (greedy) "
        f"train on revenue / {REWARD_SCALE:g}, gamma 0.5 with unlimited stock and 0.99 with "
        "finite stock; bandits: arm = grid price, the contextual ones see the calendar features "
        "and the competitor price.", "",
        f"Seeds: {num_seeds} (training keys 0..{num_seeds - 1}); bandits {rounds:,} rounds per "
        f"seed. Evaluation: the same {episodes} episodes for every policy (key {EVAL_KEY}, common "
        "random numbers). % of oracle = 100 x (1 + mean paired per-episode revenue difference / "
        "oracle mean) [95% t-interval of the paired difference over episodes, divided by the "
        "oracle mean]; a learner's episode revenue is its mean over seeds, and each seed's % is "
        f"listed. Revenue: mean [95% t-interval over episodes]. Total run time {seconds:.0f} s.",
        "",
        "| setting | policy | revenue / episode | % of oracle [95% CI] | per seed (%) | notes |",
        "|---|---|---|---|---|---|"]
    for setting, rows in results.items():
        for name, r in rows.items():
            per_seed = ", ".join(f"{x:.2f}" for x in r["seeds"]) if r["seeds"] else ""
            lines.append(f"| {setting} | {name} | {harness.cell(r['revenue'], '.0f')} | "
                         f"{harness.cell(r['percent'], '.2f')} | {per_seed} | {r['note']} |")
    lines += ["", goal_line(results)]
    harness.write_table(lines, path)


def plot(results: dict, path: Path) -> None:
    """One panel per setting: % of oracle revenue per policy with its 95% interval, goal line."""
    fig = Figure(figsize=(4 * len(results), 4.5))
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, (setting, rows) in zip(axes, results.items()):
        names = list(rows)[::-1]
        pct = np.array([rows[n]["percent"] for n in names])
        ax.errorbar(pct[:, 0], np.arange(len(names)), xerr=[pct[:, 0] - pct[:, 1],
                                                              pct[:, 2] - pct[:, 0]],
                    fmt="o", capsize=3)
        if setting in GOALS:
            ax.axvline(GOALS[setting], color="k", ls="--", lw=1, label=f"goal {GOALS[setting]:g}%")
            ax.legend(fontsize=8, loc="lower left")
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        ax.set_xlabel("revenue, % of oracle")
        ax.set_title(setting)
        ax.grid(axis="x", alpha=0.3)
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds, shorter runs (CPU, ~15 min)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = harness.parse_sizes(
        parser, argv, ppo_steps=harness.Size("PPO env steps per seed", 500_000, 2_000_000),
        dqn_steps=harness.Size("DQN env steps per seed", 200_000, 500_000),
        bandit_rounds=harness.Size("bandit rounds per seed", 20_000, 100_000),
        episodes=harness.Size("evaluation episodes", 64, 256, minimum=2))
    start = time.perf_counter()
    results = {}
    for setting in args.settings:
        results[setting] = run_setting(setting, args.seeds, args.ppo_steps, args.dqn_steps,
                                       args.bandit_rounds, args.episodes, args.quiet)
        print(f"{setting}: done after {time.perf_counter() - start:.0f} s", flush=True)
    write_table(results, args.seeds, args.bandit_rounds, args.episodes, time.perf_counter() - start,
                args.out / "pricing_rl.md")
    plot(results, args.out / "pricing_rl.png")
    return results


if __name__ == "__main__":
    main()
