"""Every learner and every rule baseline on ShopperRec-v0 at an equal env-step budget.

Each learner (PPO, A2C, REINFORCE, DQN; PPO and DQN also with the tiny history Transformer)
keeps its config defaults except `total_timesteps`, the same for all, and trains with `vmap`
over seeds (training keys 0..seeds-1, `harness.train_seeds`), compiled ahead of time, so compile
and run seconds are timed apart. Every policy is then evaluated greedily on common random
numbers (seed i uses evaluation key 1000 + i for every policy); the table reports the mean over
seeds with a 95% Student-t interval. Tabular Q-learning and SARSA are left out: they need a
Discrete state index, and ShopperRec's observation is a Dict of features. Writes
`results/algorithms_shopper.md` and `results/algorithms_shopper.png`.

    python -m experiments.algorithms_shopper [--quick]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.recommendation import policies as baselines
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate
from ecomrl_jax.learners import a2c, dqn, ppo, reinforce

EVAL_KEY = harness.EVAL_KEY
COLUMNS = {"return": "return", "clicks": "clicks", "purchases": "purchases", "revenue": "revenue"}


def learner_configs(total_timesteps: int) -> dict:
    """name -> (agent module, config): each config's defaults, one shared env-step budget."""
    return {
        "PPO": (ppo, ppo.PPOConfig(total_timesteps=total_timesteps)),
        "A2C": (a2c, a2c.A2CConfig(total_timesteps=total_timesteps)),
        "REINFORCE": (reinforce, reinforce.REINFORCEConfig(total_timesteps=total_timesteps)),
        "DQN": (dqn, dqn.DQNConfig(total_timesteps=total_timesteps)),
        "PPO (transformer-tiny)": (ppo, ppo.PPOConfig(total_timesteps=total_timesteps,
                                                      network="transformer-tiny")),
        "DQN (transformer-tiny)": (dqn, dqn.DQNConfig(total_timesteps=total_timesteps,
                                                      network="transformer-tiny")),
    }


def run(num_seeds: int, total_timesteps: int, eval_episodes: int, out: Path,
        quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("ShopperRec-v0")
    trained = {name: harness.train_seeds(module, config, env, params, num_seeds, label=name,
                                         quiet=quiet)
               for name, (module, config) in learner_configs(total_timesteps).items()}
    rules = {"myopic oracle": baselines.myopic_oracle(env, params),
             "popularity": baselines.popularity_policy(env, params),
             "random": baselines.random_policy(env, params)}
    policies = {**{name: t.policies for name, t in trained.items()},
                **{name: [p] * num_seeds for name, p in rules.items()}}
    summary = {}
    for name, seed_policies in policies.items():
        episodes = [evaluate(env, params, p, jax.random.key(EVAL_KEY + seed), eval_episodes)
                    for seed, p in enumerate(seed_policies)]
        summary[name] = {m: confidence_interval(np.array([float(np.mean(e[m])) for e in episodes]))
                         for m in COLUMNS}
    best = max(trained, key=lambda n: summary[n]["return"][0])
    ab = compare(env, params, rules["myopic oracle"], trained[best].policies[0],
                 jax.random.key(EVAL_KEY), eval_episodes)
    write_table(summary, trained, best, ab, num_seeds, eval_episodes, out / "algorithms_shopper.md")
    harness.plot_curves({n: t.curves for n, t in trained.items()},
                        {n: summary[n]["return"][0] for n in rules}, "episode_return",
                        "ShopperRec-v0: training episode return, equal env-step budget",
                        out / "algorithms_shopper.png")
    return summary


def write_table(summary, trained, best, ab, num_seeds, eval_episodes, path: Path) -> None:
    lines = ["# All algorithms on ShopperRec-v0 at an equal env-step budget", "",
             "Learners: config defaults except the env-step budget (rounded down to whole "
             f"updates), {num_seeds} seeds (training keys 0..{num_seeds - 1}) vmapped, "
             "compiled ahead of time. Evaluation: greedy, "
             f"{eval_episodes} episodes per seed on keys {EVAL_KEY}..{EVAL_KEY + num_seeds - 1}, "
             "the same episodes for every policy; mean over seeds [95% t-interval]. Tabular "
             "Q-learning and SARSA do not apply: they need a Discrete state index, and "
             "ShopperRec's observation is a Dict of features.", ""]
    lines += harness.format_rows(summary, COLUMNS)
    lines += ["", "Training time (CPU, all seeds together):", ""] + harness.timing_rows(trained, num_seeds)
    lines += ["", f"A/B on common random numbers, best learner ({best}) seed 0 vs myopic oracle, "
              f"{eval_episodes} paired episodes (key {EVAL_KEY}):", "",
              comparison_table(ab, ("myopic oracle", best))]
    harness.write_table(lines, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and a shorter run (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("env steps per seed", 500_000, 2_000_000),
        episodes=harness.Size("evaluation episodes per seed", 500, 2000))
    if min(config.num_updates for _, config in learner_configs(args.total_steps).values()) < 1:
        parser.error("--total-steps must be at least one update of every learner (PPO: 4,096)")
    return run(args.seeds, args.total_steps, args.episodes, args.out, args.quiet)


if __name__ == "__main__":
    main()
