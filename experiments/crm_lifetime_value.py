"""Customer lifetime value on CouponCRM-v0: PPO, DQN and A2C vs rule baselines.

Each learner trains with `vmap` over seeds (training keys 0..seeds-1, `harness.train_seeds`).
Every policy is then evaluated on the same `runs` evaluation runs of `episodes` customers each
(run r uses evaluation key 1000 + r: common random numbers, so all policies meet the same
customers and draws as far as their actions allow). A learner's seed scores the mean over the
runs and the learner's interval is over seeds; a rule's interval is over the runs. Intervals are
95% Student-t. PPO and A2C act by sampling their trained stochastic policy (its argmax mostly
never contacts and is far worse: contacts pay when they are occasional); DQN acts greedily.
Writes `results/crm_lifetime_value.md` and `results/crm_lifetime_value.png`.

    python -m experiments.crm_lifetime_value [--quick]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.crm import policies as crm
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate
from ecomrl_jax.learners import a2c, dqn, ppo

EVAL_KEY = harness.EVAL_KEY
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


def run_means(env, params, policy, num_runs: int, episodes: int) -> dict:
    """metric -> (num_runs,) per-run means on evaluation keys EVAL_KEY + r, plus
    `coupon_per_purchase` (coupon spend over purchases of the run)."""
    runs = [evaluate(env, params, policy, jax.random.key(EVAL_KEY + r), episodes)
            for r in range(num_runs)]
    means = {m: np.array([float(np.mean(run[m])) for run in runs]) for m in runs[0]}
    means["coupon_per_purchase"] = means["coupon_cost"] / np.maximum(means["purchases"], 1e-9)
    return means


def run(num_seeds: int, total_timesteps: int, num_runs: int, episodes: int, out: Path,
        quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("CouponCRM-v0")
    trained = harness.train_learners(learner_configs(total_timesteps), env, params, num_seeds, quiet)
    rules = rule_policies(env, params)
    samples = {}
    for name, t in trained.items():
        per_seed = [run_means(env, params, p, num_runs, episodes) for p in t.policies]
        samples[name] = {m: np.array([s[m].mean() for s in per_seed]) for m in COLUMNS}
    for name, policy in rules.items():
        samples[name] = run_means(env, params, policy, num_runs, episodes)
    summary = {name: {m: confidence_interval(s[m]) for m in COLUMNS} for name, s in samples.items()}
    best_learner = max(trained, key=lambda n: summary[n]["return"][0])
    best_rule = max(rules, key=lambda n: summary[n]["return"][0])
    ab = compare(env, params, rules[best_rule], trained[best_learner].policies[0],
                 jax.random.key(EVAL_KEY), episodes)
    write_table(summary, best_learner, best_rule, ab, trained, num_seeds, total_timesteps, num_runs,
                episodes, out / "crm_lifetime_value.md")
    harness.plot_curves({n: t.curves for n, t in trained.items()},
                        {n: summary[n]["return"][0] for n in rules}, "episode_return",
                        "CouponCRM-v0: lifetime value while training vs rules",
                        out / "crm_lifetime_value.png")
    return summary


def write_table(summary, best_learner, best_rule, ab, trained, num_seeds, total_timesteps,
                num_runs, episodes, path: Path) -> None:
    lines = ["# Customer lifetime value on CouponCRM-v0", "",
             harness.timing_line(trained, total_timesteps, num_seeds),
             f"Evaluation: {num_runs} runs of {episodes} customers (keys {EVAL_KEY}.."
             f"{EVAL_KEY + num_runs - 1}), the same for every policy. Learners: mean over seeds "
             "[95% t-interval over seeds], each seed averaged over the runs; rules: mean [95% "
             "t-interval over runs]. Per customer (episode of up to 78 weeks): lifetime value = "
             "return (margin - coupon cost - contact cost); churn rate = share lost within the "
             "horizon; coupon spend / purchase = total incentive paid / purchases. PPO and A2C "
             "sample their stochastic policy; DQN is greedy.", ""]
    lines += harness.format_rows(summary, COLUMNS)
    lines += ["", harness.goal_line(summary, best_learner, best_rule, "return"), "",
              f"A/B on common random numbers, {best_learner} seed 0 vs {best_rule}, {episodes} "
              f"paired customers (key {EVAL_KEY}):", "",
              comparison_table(ab, (best_rule, best_learner))]
    harness.write_table(lines, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and a shorter run (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("env steps per seed", 2_000_000, 4_000_000),
        runs=harness.Size("evaluation runs", 10, 20, minimum=2),
        episodes=harness.Size("customers per evaluation run", 1000, 1000))
    return run(args.seeds, args.total_steps, args.runs, args.episodes, args.out, args.quiet)


if __name__ == "__main__":
    main()
