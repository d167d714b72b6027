"""SlateQ vs myopic SlateQ, slate DQN, PPO, random and the quality oracle on InterestEvolution-v0.

The published claim checked (Ie et al., IJCAI 2019, on RecSim's interest-evolution env):
SlateQ's long-term decomposition (gamma 0.99) beats the myopic recommender (the same learner
with gamma 0, which maximises the expected immediate watch time); SlateQ also with a choice model
it learns from the clicks instead of the env's. Each learner keeps its config
defaults except `total_timesteps`, the same for all, and trains with `vmap` over seeds
(training keys 0..seeds-1, `harness.train_seeds`), compiled ahead of time. Every policy is then
evaluated greedily on common random numbers (seed i uses evaluation key 1000 + i for every
policy) over whole sessions; the table reports the mean over seeds with a 95% Student-t
interval. The quality oracle reads the hidden video quality. Writes
`results/slateq_interest_evolution.md` and `results/slateq_interest_evolution.png`.

    python -m experiments.slateq_interest_evolution [--quick] [--num-candidates 10] [--slate-size 2]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.recommendation import policies as baselines
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate
from ecomrl_jax.learners import dqn, ppo, slateq

EVAL_KEY = harness.EVAL_KEY
COLUMNS = {"return": "watch time (return)", "length": "session length", "clicks": "clicks"}


def learner_configs(total_timesteps: int) -> dict:
    """name -> (agent module, config): each config's defaults, one shared env-step budget."""
    return {
        "SlateQ": (slateq, slateq.SlateQConfig(total_timesteps=total_timesteps)),
        "myopic SlateQ": (slateq, slateq.SlateQConfig(total_timesteps=total_timesteps, gamma=0.0)),
        "SlateQ (learned choice model)": (slateq, slateq.SlateQConfig(
            total_timesteps=total_timesteps, choice_model="learned")),
        "slate DQN": (dqn, dqn.DQNConfig(total_timesteps=total_timesteps)),
        "PPO": (ppo, ppo.PPOConfig(total_timesteps=total_timesteps)),
    }


def run(num_seeds: int, total_timesteps: int, eval_episodes: int, num_candidates: int,
        slate_size: int, out: Path, quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("InterestEvolution-v0", num_candidates=num_candidates,
                                  slate_size=slate_size)
    trained = {name: harness.train_seeds(module, config, env, params, num_seeds, label=name,
                                         quiet=quiet)
               for name, (module, config) in learner_configs(total_timesteps).items()}
    rules = {"quality oracle": baselines.quality_oracle(env, params),
             "random": baselines.random_policy(env, params)}
    policies = {**{name: t.policies for name, t in trained.items()},
                **{name: [p] * num_seeds for name, p in rules.items()}}
    per_seed = {}
    for name, seed_policies in policies.items():
        episodes = [evaluate(env, params, p, jax.random.key(EVAL_KEY + seed), eval_episodes)
                    for seed, p in enumerate(seed_policies)]
        per_seed[name] = {m: np.array([float(np.mean(e[m])) for e in episodes]) for m in COLUMNS}
    summary = {name: {m: confidence_interval(v) for m, v in metrics.items()}
               for name, metrics in per_seed.items()}
    gap = confidence_interval(per_seed["SlateQ"]["return"] - per_seed["myopic SlateQ"]["return"])
    ab = compare(env, params, trained["myopic SlateQ"].policies[0], trained["SlateQ"].policies[0],
                 jax.random.key(EVAL_KEY), eval_episodes)
    stem = out / "slateq_interest_evolution"
    write_table(summary, gap, ab, trained, num_seeds, eval_episodes, num_candidates, slate_size,
                stem.with_suffix(".md"))
    harness.plot_curves({n: t.curves for n, t in trained.items()},
                        {n: summary[n]["return"][0] for n in rules}, "episode_return",
                        f"InterestEvolution-v0 ({num_candidates} candidates, slate {slate_size}): "
                        "training watch time", stem.with_suffix(".png"))
    return {**summary, "gap": gap}


def write_table(summary, gap, ab, trained, num_seeds, eval_episodes, num_candidates, slate_size,
                path: Path) -> None:
    mean, low, high = gap
    verdict = ("SlateQ ahead, interval above 0" if low > 0 else
               "myopic SlateQ ahead, interval below 0" if high < 0 else "no significant gap")
    lines = [f"# SlateQ on InterestEvolution-v0 ({num_candidates} candidates, slate {slate_size})",
             "",
             "Learners: config defaults except the env-step budget (rounded down to whole "
             f"updates), {num_seeds} seeds (training keys 0..{num_seeds - 1}) vmapped, compiled "
             "ahead of time. SlateQ: gamma 0.99, exact slate optimisation under the env's "
             "choice model; myopic SlateQ: the same with gamma 0; SlateQ (learned choice model): "
             "gamma 0.99 with a logit click model fitted to its replay in place of the env's; "
             "slate DQN: the project's DQN "
             "(slate value = mean item score); PPO: Plackett-Luce slates. Evaluation: greedy, "
             f"{eval_episodes} whole sessions per seed on keys {EVAL_KEY}..{EVAL_KEY + num_seeds - 1}, "
             "the same sessions for every policy; mean over seeds [95% t-interval]. The quality "
             "oracle reads the hidden video quality.", ""]
    lines += harness.format_rows(summary, COLUMNS)
    lines += ["", f"SlateQ - myopic SlateQ, watch time per session (paired by seed): "
              f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] ({mean / summary['myopic SlateQ']['return'][0]:+.1%}): "
              f"{verdict}.",
              "", "Training time (CPU, all seeds together):", ""] + harness.timing_rows(trained, num_seeds)
    lines += ["", f"A/B on common random numbers, SlateQ seed 0 vs myopic SlateQ seed 0, "
              f"{eval_episodes} paired sessions (key {EVAL_KEY}):", "",
              comparison_table(ab, ("myopic SlateQ", "SlateQ"))]
    harness.write_table(lines, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and a shorter run (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("env steps per seed", 100_000, 500_000),
        episodes=harness.Size("evaluation sessions per seed", 300, 1000),
        num_candidates=harness.Size("candidate videos per step", 10, 10),
        slate_size=harness.Size("videos per slate", 2, 2))
    if args.slate_size > args.num_candidates:
        parser.error(f"--slate-size ({args.slate_size}) must be <= --num-candidates "
                     f"({args.num_candidates})")
    if min(config.num_updates for _, config in learner_configs(args.total_steps).values()) < 1:
        parser.error("--total-steps must be at least one update of every learner (PPO: 4,096)")
    return run(args.seeds, args.total_steps, args.episodes, args.num_candidates, args.slate_size,
               args.out, args.quiet)


if __name__ == "__main__":
    main()
