"""The `ecomrl` command: list, train, evaluate, sweep, tune, bench, ope.

The installed command starts at `ecomrl_launch.main`, which joins a multi-process run
(`jax.distributed`) before this package is imported; `train` then spans every process's devices.
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

import ecomrl_jax
from ecomrl_jax import benchmark, checkpoint, evaluation, sweep
from ecomrl_jax.learners import LEARNERS
from ecomrl_jax.learners.loop import compile_updates, make_mesh
from ecomrl_jax.logging import MetricsWriter, ProgressBar, chunk_sizes, plot_learning_curve
from ecomrl_jax.offline import estimators, load_npz, load_obd, policies, read_obd_csv, reward_models
from ecomrl_launch import add_cluster_flags, launched_as_several_tasks

RUN_FILE = "run.json"


class UsageError(Exception):
    """A bad command-line argument; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_overrides(pairs: list[str], config_cls) -> dict:
    """`name=value` pairs -> typed config overrides; unknown names are errors."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in fields:
            raise UsageError(f"--set expects NAME=VALUE with NAME one of {sorted(fields)}, got {pair!r}")
        kind = type(fields[name].default)
        try:
            overrides[name] = value if kind is str else kind(json.loads(value))
        except (ValueError, TypeError):
            raise UsageError(f"--set {name}: cannot read {value!r} as {kind.__name__}") from None
    return overrides


def read_config_file(path, config_cls) -> dict:
    """A JSON object of config fields (e.g. `tune`'s best_config.json) -> typed overrides."""
    try:
        fields = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--config {path}: cannot read a JSON object ({error})") from None
    if not isinstance(fields, dict):
        raise UsageError(f"--config {path}: expected a JSON object of config fields")
    valid = {f.name: type(f.default) for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise UsageError(f"--config {path}: unknown {config_cls.__name__} fields {unknown}; "
                         f"valid: {sorted(valid)}")
    try:
        return {k: v if valid[k] is str else valid[k](v) for k, v in fields.items()}
    except (ValueError, TypeError) as error:
        raise UsageError(f"--config {path}: {error}") from None


def check_env_and_algo(args) -> None:
    if args.env not in ecomrl_jax.list_envs():
        raise UsageError(f"unknown --env {args.env!r}; choose from {ecomrl_jax.list_envs()}")
    if args.algo not in LEARNERS:
        raise UsageError(f"unknown --algo {args.algo!r}; choose from {sorted(LEARNERS)}")


def build(run: dict):
    """Env, params, config and learner from a run description (also stored with checkpoints)."""
    env, params = ecomrl_jax.make(run["env"])
    config_cls, module = LEARNERS[run["algo"]]
    config = config_cls(**run["config"])
    config.validate()
    return env, params, module, config, module.make_learner(config, env, params)


def cmd_list(args) -> None:
    print("environments: " + ", ".join(ecomrl_jax.list_envs()))
    print("algorithms:   " + ", ".join(sorted(LEARNERS)))


def check_processes(args) -> bool:
    """Whether this process writes the run's files: the only one, or process 0 of a multi-process
    run (`ecomrl_launch` joined it before jax started; the mesh then spans every process's devices)."""
    explicit = args.num_processes is not None
    asked = explicit or args.distributed or launched_as_several_tasks(os.environ)
    if asked and not jax.distributed.is_initialized():
        raise UsageError("a multi-process run (--coordinator/--num-processes/--process-id, "
                         "--distributed, or srun/mpirun with several tasks) needs the `ecomrl` "
                         "command (or python -m ecomrl_launch): jax.distributed must start before "
                         "ecomrl_jax is imported")
    if explicit and (jax.process_count(), jax.process_index()) != (args.num_processes, args.process_id):
        raise UsageError(f"this is process {jax.process_index()} of {jax.process_count()}, not "
                         f"--process-id {args.process_id} of --num-processes {args.num_processes}")
    if jax.process_count() > 1 and args.devices not in (None, jax.device_count()):
        raise UsageError(f"a multi-process run spans all {jax.device_count()} devices of its "
                         f"{jax.process_count()} processes; leave out --devices (got {args.devices})")
    return jax.process_index() == 0


def to_host(tree):
    """`tree`'s global values as numpy arrays, on every process (in a multi-process run a
    collective that every process joins: its arrays span devices of other processes)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def cmd_train(args) -> None:
    primary = check_processes(args)
    out = Path(args.out)
    if args.resume:
        run_path = out / RUN_FILE
        if not run_path.exists():
            raise UsageError(f"--resume: no run found in {out} (missing {RUN_FILE})")
        run = json.loads(run_path.read_text())
    else:
        check_env_and_algo(args)
        if args.seeds < 1 or (args.total_steps or 1) < 1 or args.checkpoints < 1:
            raise UsageError("--seeds, --total-steps and --checkpoints must be positive")
        if (out / RUN_FILE).exists():
            raise UsageError(f"{out} already holds a run; use --resume or another --out")
        config_cls = LEARNERS[args.algo][0]
        config = read_config_file(args.config, config_cls) if args.config else {}
        config.update(parse_overrides(args.set, config_cls))
        if args.total_steps is not None:
            config["total_timesteps"] = args.total_steps
        run = {"env": args.env, "algo": args.algo, "seeds": args.seeds, "seed": args.seed,
               "checkpoints": args.checkpoints,
               "config": dataclasses.asdict(config_cls(**config))}
    env, params, module, config, learner = build(run)
    mesh = make_mesh(args.devices)
    keys = jax.random.split(jax.random.key(run["seed"]), run["seeds"])
    with jax.set_mesh(mesh):  # each seed's envs split over the devices (learners.loop)
        state = jax.jit(jax.vmap(learner.init))(keys)
    if jax.process_count() > 1:  # every process has checked `out` before process 0 writes to it
        multihost_utils.sync_global_devices("ecomrl train: run directory checked")
    if not args.resume and primary:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_FILE).write_text(json.dumps(run, indent=2))

    done_updates = 0
    if args.resume and checkpoint.latest_step(out / "checkpoints") is not None:
        state, _, done_updates = checkpoint.restore(out / "checkpoints", state)
        if primary:
            print(f"resuming {out} after {done_updates} of {learner.num_updates} updates")
    every = -(-learner.num_updates // run["checkpoints"])  # updates between checkpoints
    sizes = list(chunk_sizes(learner.num_updates, done_updates))
    compiled = {n: compile_updates(learner, state, n, mesh) for n in set(sizes)}  # at most two sizes
    writer = MetricsWriter(out) if primary else None
    progress = ProgressBar(learner.num_updates, learner.steps_per_update, run["seeds"],
                           initial=done_updates, quiet=args.quiet or not primary)
    for n in sizes:
        state, metrics = compiled[n](state)
        metrics = to_host(metrics)
        if primary:
            writer.write(metrics, first_update=done_updates)
        previous, done_updates = done_updates, done_updates + n
        if done_updates // every > previous // every or done_updates == learner.num_updates:
            checkpoint.save(out / "checkpoints", done_updates, state, run)  # every process (orbax)
        progress.update(done_updates, metrics)
    network_params = jax.device_put(to_host(module.network_params(state)), jax.local_devices()[0])
    if not primary:
        return
    writer.close()
    plot_learning_curve(out / "metrics.csv", out / "learning_curve.png",
                        title=f"{run['algo']} on {run['env']}")
    print(f"\nwrote {out / 'metrics.csv'} and {out / 'learning_curve.png'}")
    report(env, params, module, config, network_params, args.episodes, run["seed"])


def cmd_evaluate(args) -> None:
    out = Path(args.checkpoint)
    if not (out / RUN_FILE).exists():
        raise UsageError(f"--checkpoint {out}: not a training run directory (missing {RUN_FILE})")
    run = json.loads((out / RUN_FILE).read_text())
    env, params, module, config, learner = build(run)
    target = jax.vmap(learner.init)(jax.random.split(jax.random.key(0), run["seeds"]))
    state, _, step = checkpoint.restore(out / "checkpoints", target)
    print(f"{run['algo']} on {run['env']}, checkpoint after {step} updates")
    report(env, params, module, config, module.network_params(state), args.episodes, run["seed"])


def report(env, params, module, config, network_params, num_episodes: int, seed: int) -> None:
    """Evaluate each seed's final policy (`network_params`, leading axis the seeds) on the same
    episodes; print mean and 95% CI over seeds."""
    per_seed = []
    for i in range(jax.tree.leaves(network_params)[0].shape[0]):
        policy = module.make_policy(config, env, jax.tree.map(lambda x: x[i], network_params),
                                    deterministic=True)
        episodes = evaluation.evaluate(env, params, policy, jax.random.key(seed + 10_000), num_episodes)
        per_seed.append({k: float(np.mean(v)) for k, v in episodes.items()})
    print(f"\nevaluation: {num_episodes} episodes per seed, greedy policy, mean [95% CI over seeds]")
    print("| metric | value |\n|---|---|")
    for name in per_seed[0]:
        values = np.array([s[name] for s in per_seed])
        if len(values) == 1:
            print(f"| {name} | {values[0]:.3f} (one seed: no interval) |")
            continue
        mean, low, high = evaluation.confidence_interval(values)
        print(f"| {name} | {mean:.3f} [{low:.3f}, {high:.3f}] |")


def parse_grid(pairs: list[str], config_cls) -> dict[str, list]:
    """`name=v1,v2,...` pairs -> {name: [values]} typed like the field's default."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    grid = {}
    for pair in pairs:
        name, sep, values = pair.partition("=")
        if not sep or name not in fields:
            raise UsageError(f"--grid expects NAME=V1,V2,... with NAME one of "
                             f"{sweep.traced_fields(config_cls)}, got {pair!r}")
        kind = type(fields[name].default)
        try:
            grid[name] = [kind(json.loads(v)) for v in values.split(",")]
        except (ValueError, TypeError):
            raise UsageError(f"--grid {name}: cannot read {values!r} as {kind.__name__} values") from None
    if not grid:
        raise UsageError("sweep needs at least one --grid NAME=V1,V2,...")
    return grid


def cmd_sweep(args) -> None:
    check_env_and_algo(args)
    if args.seeds < 1 or (args.chunk_size is not None and args.chunk_size < 1):
        raise UsageError("--seeds and --chunk-size must be positive")
    config_cls, module = LEARNERS[args.algo]
    grid = parse_grid(args.grid, config_cls)
    base = {**parse_overrides(args.set, config_cls), "total_timesteps": args.total_steps}
    env, params = ecomrl_jax.make(args.env)
    rows = sweep.run_sweep(module, config_cls, env, params, base, grid, args.seeds, args.seed,
                           args.chunk_size, quiet=args.quiet, devices=args.devices)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(grid)
    table = (f"{args.algo} on {args.env}, {args.total_steps:,} env steps per run, {args.seeds} seeds "
             f"per point; score = mean episode return over the last tenth of updates\n\n"
             + sweep.sweep_table(rows, names))
    (out / "sweep.md").write_text(table + "\n")
    (out / "sweep.json").write_text(json.dumps({"env": args.env, "algo": args.algo, "base": base,
                                                "grid": grid, "rows": rows}, indent=2))
    print(table)
    if len(names) <= 2:
        sweep.plot_sweep(rows, names, out / "sweep.png")
        print(f"\nwrote {out / 'sweep.md'}, {out / 'sweep.json'} and {out / 'sweep.png'}")


def cmd_tune(args) -> None:
    try:
        from ecomrl_jax import tune
    except ModuleNotFoundError as error:
        raise UsageError(f'tune needs {error.name}: pip install "ecomrl_jax[tune]"') from None
    check_env_and_algo(args)
    if min(args.trials, args.batch, args.seeds, args.total_steps) < 1:
        raise UsageError("--trials, --batch, --seeds and --total-steps must be positive")
    config_cls, module = LEARNERS[args.algo]
    space = tune.parse_space(args.space, config_cls)
    base = {**parse_overrides(args.set, config_cls), "total_timesteps": args.total_steps}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    env, params = ecomrl_jax.make(args.env)
    result = tune.run_tune(module, config_cls, env, params, base, space, args.trials, args.batch,
                           args.sampler, args.pruner, args.seeds, args.seed, storage,
                           args.study or f"{args.algo}-{args.env}", args.quiet, args.devices,
                           args.sampler_seed)
    study = result.study
    tune.write_trials_csv(study, out / "trials.csv")
    (out / "best_config.json").write_text(json.dumps(tune.best_config(study, config_cls, base), indent=2) + "\n")
    states = [row["state"] for row in tune.trial_rows(study)]
    table = (f"{args.algo} on {args.env}, {args.total_steps:,} env steps per run, {args.seeds} seeds per "
             f"trial, {args.sampler} sampler, {args.pruner} pruner; study {study.study_name!r}: "
             + ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
             + f"; this run trained {result.env_steps:,} env steps. Score = mean episode return over the "
             f"last tenth of updates\n\n" + tune.tune_table(study))
    (out / "tune.md").write_text(table + "\n")
    tune.plot_history(study, out / "history.png")
    print(table)
    if not tune.plot_importance(study, out / "importance.png"):
        print("one parameter: no importance figure")
    print(f"\nwrote trials.csv, best_config.json, tune.md and figures to {out}; "
          f"ecomrl train --algo {args.algo} --env {args.env} --config {out / 'best_config.json'} trains the best")


def load_log(args):
    """The logged data of `--data`: the vendored OBD sample, an OBD-layout CSV or a `.npz` log."""
    if args.data == "obd":
        return load_obd(args.behavior)
    path = Path(args.data)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.name.endswith((".csv", ".csv.gz")):
        return read_obd_csv(path)
    raise UsageError(f"--data must be 'obd', a CSV in OBD's layout or a .npz log, got {args.data!r}")


def evaluation_action_dist(args, data, key):
    """(n, num_actions, len_list) action distribution of `--policy`: bts, random or an array file."""
    if args.policy == "random":
        return policies.uniform_action_dist(data.n_rows, data.num_actions, data.len_list)
    if args.policy == "bts":
        alpha, beta = policies.zozotown_prior(args.campaign)
        if alpha.shape[0] != data.num_actions:
            raise UsageError(f"--policy bts (ZOZOTOWN prior, campaign {args.campaign}) has {alpha.shape[0]} "
                             f"items, the log {data.num_actions}")
        chunk = min(10_000, args.bts_samples)
        if args.bts_samples % chunk:
            raise UsageError(f"--bts-samples must be a multiple of 10000 or below it, got {args.bts_samples}")
        dist = jax.jit(policies.bts_action_dist, static_argnums=(3, 4, 5))(
            key, alpha, beta, data.len_list, args.bts_samples, chunk)
        return jax.numpy.broadcast_to(dist, (data.n_rows, *dist.shape))
    path = Path(args.policy)
    if path.suffix != ".npy":
        raise UsageError(f"--policy must be bts, random or a .npy action distribution, got {args.policy!r}")
    try:
        return jax.numpy.asarray(np.load(path, allow_pickle=False), jax.numpy.float32)
    except (OSError, ValueError) as e:
        raise UsageError(f"--policy {path}: cannot read a .npy array ({e})") from None


def cmd_ope(args) -> None:
    names = estimators.check_names([n.strip() for n in args.estimators.split(",") if n.strip()])
    if args.bootstrap < 1 or not 0 < args.alpha < 1 or args.folds < 1:
        raise UsageError("--bootstrap and --folds must be positive and --alpha in (0, 1)")
    data = load_log(args)
    policy_key, model_key, bootstrap_key = jax.random.split(jax.random.key(args.seed), 3)
    action_dist = evaluation_action_dist(args, data, policy_key)
    estimators.check_action_dist(action_dist, data, name=f"--policy {args.policy} action distribution")
    q_hat = None
    if set(names) - set(estimators.MODEL_FREE):
        model = reward_models.RewardModel(hidden=(32, 32) if args.reward_model == "mlp" else (),
                                          link="logistic" if args.reward_model != "linear" else "identity",
                                          num_folds=args.folds)
        reward_models.check_rewards(model, data)
        q_hat = reward_models.fit_predict(model, data, model_key)
    terms = jax.jit(estimators.row_terms)(data, action_dist, q_hat)
    intervals = jax.jit(estimators.bootstrap, static_argnames=("names", "num_resamples"))(
        terms, bootstrap_key, names, num_resamples=args.bootstrap, alpha=args.alpha, tau=args.tau,
        lambda_=args.lambda_)
    rows = {name: {k: float(getattr(intervals[name], k)) for k in ("value", "low", "high")} for name in names}
    level = f"{100 * (1 - args.alpha):g}%"
    print(f"{args.policy} policy estimated from {data.n_rows:,} rows logged by "
          f"{args.behavior if args.data == 'obd' else args.data}; logged mean reward {float(data.reward.mean()):.6f}")
    print(f"| estimator | value | {level} interval ({args.bootstrap} bootstrap resamples) |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['value']:.6f} | [{row['low']:.6f}, {row['high']:.6f}] |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "estimates": rows, "n_rows": data.n_rows, "logged_mean_reward": float(data.reward.mean()),
            "data": args.data, "behavior": args.behavior if args.data == "obd" else None, "policy": args.policy,
            "bootstrap": args.bootstrap, "alpha": args.alpha, "seed": args.seed,
            "reward_model": args.reward_model if q_hat is not None else None, "folds": args.folds,
            "tau": args.tau, "lambda": args.lambda_}, indent=2) + "\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ecomrl", description="JAX reinforcement learning for e-commerce")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list environments and algorithms").set_defaults(func=cmd_list)

    train = sub.add_parser("train", help="train a learner; checkpoints and resumes")
    train.add_argument("--env", default="ShopperRec-v0")
    train.add_argument("--algo", default="ppo")
    train.add_argument("--seeds", type=int, default=1, help="number of seeds, trained vmapped")
    train.add_argument("--seed", type=int, default=0, help="first PRNG seed")
    train.add_argument("--total-steps", type=int, default=None,
                       help="env steps per seed (default: the learner's own)")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="override a config field, e.g. --set lr=1e-3")
    train.add_argument("--config", default=None, metavar="FILE",
                       help="JSON object of config fields (e.g. tune's best_config.json); --set on top")
    train.add_argument("--checkpoints", type=int, default=10, help="checkpoints over the run")
    train.add_argument("--episodes", type=int, default=1000, help="evaluation episodes per seed")
    train.add_argument("--out", default="runs/latest")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--devices", type=int, default=None,
                       help="devices to split each seed's envs over (default: all; num_envs must "
                       "divide by it); a run may resume on another number")
    train.add_argument("--quiet", action="store_true", help="no progress line")
    add_cluster_flags(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained run's latest checkpoint")
    evaluate.add_argument("--checkpoint", required=True, help="the run directory given to train --out")
    evaluate.add_argument("--episodes", type=int, default=1000)
    evaluate.set_defaults(func=cmd_evaluate)

    sweep_parser = sub.add_parser("sweep", help="grid over config fields, trained as one vmapped run")
    sweep_parser.add_argument("--env", default="ShopperRec-v0")
    sweep_parser.add_argument("--algo", default="ppo")
    sweep_parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                              help="values of one traced config field, e.g. --grid lr=1e-3,3e-3")
    sweep_parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                              help="fixed config override for every point")
    sweep_parser.add_argument("--seeds", type=int, default=3, help="seeds per grid point")
    sweep_parser.add_argument("--seed", type=int, default=0, help="base PRNG seed (shared by all points)")
    sweep_parser.add_argument("--total-steps", type=int, default=500_000, help="env steps per run")
    sweep_parser.add_argument("--chunk-size", type=int, default=None,
                              help="runs per compiled batch (default: all at once); lower it to save memory")
    sweep_parser.add_argument("--devices", type=int, default=None,
                              help="devices to split the runs over (default: all)")
    sweep_parser.add_argument("--out", default="results/sweep")
    sweep_parser.add_argument("--quiet", action="store_true", help="no progress line")
    sweep_parser.set_defaults(func=cmd_sweep)

    tune_parser = sub.add_parser("tune", help="Optuna search over config fields, trials trained "
                                 "vmapped in batches (needs the tune extra)")
    tune_parser.add_argument("--env", default="ShopperRec-v0")
    tune_parser.add_argument("--algo", default="ppo")
    tune_parser.add_argument("--space", action="append", default=[], metavar="NAME=SPEC",
                             help="a traced config field's range: LOW:HIGH, log:LOW:HIGH, int:LOW:HIGH "
                             "or V1,V2,... (choices), e.g. --space lr=log:1e-4:1e-2")
    tune_parser.add_argument("--trials", type=int, default=64, help="trials in the study (all workers)")
    tune_parser.add_argument("--batch", type=int, default=16, help="trials trained at once, vmapped")
    tune_parser.add_argument("--sampler", default="tpe", choices=["tpe", "gp", "random", "grid"],
                             help="gp needs torch; grid needs listed values or int ranges")
    tune_parser.add_argument("--pruner", default="none", choices=["none", "median", "hyperband"])
    tune_parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                             help="fixed config override for every trial")
    tune_parser.add_argument("--seeds", type=int, default=1, help="seeds per trial (its value: their mean)")
    tune_parser.add_argument("--seed", type=int, default=0, help="base PRNG seed (shared by all trials)")
    tune_parser.add_argument("--sampler-seed", type=int, default=None,
                             help="the sampler's seed (default --seed); give each worker of a shared study its own")
    tune_parser.add_argument("--total-steps", type=int, default=500_000, help="env steps per run")
    tune_parser.add_argument("--storage", default=None,
                             help="Optuna storage URL shared by workers, e.g. postgresql://user@host/db "
                             "(default: sqlite:///OUT/study.db)")
    tune_parser.add_argument("--study", default=None, help="study name (default ALGO-ENV)")
    tune_parser.add_argument("--devices", type=int, default=None,
                             help="devices to split a batch's runs over (default: all)")
    tune_parser.add_argument("--out", default="results/tune")
    tune_parser.add_argument("--quiet", action="store_true", help="no line per trial")
    tune_parser.set_defaults(func=cmd_tune)

    ope = sub.add_parser("ope", help="off-policy estimates of a policy's value from logged data")
    ope.add_argument("--data", default="obd", help="'obd' (the vendored Open Bandit Dataset sample), "
                     "a CSV in OBD's layout (item_context.csv beside it) or a .npz LoggedBandit")
    ope.add_argument("--behavior", default="random", choices=["random", "bts"],
                     help="with --data obd: the behaviour policy whose log to read")
    ope.add_argument("--campaign", default="all", help="ZOZOTOWN campaign of --policy bts's prior")
    ope.add_argument("--policy", default="bts", help="evaluation policy: bts (ZOZOTOWN Bernoulli TS), "
                     "random, or a .npy action distribution (n_rows, num_actions, len_list)")
    ope.add_argument("--estimators", default="ipw,snipw,dm,dr",
                     help=f"comma-separated, from {','.join(estimators.ESTIMATORS)}")
    ope.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    ope.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")
    ope.add_argument("--reward-model", default="logistic", choices=["logistic", "mlp", "linear"],
                     help="q_hat for dm/dr/...: logistic regression, a 32x32 MLP (rewards in [0, 1]) or "
                     "least-squares linear")
    ope.add_argument("--folds", type=int, default=3, help="cross-fitting folds of the reward model")
    ope.add_argument("--tau", type=float, default=1.0, help="Switch-DR threshold (obp's default 1)")
    ope.add_argument("--lambda", dest="lambda_", type=float, default=0.0,
                     help="DRos shrinkage (obp's default 0, which is DM)")
    ope.add_argument("--bts-samples", type=int, default=100_000,
                     help="simulated slates for --policy bts's action distribution")
    ope.add_argument("--seed", type=int, default=0)
    ope.add_argument("--json", default=None, help="also write the estimates to this JSON file")
    ope.set_defaults(func=cmd_ope)

    bench = sub.add_parser("bench", help="env steps/s of every env (ecomrl_jax/benchmark.py)")
    benchmark.make_parser(bench)
    bench.set_defaults(func=lambda args: benchmark.run(args, bench))
    return parser


def main(argv=None) -> int:
    try:
        args = make_parser().parse_args(argv)
        args.func(args)
    except (UsageError, ValueError) as error:
        print(f"ecomrl: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
