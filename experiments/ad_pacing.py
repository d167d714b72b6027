"""Budget pacing on AdBidding-v1: learners vs constant bid, linear pacing and the hindsight
multiplier, against the hindsight upper bound on a day's value.

Each learner trains with `vmap` over seeds (training keys 0..seeds-1, `harness.train_seeds`).
Every policy is evaluated on the same `runs` evaluation runs of `days` days each (run r uses
evaluation key 1000 + r, so every policy meets the same auctions), and each day's value (summed
`expected_value` of the impressions won, free of click noise) is divided by that day's upper
bound (`ecomrl_jax.envs.ads.policies.hindsight_bound`, the fractional-knapsack value: no policy
reaches 100%). The hindsight multiplier policy, which peeks at the day, is a row like the others.
A learner's seed scores the mean over all days and the learner's interval is over seeds; a
rule's interval is over the runs (95% Student-t). Learners act greedily. "PPO, pacing residual"
learns on `PacingResidual(gain=RESIDUAL_GAIN)` over the continuous env, rewards divided by
RESIDUAL_REWARD_SCALE: its action is a factor on a linear pacing rule's multiplier (the env card
says why that rule's gain is 3, not 10). Writes
`results/ad_pacing.md` and `results/ad_pacing.png`.

    python -m experiments.ad_pacing [--quick]
"""

from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np

import ecomrl_jax
from ecomrl_jax.envs.ads import policies as ads
from ecomrl_jax.envs.ads.pacing_residual import PacingResidual
from ecomrl_jax.evaluation import compare, comparison_table, confidence_interval, evaluate
from ecomrl_jax.learners import a2c, dqn, ppo
from ecomrl_jax.wrappers import ScaleReward

EVAL_KEY = harness.EVAL_KEY
RESIDUAL_GAIN = 3.0  # the residual's pacing rule; at linear pacing's gain 10 a factor has no effect
RESIDUAL_REWARD_SCALE = 10.0  # day returns ~30 clicks -> ~3: O(1) value targets for PPO

COLUMNS = {"bound_pct": "value, % of bound", "return": "clicks", "spent_pct": "budget spent (%)",
           "length": "day length (steps)"}


def learner_configs(total_timesteps: int) -> dict:
    """name -> (agent module, config, deterministic evaluation). gamma 1: the day's value is an
    undiscounted sum, and discounting would favour spending the budget early; a small entropy
    bonus, since random bids on the 21-multiplier grid exhaust the budget early."""
    return {
        "PPO": (ppo, ppo.PPOConfig(total_timesteps=total_timesteps, num_envs=64, num_steps=96,
                                   gamma=1.0, ent_coef=0.001), True),
        "A2C": (a2c, a2c.A2CConfig(total_timesteps=total_timesteps, gamma=1.0, ent_coef=0.001), True),
        "DQN": (dqn, dqn.DQNConfig(total_timesteps=total_timesteps, gamma=1.0), True),
    }


def residual_configs(total_timesteps: int) -> dict:
    """Learners on `PacingResidual`: name -> (agent module, config, deterministic evaluation)."""
    config = ppo.PPOConfig(total_timesteps=total_timesteps, num_envs=64, num_steps=96, gamma=1.0,
                           ent_coef=0.01)
    return {"PPO, pacing residual": (ppo, config, True)}


def rule_policies(env, params) -> dict:
    return {"constant bid 1.0 (the value)": ads.constant_bid(env, params, 1.0),
            "constant bid 0.7 (best constant)": ads.constant_bid(env, params, 0.7),
            "linear pacing": ads.linear_pacing(env, params),
            "hindsight multiplier, on the grid": ads.hindsight_policy(env, params)}


def as_multiplier(policy, to_multiplier):
    """`policy` (grid index or residual factor index) as a continuous-env policy: its bid
    multiplier, `to_multiplier(env_state, action, params)`."""

    def policy_fn(key, obs, env_state, params):
        return to_multiplier(env_state, policy(key, obs, env_state, params), params)

    return policy_fn


def run_means(env, params, policy, bounds: list, days: int) -> dict:
    """metric -> (runs,) per-run means on evaluation keys EVAL_KEY + r, with `bound_pct` (mean
    of the per-day value / the day's upper bound, in %) and `spent_pct` (spend / daily budget, in %)."""
    means = {m: [] for m in COLUMNS}
    for r, bound in enumerate(bounds):
        e = evaluate(env, params, policy, jax.random.key(EVAL_KEY + r), days)
        means["bound_pct"].append(100.0 * float(np.mean(np.asarray(e["expected_value"]) / bound)))
        means["spent_pct"].append(100.0 * float(np.mean(e["spend"])) / float(params.daily_budget))
        means["return"].append(float(np.mean(e["clicks"])))
        means["length"].append(float(np.mean(e["length"])))
    return {m: np.array(v) for m, v in means.items()}


def run(num_seeds: int, total_timesteps: int, num_runs: int, days: int, out: Path,
        quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("AdBidding-v1")
    cont, cont_params = ecomrl_jax.make("AdBidding-v1", continuous=True)
    pacing = PacingResidual(cont, gain=RESIDUAL_GAIN)
    residual = ScaleReward(pacing, RESIDUAL_REWARD_SCALE)
    trained = harness.train_learners(learner_configs(total_timesteps), env, params, num_seeds, quiet)
    trained_residual = harness.train_learners(residual_configs(total_timesteps), residual,
                                              cont_params, num_seeds, quiet)
    envs = {**{n: (env, params) for n in trained},
            **{n: (residual, cont_params) for n in trained_residual}}
    trained.update(trained_residual)
    rules = rule_policies(env, params)
    bounds = [np.asarray(ads.evaluated_bounds(env, params, jax.random.key(EVAL_KEY + r), days))
              for r in range(num_runs)]
    samples = {}
    for name, t in trained.items():
        per_seed = [run_means(*envs[name], p, bounds, days) for p in t.policies]
        samples[name] = {m: np.array([s[m].mean() for s in per_seed]) for m in COLUMNS}
    for name, policy in rules.items():
        samples[name] = run_means(env, params, policy, bounds, days)
    samples["linear pacing, continuous"] = run_means(
        cont, cont_params, ads.linear_pacing(cont, cont_params), bounds, days)
    summary = {name: {m: confidence_interval(s[m]) for m in COLUMNS} for name, s in samples.items()}
    best_learner = max(trained, key=lambda n: summary[n]["bound_pct"][0])
    best_rule = max((n for n in summary if n not in trained and not n.startswith("hindsight")),
                    key=lambda n: summary[n]["bound_pct"][0])  # hindsight peeks: not a rule
    # the A/B runs on the continuous env: the grid rules' index actions become their multipliers
    learner = trained[best_learner].policies[0]
    if envs[best_learner][0] is residual:
        learner = as_multiplier(learner, lambda state, a, p: pacing.multiplier(state, a, p)[0])
    else:
        learner = as_multiplier(learner, lambda state, a, p: p.bid_multipliers[a])
    ab = compare(cont, cont_params, ads.linear_pacing(cont, cont_params), learner,
                 jax.random.key(EVAL_KEY), days)
    bound_mean = float(np.mean(np.concatenate(bounds)))
    lines = ["# Budget pacing on AdBidding-v1", "",
             harness.timing_line(trained, total_timesteps, num_seeds),
             f"Evaluation: {num_runs} runs of {days} days (keys {EVAL_KEY}..{EVAL_KEY + num_runs - 1}), "
             "the same days for every policy; default params (96 steps x 100 auction slots, "
             "budget 15, Discrete grid of 21 multipliers 0..2). Learners: mean over seeds [95% "
             "t-interval over seeds], greedy; rules: mean [95% t-interval over runs]. Value = "
             "summed expected value of the impressions won, as a % of the same day's upper bound "
             "(the fractional-knapsack value of the day's auctions, which no policy reaches; mean "
             f"of per-day ratios; the bound averages {bound_mean:.1f} per day); clicks = realised "
             "reward per day. The hindsight multiplier bids, all day, the constant multiplier that "
             "wins the day's best affordable impressions by value per price, known in hindsight "
             "(rounded to the grid): a policy that peeks, not a bound.", ""]
    lines += harness.format_rows(summary, COLUMNS)
    lines += ["", harness.goal_line(summary, best_learner, best_rule, "bound_pct"), "",
              f"A/B on common random numbers, {best_learner} seed 0 vs linear pacing, {days} "
              f"paired days (key {EVAL_KEY}), both bidding on the continuous env:", "",
              comparison_table(ab, ("linear pacing", best_learner))]
    harness.write_table(lines, out / "ad_pacing.md")
    baselines = {n: summary[n]["return"][0] for n in rules}
    harness.plot_curves({n: t.curves for n, t in trained.items()}, baselines, "clicks",
                        "AdBidding-v1: clicks per day while training vs rules", out / "ad_pacing.png")
    return summary


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds and a shorter run (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("env steps per seed", 1_500_000, 5_000_000),
        runs=harness.Size("evaluation runs", 5, 10, minimum=2),
        days=harness.Size("days per evaluation run", 100, 200))
    return run(args.seeds, args.total_steps, args.runs, args.days, args.out, args.quiet)


if __name__ == "__main__":
    main()
