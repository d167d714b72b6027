"""Accuracy of off-policy estimators on simulator logs, offline policy learning, and OBDClicks-v0's
out-of-sample check.

1. On one-step logs (`offline.collect`) of ShopperRec-v0 (single item and a 3-slate of 10),
   DynamicPricing-v0 and CouponCRM-v0, each estimator's error against the simulator's true value
   (`collect.true_value`) as the log grows, and as the evaluation policy moves away from the
   behaviour policy: pi_e = (1 - shift) pi_b + shift pi_t, pi_t a sharp softmax of another score.
   Behaviour: softmax of a random linear score of the context (seed 0), target score seed 1; log
   r of size n uses key (n, r). One figure per env: |relative error| against rows and against shift.
2. Offline policy learning (`offline.policy_learning`, IPW and DR objectives) on 20,000-decision
   logs of the behaviour policy, checked in the simulator (truth) against the behaviour policy and
   PPO trained online on the same one-step env (episodes of one step); seeds 0..S-1.
3. OBDClicks-v0 (fitted to OBD's random log): its click rate under OBD's Bernoulli TS and random
   policies against the rates logged under them.

Writes `results/ope_accuracy.md` and `results/ope_accuracy_<env>.png`.

    python -m experiments.ope_accuracy [--quick]
"""

import time

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.learners import ppo
from ecomrl_jax.learners.actor_critic import make_network
from ecomrl_jax.offline import estimators, load_obd, reward_models
from ecomrl_jax.offline.collect import action_dist, collect, softmax_policy, true_value
from ecomrl_jax.offline.policies import bts_action_dist, zozotown_prior
from ecomrl_jax.offline.policy_learning import PolicyLearner, learn
from ecomrl_jax.wrappers import flatten

ENVS = {  # label: (env id, kwargs, behaviour score scale, candidate features for the policy learner)
    "ShopperRec-v0": ("ShopperRec-v0", {}, 0.3, 11),
    "ShopperRec-v0 slate": ("ShopperRec-v0", {"slate_size": 3}, 0.3, 11),
    "DynamicPricing-v0": ("DynamicPricing-v0", {}, 0.3, 0),
    "CouponCRM-v0": ("CouponCRM-v0", {}, 0.3, 0),
}
NAMES = ("dm", "ipw", "snipw", "dr", "sndr", "switch-dr-slope", "dr-os-slope")
TARGET_SCALE = 3.0  # the target score's scale: a sharp policy far from the behaviour
SHIFTS = (0.0, 0.25, 0.5, 0.75, 1.0)
LEARN_DECISIONS = 20_000


def linear_score(env, params, seed: int, scale: float):
    """context -> scale * (context @ W), W standard normal from `seed` (columns scaled to O(1));
    a pytree, so jitted log collection and true values compile once per env, not per score."""
    obs, _ = env.reset(jax.random.key(0), params)
    weights = jax.random.normal(jax.random.key(seed), (flatten(obs).shape[0], env.num_actions))
    return Partial(_linear_score, weights, scale)


def _linear_score(weights, scale, x):
    return scale * (x / (1.0 + jnp.abs(x))) @ weights


def mixture(behavior, target, shift: float):
    """(1 - shift) behavior + shift target, as a pytree policy (shift traced: one compilation)."""
    return Partial(_mixture, behavior, target, shift)


def _mixture(behavior, target, shift, x):
    return (1.0 - shift) * behavior(x) + shift * target(x)


def reward_model_for(log):
    """A small MLP reward model, 2-fold cross-fitted (identity link: rewards are not clicks)."""
    return reward_models.RewardModel(hidden=(32,), link="identity", num_folds=2, num_steps=200)


def estimate_all(log, policy, q_hat):
    # a collected slate decision is len_list consecutive rows of one context: its distribution once
    dist = jnp.repeat(action_dist(policy, log.context[::log.len_list], log.len_list), log.len_list, axis=0)
    terms = estimators.row_terms(log, dist, q_hat)
    return {k: float(v) for k, v in estimators.estimate(terms, NAMES).items()}


def accuracy(label, sizes, reps, quiet):
    """{"rows": {n: {name: [|rel err| per rep]}}, "shift": {shift: {...}}, "truth": {...}}."""
    env_id, kwargs, scale, _ = ENVS[label]
    env, params = ecomrl_jax.make(env_id, **kwargs)
    behavior = softmax_policy(linear_score(env, params, 0, scale))
    target = softmax_policy(linear_score(env, params, 1, TARGET_SCALE))
    policies = {s: mixture(behavior, target, s) for s in SHIFTS}
    truth = {s: true_value(env, params, p, jax.random.key(99), 20_000) for s, p in policies.items()}
    by_rows, by_shift = {}, {s: {k: [] for k in NAMES} for s in SHIFTS}
    mid = SHIFTS[len(SHIFTS) // 2]
    for n in sizes:
        by_rows[n] = {k: [] for k in NAMES}
        for r in range(reps):
            log = collect(env, params, behavior, jax.random.fold_in(jax.random.key(n), r), n)
            q_hat = reward_models.fit_predict(reward_model_for(log), log, jax.random.key(r))
            shifts = SHIFTS if n == sizes[-1] else (mid,)
            for s in shifts:
                for k, v in estimate_all(log, policies[s], q_hat).items():
                    err = abs(v - truth[s][0]) / abs(truth[s][0])
                    if s == mid:
                        by_rows[n][k].append(err)
                    if n == sizes[-1]:
                        by_shift[s][k].append(err)
        if not quiet:
            print(f"{label}: {n:,} decisions x {reps} logs done", flush=True)
    return {"rows": by_rows, "shift": by_shift, "truth": truth}


def ppo_policies(env, params, total_timesteps, seeds):
    """PPO trained online on the one-step env, vmapped over seeds (keys split(key(0), seeds)):
    one policy (context -> action probabilities) per seed, sharing one compiled function."""
    one_step = params.replace(max_steps_in_episode=1)
    config = ppo.PPOConfig(total_timesteps=total_timesteps, num_envs=64, num_steps=4)
    train = jax.jit(jax.vmap(ppo.make_train(config, env, one_step)))
    weights = ppo.network_params(train(jax.random.split(jax.random.key(0), seeds))[0])
    network, _ = make_network(env, one_step, config.hidden_size, "PPO")
    _, unravel = ravel_pytree(env.reset(jax.random.key(0), params)[0])

    def probs(weights, x):
        return jax.nn.softmax(network.apply(weights, unravel(x))[0])

    return [Partial(probs, jax.tree.map(lambda w: w[seed], weights)) for seed in range(seeds)]


def learning(label, seeds, ppo_steps, quiet):
    """True values per seed of the behaviour, the IPW- and DR-learned policies and PPO."""
    env_id, kwargs, scale, item_features = ENVS[label]
    env, params = ecomrl_jax.make(env_id, **kwargs)
    behavior = softmax_policy(linear_score(env, params, 0, scale))
    slate = env_id == "ShopperRec-v0" and kwargs.get("slate_size", 1) > 1
    steps = 300 if slate else 2000
    values = {k: [] for k in ("behaviour", "offline IPW", "offline DR", "PPO (online)")}
    online = ppo_policies(env, params, ppo_steps, seeds)
    for seed in range(seeds):
        log = collect(env, params, behavior, jax.random.key(1000 + seed), LEARN_DECISIONS)
        q_hat = reward_models.fit_predict(reward_model_for(log), log, jax.random.key(seed))
        truth_key = jax.random.key(2000 + seed)
        values["behaviour"].append(true_value(env, params, behavior, truth_key, 5000)[0])
        for objective in ("ipw", "dr"):
            config = PolicyLearner(objective=objective, hidden=(32,), learning_rate=1e-2,
                                   num_steps=steps, batch_size=256 if slate else 512,
                                   item_features=item_features)
            policy = learn(config, log, jax.random.key(seed), q_hat if objective == "dr" else None)
            values[f"offline {objective.upper()}"].append(
                true_value(env, params, policy, truth_key, 5000)[0])
        values["PPO (online)"].append(true_value(env, params, online[seed], truth_key, 5000)[0])
        if not quiet:
            print(f"{label}: learning seed {seed} done", flush=True)
    return values


def rows(log, index):
    """The rows `index` of a log (its item features kept whole)."""
    return log.replace(**{k: getattr(log, k)[index] for k in ("context", "action", "position", "reward",
                                                              "propensity")})


def obd_learning(num_resamples: int):
    """A per-position DR-learned policy from the first half (by time) of OBD's random log, its
    DR and IPW estimates with bootstrap intervals on the second half, and the random policy's."""
    log = load_obd("random")
    half = log.n_rows // 2
    train, test = rows(log, slice(None, half)), rows(log, slice(half, None))
    model = reward_models.RewardModel(num_folds=2)
    q_train = reward_models.fit_predict(model, train, jax.random.key(0))
    config = PolicyLearner(objective="dr", slate="per-position", hidden=(), num_steps=500)
    policy = learn(config, train, jax.random.key(1), q_train)
    q_test = reward_models.fit_predict(model, test, jax.random.key(2))
    out = {}
    for name, dist in (("offline DR (per position)", policy.action_dist(test.context)),
                       ("uniform random", jnp.full((test.n_rows, 80, 3), 1.0 / 80))):
        terms = estimators.row_terms(test, dist, q_test)
        out[name] = estimators.bootstrap(terms, jax.random.key(3), ("dr", "ipw"), num_resamples)
    return out


def obd_check():
    """(policy, logged click rate (mean, low, high), simulated click rate) for random and BTS."""
    env, params = ecomrl_jax.make("OBDClicks-v0")
    alpha, beta = zozotown_prior("all")
    dists = {"random": jnp.full((env.num_items, env.slate_size), 1.0 / env.num_items),
             "bts": bts_action_dist(jax.random.key(0), alpha, beta, env.slate_size)}
    probs = jax.vmap(lambda x: env.click_probs(x, params))(params.user_context)
    rows = []
    for name, dist in dists.items():
        sim = float(jnp.einsum("ukl,kl->", probs, dist)) / (probs.shape[0] * env.slate_size)
        rows.append((name, confidence_interval(np.asarray(load_obd(name).reward)), sim))
    return rows


def plot(label, result, path):
    fig = Figure(figsize=(10, 4))
    ax_n, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sizes = sorted(result["rows"])
    for i, k in enumerate(NAMES):
        ax_n.plot(sizes, [np.mean(result["rows"][n][k]) for n in sizes], "o-", color=f"C{i}", label=k)
        ax_s.plot(SHIFTS, [np.mean(result["shift"][s][k]) for s in SHIFTS], "o-", color=f"C{i}", label=k)
    ax_n.set(xscale="log", yscale="log", xlabel="logged decisions", ylabel="mean |relative error|",
             title=f"{label}: shift {SHIFTS[len(SHIFTS) // 2]}")
    ax_s.set(yscale="log", xlabel="shift of pi_e from pi_b to the target", ylabel="mean |relative error|",
             title=f"{label}: {sizes[-1]:,} decisions")
    ax_s.legend(fontsize=7)
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "1e3-1e4 decisions, 2 logs, 2 seeds (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv,
        max_rows=harness.Size("largest log (decisions), from 1e3 by factors of 10", 10_000, 1_000_000, 1_000),
        reps=harness.Size("logs per size (for the mean error)", 2, 10, 1),
        ppo_steps=harness.Size("PPO env steps per seed", 50_000, 500_000, 256))
    sizes = [10 ** e for e in range(3, int(np.log10(args.max_rows)) + 1)]
    start = time.perf_counter()
    results = {label: accuracy(label, sizes, args.reps, args.quiet) for label in ENVS}
    learned = {label: learning(label, args.seeds, args.ppo_steps, args.quiet) for label in ENVS}
    obd = obd_check()
    obd_learned = obd_learning(200 if args.quick else 1000)
    lines = write_table(results, learned, obd, obd_learned, sizes, args, time.perf_counter() - start)
    harness.write_table(lines, args.out / "ope_accuracy.md")
    for label, result in results.items():
        plot(label, result, args.out / f"ope_accuracy_{label.replace(' ', '_')}.png")
    return {"results": results, "learned": learned, "obd": obd, "obd_learned": obd_learned}


def most_accurate(errors: dict) -> str:
    """The estimator with the lowest mean |relative error| in {name: [errors]}."""
    return min(errors, key=lambda name: np.mean(errors[name]))


def write_table(results, learned, obd, obd_learned, sizes, args, seconds) -> list[str]:
    mid = SHIFTS[len(SHIFTS) // 2]
    lines = ["# Off-policy estimators on simulator logs, offline policy learning, OBDClicks-v0", "",
             f"Sizes {sizes} decisions (a slate decision is 3 rows), {args.reps} logs each; "
             f"run {seconds:.0f} s. Mean |relative error| against the simulator's true value.", ""]
    for label, result in results.items():
        lines += [f"## {label}", "", "True values by shift: " + ", ".join(
            f"{s}: {t[0]:.4g}" for s, t in result["truth"].items()), "",
            f"By log size (shift {mid}):", "", "| decisions | " + " | ".join(NAMES) + " |",
            "|---|" + "---:|" * len(NAMES)]
        for n in sizes:
            lines.append(f"| {n:,} | " + " | ".join(f"{np.mean(result['rows'][n][k]):.3f}" for k in NAMES) + " |")
        lines += ["", f"By shift ({sizes[-1]:,} decisions):", "", "| shift | " + " | ".join(NAMES) + " |",
                  "|---|" + "---:|" * len(NAMES)]
        for s in SHIFTS:
            lines.append(f"| {s} | " + " | ".join(f"{np.mean(result['shift'][s][k]):.3f}" for k in NAMES) + " |")
        lines += ["", f"Lowest mean error: {most_accurate(result['rows'][sizes[-1]])} at {sizes[-1]:,} "
                  f"decisions (shift {mid}), {most_accurate(result['shift'][SHIFTS[-1]])} at shift "
                  f"{SHIFTS[-1]}, {most_accurate(result['rows'][sizes[0]])} at {sizes[0]:,} decisions.", ""]
    lines += ["## Offline policy learning (true value in the simulator, 95% t interval over seeds)", "",
              f"{LEARN_DECISIONS:,} logged decisions per seed, {args.seeds} seeds; PPO: {args.ppo_steps:,} "
              "online env steps on the same one-step env.", "",
              "| env | behaviour | offline IPW | offline DR | PPO (online) | IPW - behaviour | DR - behaviour |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    above = {}  # env -> the lower end of the better offline learner's gain over the behaviour
    for label, v in learned.items():
        gains = {k: confidence_interval(np.subtract(v[k], v["behaviour"])) for k in ("offline IPW", "offline DR")}
        above[label] = max(g[1] for g in gains.values())
        lines.append(f"| {label} | " + " | ".join(harness.ci_cell(v[k], ".4f") for k in v)
                     + f" | {harness.cell(gains['offline IPW'], '.4f')} | {harness.cell(gains['offline DR'], '.4f')} |")
    missed = [label for label, low in above.items() if not low > 0]
    lines += ["", "Goal (an offline-learned policy beats the behaviour policy, the interval of the gain above 0): "
              + ("met on every env." if not missed else f"NOT met on {', '.join(missed)}.")]
    lines += ["", "## Offline policy learning on OBD (random log: train on the first half by time, "
              "estimate on the second; bootstrap 95% intervals)", "",
              "| policy | DR | IPW |", "|---|---:|---:|"]
    for name, est in obd_learned.items():
        lines.append(f"| {name} | " + " | ".join(
            harness.cell((float(est[k].value), float(est[k].low), float(est[k].high)), ".5f")
            for k in ("dr", "ipw")) + " |")
    lines += ["", "## OBDClicks-v0 against OBD's logs", "",
              "| policy | logged click rate (95% CI) | simulated | inside |", "|---|---:|---:|---|"]
    for name, logged, sim in obd:
        lines.append(f"| {name} | {harness.cell(logged, '.5f')} | {sim:.5f} | "
                     f"{'yes' if logged[1] <= sim <= logged[2] else 'no'} |")
    return lines


if __name__ == "__main__":
    main()
