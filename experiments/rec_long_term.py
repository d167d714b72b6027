"""Long-term value in recommendation on ShopperRec-v0: PPO against SlateQ (with the env's choice
model and with a learned one), the patience-aware lookahead, the myopic oracle, popularity and
random.

PPO and both SlateQ learners train with `vmap` over seeds (`harness.train_seeds`, training keys
0..seeds-1). SlateQ reads the shop as `UserItemShopperRec` (same dynamics, one user-item matrix):
"SlateQ (known choice model)" sees the hidden interest and uses the env's exact click model,
as the oracles do; "SlateQ (learned choice model)" sees only the shopper's click history, as PPO
does, and fits its click model from the clicks in its replay. Every policy is then evaluated,
per seed, greedily on the same sessions (common random numbers; seed i uses evaluation key
1000 + i), and the table reports the mean over seeds with a 95% Student-t interval, and PPO's
gap to each other policy paired by seed. Writes `results/rec_long_term.md` and
`results/rec_long_term.png`.

    python -m experiments.rec_long_term [--quick]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.recommendation import policies as baselines
from ecomrl_jax.envs.recommendation.shopper_rec import UserItemShopperRec
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate
from ecomrl_jax.learners import ppo, slateq

EVAL_KEY = harness.EVAL_KEY
METRICS = ("return", "length", "clicks", "purchases", "revenue")
KNOWN, LEARNED = "SlateQ (known choice model)", "SlateQ (learned choice model)"


def learners(ppo_steps: int, slateq_steps: int) -> dict:
    """name -> (agent module, config, env): config defaults but the env-step budget."""
    return {
        "PPO": (ppo, ppo.PPOConfig(total_timesteps=ppo_steps), None),
        KNOWN: (slateq, slateq.SlateQConfig(total_timesteps=slateq_steps),
                UserItemShopperRec(reveal_interest=True)),
        LEARNED: (slateq, slateq.SlateQConfig(total_timesteps=slateq_steps, choice_model="learned"),
                  UserItemShopperRec()),
    }


def run(num_seeds: int, ppo_steps: int, slateq_steps: int, eval_episodes: int, out: Path,
        quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("ShopperRec-v0")
    envs, trained = {}, {}
    for name, (module, config, learner_env) in learners(ppo_steps, slateq_steps).items():
        envs[name] = learner_env or env
        trained[name] = harness.train_seeds(module, config, envs[name], params, num_seeds,
                                            label=name, quiet=quiet)
    rules = {"patience lookahead": baselines.patience_lookahead(env, params),
             "myopic oracle": baselines.myopic_oracle(env, params),
             "popularity": baselines.popularity_policy(env, params),
             "random": baselines.random_policy(env, params)}
    policies = {**{name: (envs[name], t.policies) for name, t in trained.items()},
                **{name: (env, [p] * num_seeds) for name, p in rules.items()}}
    per_seed = {}
    for name, (policy_env, seed_policies) in policies.items():
        episodes = [evaluate(policy_env, params, p, jax.random.key(EVAL_KEY + seed), eval_episodes)
                    for seed, p in enumerate(seed_policies)]
        per_seed[name] = {m: np.array([float(np.mean(e[m])) for e in episodes]) for m in METRICS}
    summary = {name: {m: confidence_interval(v) for m, v in metrics.items()}
               for name, metrics in per_seed.items()}
    gaps = {name: confidence_interval(per_seed["PPO"]["return"] - per_seed[name]["return"])
            for name in policies if name != "PPO"}
    ab = compare(env, params, rules["patience lookahead"], trained["PPO"].policies[0],
                 jax.random.key(EVAL_KEY), eval_episodes)
    write_table(summary, gaps, ab, trained, num_seeds, eval_episodes, out / "rec_long_term.md")
    harness.plot_curves({n: t.curves for n, t in trained.items()},
                        {n: summary[n]["return"][0] for n in rules}, "episode_return",
                        "ShopperRec-v0: training return vs rules", out / "rec_long_term.png")
    return {**summary, "gaps": gaps}


def write_table(summary, gaps, ab, trained, num_seeds, eval_episodes, path: Path) -> None:
    steps = {name: int(t.curves["env_steps"][0, -1]) for name, t in trained.items()}
    lines = [
        "# Long-term value on ShopperRec-v0", "",
        f"Learners: PPO {steps['PPO']:,} and SlateQ {steps[KNOWN]:,} env steps per seed (config "
        f"defaults otherwise), {num_seeds} seeds (training keys 0..{num_seeds - 1}), vmapped. "
        f"SlateQ (known choice model) sees the hidden interest and the env's click model, as the "
        f"oracles do; SlateQ (learned choice model) sees what PPO sees and fits its click model. "
        f"Every policy evaluated greedily on {eval_episodes} sessions per seed (keys "
        f"{EVAL_KEY}..{EVAL_KEY + num_seeds - 1}), the same sessions for every policy. Mean over "
        "seeds [95% t-interval].", "",
        "| policy | return | session length | clicks | purchases | revenue |",
        "|---|---|---|---|---|---|",
    ]
    for name, stats in summary.items():
        lines.append(f"| {name} | " + " | ".join(harness.cell(stats[m], ".2f") for m in METRICS)
                     + " |")
    lines += ["", "PPO's return minus each policy's, paired by seed (95% t-interval):", "",
              "| vs | PPO - it | relative | verdict |", "|---|---|---|---|"]
    for name, (mean, low, high) in gaps.items():
        verdict = "PPO ahead" if low > 0 else f"{name} ahead" if high < 0 else "no significant gap"
        lines.append(f"| {name} | {mean:+.2f} [{low:+.2f}, {high:+.2f}] | "
                     f"{mean / summary[name]['return'][0]:+.1%} | {verdict} |")
    lines += ["", "Training time (CPU, all seeds together):", ""]
    lines += harness.timing_rows(trained, num_seeds)
    lines += ["", f"A/B on common random numbers, PPO seed 0 vs the patience lookahead, "
              f"{eval_episodes} paired sessions (key {EVAL_KEY}):", "",
              comparison_table(ab, ("patience lookahead", "PPO"))]
    harness.write_table(lines, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and shorter runs (CPU, minutes)")
    ppo_full, slateq_full = ppo.PPOConfig().total_timesteps, slateq.SlateQConfig().total_timesteps
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("PPO env steps per seed", ppo_full // 2, ppo_full),
        slateq_steps=harness.Size("SlateQ env steps per seed", slateq_full, 5 * slateq_full),
        episodes=harness.Size("evaluation episodes per seed", 500, 2000))
    return run(args.seeds, args.total_steps, args.slateq_steps, args.episodes, args.out,
               args.quiet)


if __name__ == "__main__":
    main()
