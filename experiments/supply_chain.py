"""RL vs grid-optimised echelon base-stock on SupplyChain-v0 (OR-Gym's InvManagement defaults).

Three stages, lead times (3, 5, 10), Poisson(20) demand, backlog, 30 periods, alpha = 0.97.
PPO acts on the continuous order of every stage (`Box`); DQN on the `order_grid` variant
(ORDER_GRID per stage, len(ORDER_GRID) ** 3 actions). Both train with `vmap` over seeds
(keys 0..seeds-1) on the reward divided by REWARD_SCALE (values of order 1); evaluation uses
the env's own reward. Base-stock levels come from `grid_search` over echelon levels (key 1).
Every policy then runs the same episodes (key 2, common random numbers): the episode return
(profit discounted by alpha ** t, OR-Gym's reward) and the undiscounted profit, mean
[95% t-interval] over seeds for learners (each seed's mean over episodes) and over episodes
for base-stock. Writes `results/supply_chain.md` and `results/supply_chain.png`.

    python -m experiments.supply_chain [--quick]
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from gymnax.wrappers.purerl import GymnaxWrapper  # noqa: E402

import ecomrl_jax  # noqa: E402
from ecomrl_jax.learners import dqn, ppo  # noqa: E402
from ecomrl_jax.envs.inventory import policies as policies  # noqa: E402
from ecomrl_jax.evaluation import confidence_interval, evaluate  # noqa: E402
from ecomrl_jax.logging import metric_rows, plot_learning_curve  # noqa: E402

REWARD_SCALE = 10.0
ORDER_GRID = (0.0, 10.0, 20.0, 30.0, 40.0, 60.0)
LEVELS = (np.arange(50, 131, 10), np.arange(125, 326, 25), np.arange(250, 651, 50))  # echelon S
PPO_CONFIG = ppo.PPOConfig(lr=3e-4, gamma=0.99, ent_coef=0.0, num_envs=64, num_steps=30,
                           update_epochs=4, num_minibatches=4, hidden_size=64)
DQN_CONFIG = dqn.DQNConfig(gamma=0.99, lr=5e-4, num_envs=16, learning_starts=2_000,
                           epsilon_end=0.02, hidden_size=64)
METRICS = ("return", "profit")


class ScaledReward(GymnaxWrapper):
    """The wrapped env with its reward divided by `scale` (info, hence profit, unchanged)."""

    def __init__(self, env, scale: float = REWARD_SCALE):
        super().__init__(env)
        self.scale = scale

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward / self.scale, terminated, truncated, info


def episode_metrics(env, params, policy, episodes: int) -> dict:
    """Per-episode discounted return (in the unscaled env's units) and undiscounted profit."""
    out = evaluate(env, params, policy, jax.random.key(2), episodes)
    scale = getattr(env, "scale", 1.0)
    return {"return": np.asarray(out["return"]) * scale, "profit": np.asarray(out["profit"])}


def train_seeds(module, config, env, params, num_seeds: int):
    """Vmapped training; (greedy policy per seed, learning curves, seconds)."""
    start = time.perf_counter()
    train = jax.jit(jax.vmap(module.make_train(config, env, params)))
    state, curves = jax.block_until_ready(train(jax.random.split(jax.random.key(0), num_seeds)))
    weights = module.network_params(state)
    seeds = [module.make_policy(config, env, jax.tree.map(lambda x: x[i], weights), deterministic=True)
             for i in range(num_seeds)]
    return seeds, curves, time.perf_counter() - start


def run(learners, num_seeds, search_episodes, episodes, out: Path) -> dict:
    env, params = ecomrl_jax.make("SupplyChain-v0")
    search = policies.grid_search(env, params, policies.base_stock_policy,
                                  (np.stack(policies.product_grid(*LEVELS), axis=1),),
                                  jax.random.key(1), search_episodes)
    levels = search.best[0]
    base = episode_metrics(env, params, policies.base_stock_policy(env, levels), episodes)
    summary = {"base-stock (grid)": {m: confidence_interval(base[m]) for m in METRICS}}
    notes = {"base-stock (grid)": "echelon levels (" + ", ".join(f"{x:.0f}" for x in levels) + ")"}
    curves = {}
    for name, (module, config, kwargs) in learners.items():
        learn_env = ScaledReward(ecomrl_jax.make("SupplyChain-v0", **kwargs)[0])
        seeds, curves[name], seconds = train_seeds(module, config, learn_env, params, num_seeds)
        per_seed = [episode_metrics(learn_env, params, p, episodes) for p in seeds]
        summary[name] = {m: confidence_interval([s[m].mean() for s in per_seed]) for m in METRICS}
        notes[name] = f"{config.total_timesteps:,} steps/seed, {seconds:.0f} s"
    write_table(summary, notes, num_seeds, search_episodes, episodes, out / "supply_chain.md")
    plot(curves, summary, out / "supply_chain.png")
    return summary


def write_table(summary, notes, num_seeds, search_episodes, episodes, path: Path) -> None:
    lines = [
        "# SupplyChain-v0 (OR-Gym InvManagement defaults): RL vs echelon base-stock", "",
        f"Base-stock: grid search over {np.prod([len(x) for x in LEVELS])} echelon level triples, "
        f"{search_episodes} episodes (key 1). Learners: {num_seeds} seeds (keys 0..{num_seeds - 1}), "
        f"vmapped, greedy at evaluation, reward / {REWARD_SCALE:g} in training; PPO on the Box action "
        f"(lr {PPO_CONFIG.lr}, {PPO_CONFIG.num_envs} envs x {PPO_CONFIG.num_steps} steps, gamma "
        f"{PPO_CONFIG.gamma}); DQN on order_grid={ORDER_GRID} ({len(ORDER_GRID) ** 3} actions). "
        f"Evaluation: {episodes} episodes of 30 periods (key 2, the same for every policy). "
        "Mean [95% t-interval] over seeds for learners, over episodes for base-stock.", "",
        "| policy | episode return (discounted, alpha 0.97) | episode profit (undiscounted) | notes |",
        "|---|---|---|---|",
    ]
    for name, stats in summary.items():
        cells = [f"{stats[m][0]:.1f} [{stats[m][1]:.1f}, {stats[m][2]:.1f}]" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {notes[name]} |")
    lines += ["", "OR-Gym paper (Hubbs et al. 2020) figures for InvManagement: not included. The "
              "`search` tool found the paper (arXiv 2008.06319) but no excerpt with its "
              "inventory-management result numbers, so none are quoted here rather than "
              "quoted from memory."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(curves, summary, path: Path) -> None:
    """PPO's learning curve (training episodes, unscaled) with every final result as a line."""
    rows = metric_rows({"env_steps": curves["PPO"]["env_steps"],
                        "episode_return": curves["PPO"]["episode_return"] * REWARD_SCALE}, 0)
    plot_learning_curve(rows, path, baselines={n: s["return"][0] for n, s in summary.items()},
                        title="SupplyChain-v0: PPO learning curve (exploring) vs final greedy returns")
    print(f"wrote {path.with_suffix('.md')} and {path}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds and shorter runs (CPU, minutes)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--total-steps", type=int, default=None, help="PPO env steps per seed")
    parser.add_argument("--dqn-steps", type=int, default=None, help="DQN env steps per seed (0: no DQN)")
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 5)
    total = args.total_steps or (500_000 if args.quick else 5_000_000)
    dqn_steps = (150_000 if args.quick else 1_000_000) if args.dqn_steps is None else args.dqn_steps
    episodes = args.episodes or (500 if args.quick else 2000)
    if seeds < 2 or total < 1 or dqn_steps < 0 or episodes < 2:
        parser.error("--seeds and --episodes must be >= 2 (for an interval); --total-steps "
                     "positive, --dqn-steps >= 0")
    learners = {"PPO": (ppo, PPO_CONFIG.replace(total_timesteps=total), {})}
    if dqn_steps:
        learners["DQN"] = (dqn, DQN_CONFIG.replace(total_timesteps=dqn_steps),
                           {"order_grid": ORDER_GRID})
    return run(learners, seeds, 32 if args.quick else 64, episodes, args.out)


if __name__ == "__main__":
    main()
