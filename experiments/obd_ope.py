"""OBP's off-policy evaluation benchmark on the vendored Open Bandit Dataset sample.

Protocol of st-tech/zr-obp `examples/obd/evaluate_off_policy_estimators.py`: estimate the value of
the Bernoulli TS policy (ZOZOTOWN prior, its action distribution simulated) from the uniform random
policy's 10,000 logged rows, and the reverse; the ground truth is the other log's on-policy click
rate. Each of `--resamples` bootstrap resamples of the log (keys `split(key(0), resamples)`) refits
the reward model (logistic regression, 3-fold cross-fitting) and runs every estimator; the table
gives the mean and sd over resamples of the relative error |V_hat - V| / V, with OBP's published
figures (BTS from random logs, small data, obp 0.5) beside ours. Switch-DR and DRos tune their
hyperparameter by SLOPE over OBP's candidates, as OBP's script does. All resamples of a direction
run as one compiled program. Writes `results/obd_ope.md` and `results/obd_ope.png`.

    python -m experiments.obd_ope [--quick]
"""

import time
from functools import partial

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from ecomrl_jax.offline import load_obd, take_rows
from ecomrl_jax.offline import estimators as E
from ecomrl_jax.offline.policies import bts_action_dist, uniform_action_dist, zozotown_prior
from ecomrl_jax.offline.reward_models import RewardModel, fit_predict

ESTIMATORS = ("dm", "ipw", "snipw", "dr", "sndr", "switch-dr-slope", "dr-os-slope")
# st-tech/zr-obp examples/obd/README.md: BTS from random logs, 'all' campaign, small data, 30 runs,
# logistic regression (C=100), obp 0.5 (Switch-DR and DRos tuned by SLOPE): mean, sd of relative error
OBP_PUBLISHED = {"dm": (0.156876, 0.109898), "ipw": (0.311082, 0.311170), "snipw": (0.311795, 0.334736),
                 "dr": (0.292464, 0.315485), "sndr": (0.302407, 0.328434),
                 "switch-dr-slope": (0.258410, 0.160598), "dr-os-slope": (0.159520, 0.109660)}
DIRECTIONS = (("bts", "random"), ("random", "bts"))  # (evaluation policy, behaviour policy)
RESAMPLE_KEY, POLICY_KEY, MODEL_KEY, SPREAD_KEY = 0, 1, 2, 3
SPREAD_RESAMPLES = 1000  # IPW alone (no reward model) over many resamples: how noisy is a 30-resample mean?


def action_dist(policy: str, n: int, num_samples: int) -> jax.Array:
    if policy == "random":
        return uniform_action_dist(n, 80, 3)
    dist = jax.jit(bts_action_dist, static_argnums=(3, 4))(jax.random.key(POLICY_KEY), *zozotown_prior("all"),
                                                           3, num_samples)
    return jnp.broadcast_to(dist, (n, 80, 3))


@partial(jax.jit, static_argnames=("model", "num_resamples"))
def resampled_estimates(data, dist, model, num_resamples):
    """{estimator: (num_resamples,)} estimates on bootstrap resamples of the rows, each with its own
    cross-fitted reward model."""
    def one(key):
        rows = jax.random.randint(key, (data.n_rows,), 0, data.n_rows)
        resample = take_rows(data, rows)
        q_hat = fit_predict(model, resample, jax.random.key(MODEL_KEY))
        return E.estimate(E.row_terms(resample, dist[rows], q_hat), ESTIMATORS)

    keys = jax.random.split(jax.random.key(RESAMPLE_KEY), num_resamples)
    return jax.lax.map(one, keys, batch_size=min(num_resamples, 5))


@jax.jit
def ipw_resamples(terms):
    """(SPREAD_RESAMPLES,) IPW on bootstrap resamples of the rows."""
    def one(key):
        rows = jax.random.randint(key, terms.reward.shape, 0, terms.reward.shape[0])
        return E.ipw(jax.tree.map(lambda x: x[rows], terms))
    return jax.lax.map(one, jax.random.split(jax.random.key(SPREAD_KEY), SPREAD_RESAMPLES), batch_size=100)


def run_direction(policy: str, behavior: str, model: RewardModel, num_resamples: int, bts_samples: int):
    data, truth = load_obd(behavior), float(load_obd(policy).reward.mean())
    start = time.perf_counter()
    dist = action_dist(policy, data.n_rows, bts_samples)
    estimates = jax.device_get(resampled_estimates(data, dist, model, num_resamples))
    errors = {name: np.abs(estimates[name] - truth) / truth for name in ESTIMATORS}
    ipw_errors = np.abs(np.asarray(ipw_resamples(E.row_terms(data, dist))) - truth) / truth
    blocks = ipw_errors[: len(ipw_errors) // num_resamples * num_resamples].reshape(-1, num_resamples).mean(axis=1)
    print(f"{policy} from {behavior} logs: {num_resamples} resamples in {time.perf_counter() - start:.0f} s",
          flush=True)
    return {"truth": truth, "estimates": estimates, "errors": errors, "ipw_spread": (
        float(ipw_errors.mean()), float(ipw_errors.std(ddof=1)), float(blocks.min()), float(blocks.max()))}


def main(argv=None):
    parser = harness.make_parser(__doc__, "10 resamples, 200 reward-model steps, 20,000 BTS slates", seeds=False)
    args = harness.parse_sizes(
        parser, argv,
        resamples=harness.Size("bootstrap resamples of each log (OBP: 30)", 10, 30, 2),
        model_steps=harness.Size("Adam steps of each reward model", 200, 500),
        bts_samples=harness.Size("simulated slates for BTS's action distribution (multiple of 10,000)",
                                 20_000, 100_000, 10_000))
    if args.bts_samples % 10_000:
        parser.error(f"--bts-samples must be a multiple of 10000, got {args.bts_samples}")
    model = RewardModel(num_folds=3, num_steps=args.model_steps)
    results = {(policy, behavior): run_direction(policy, behavior, model, args.resamples, args.bts_samples)
               for policy, behavior in DIRECTIONS}
    lines = table(results, args, model)
    harness.write_table(lines, args.out / "obd_ope.md")
    figure(results, args.out / "obd_ope.png")
    return {"results": results, "table": lines}


def table(results, args, model) -> list[str]:
    bts, rnd = results[("bts", "random")], results[("random", "bts")]
    lines = [
        "# Off-policy evaluation on the Open Bandit Dataset sample (OBP's benchmark protocol)", "",
        f"Relative error |V_hat - V| / V, mean ± sd over {args.resamples} bootstrap resamples of the 10,000 "
        f"logged rows (resample keys split(key({RESAMPLE_KEY}), {args.resamples})). Truth V: the other "
        f"log's click rate (BTS {bts['truth']:.5f}, random {rnd['truth']:.5f}). Reward model: logistic "
        f"regression, 3-fold cross-fitting, {model.num_steps} Adam steps, l2 {model.l2:g}. BTS action "
        f"distribution: {args.bts_samples:,} simulated slates. Switch-DR and DRos: hyperparameter by SLOPE "
        f"over {list(E.SLOPE_CANDIDATES)}.", "",
        "| estimator | BTS from random logs | OBP published (same task) | mean estimate (BTS) "
        "| random from BTS logs | mean estimate (random) |",
        "|---|---|---|---|---|---|"]
    for name in ESTIMATORS:
        published = OBP_PUBLISHED[name]
        lines.append(f"| {name} | {_mean_sd(bts['errors'][name])} | {published[0]:.3f} ± {published[1]:.3f} "
                     f"| {np.mean(bts['estimates'][name]):.5f} | {_mean_sd(rnd['errors'][name])} "
                     f"| {np.mean(rnd['estimates'][name]):.5f} |")
    mean, sd, low, high = bts["ipw_spread"]
    lines += ["", "## Why the figures differ from OBP's", "",
              f"- Bootstrap noise. OBP's figures are one set of {30} resamples drawn by numpy (obp 0.5); a mean of "
              f"30 relative errors with sd ~0.3 has a standard error of ~0.06. IPW needs no reward model, so "
              f"its spread isolates this: over {SPREAD_RESAMPLES} resamples our IPW error (BTS from random "
              f"logs) is {mean:.3f} ± {sd:.3f}, and the means of consecutive blocks of {args.resamples} "
              f"resamples range over [{low:.3f}, {high:.3f}] (OBP: {OBP_PUBLISHED['ipw'][0]:.3f}). IPW and "
              "SNIPW match obp to 1e-6 on the same inputs (tests/offline/test_obp_agreement.py).",
              "- Reward model. OBP fits sklearn's LogisticRegression (C=100, lbfgs) on raw features; ours is "
              f"logistic regression by {model.num_steps} full-batch Adam steps on features scaled by their "
              f"largest |value|, L2 {model.l2:g}, the intercept started at the log's click rate. With 0.4% "
              "clicks and little signal in OBD's user features both are close to a per-position constant, so "
              "DM's error is mostly the gap between the two logs' click rates; DR/SNDR inherit IPW's noise.",
              "- Switch-DR/DRos: same SLOPE rule and candidates as OBP; which candidate wins on each resample "
              "depends on the reward model, so these move with it.",
              "- The BTS action distribution is simulated (ours in JAX, OBP's with 1,000,000 numpy draws); "
              "its Monte-Carlo error (< 0.002 per entry here) is small beside the bootstrap noise."]
    return lines


def _mean_sd(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def figure(results, path) -> None:
    fig = Figure(figsize=(10, 4))
    x = np.arange(len(ESTIMATORS))
    for i, ((policy, behavior), result) in enumerate(results.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        errors = [result["errors"][name] for name in ESTIMATORS]
        ax.bar(x - 0.2, [np.mean(e) for e in errors], 0.4, yerr=[np.std(e, ddof=1) for e in errors],
               capsize=3, label="ecomrl_jax")
        if policy == "bts":
            ax.bar(x + 0.2, [OBP_PUBLISHED[n][0] for n in ESTIMATORS], 0.4,
                   yerr=[OBP_PUBLISHED[n][1] for n in ESTIMATORS], capsize=3, label="OBP published")
        ax.set_xticks(x, [n.replace("-slope", "\n(SLOPE)") for n in ESTIMATORS], fontsize=7)
        ax.set_ylabel("relative estimation error")
        ax.set_title(f"{policy} policy from {behavior} logs (mean ± sd)")
        ax.legend(fontsize=7)
    harness.save_figure(fig, path)


if __name__ == "__main__":
    main()
