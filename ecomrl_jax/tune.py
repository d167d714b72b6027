"""Hyperparameter search with Optuna (`ecomrl tune`): trials trained side by side as one vmapped run.

    run_tune(module, config_cls, env, env_params, base, space, trials, batch=16, sampler="tpe",
             pruner="none", num_seeds=1, seed=0, storage=None, study_name=None, quiet=False,
             devices=None, sampler_seed=None) -> TuneResult(study, env_steps)

`space` maps traced config fields to Optuna distributions (`parse_space`); `sampler` and `pruner`
are names (`SAMPLERS`, `PRUNERS`) or Optuna objects; `storage` an Optuna RDB URL, a storage object
or None (in memory). `batch` trials train together as one `sweep.RunBatch`, `num_seeds` runs each
with the same keys for every trial (common random numbers), in chunks of updates. After a chunk
each trial reports its mean return over the chunk (step = updates done) and may be pruned; a
finished or pruned trial's slot takes a newly asked trial at once, its learner state
re-initialised in a compiled function (configs are traced, so nothing recompiles); a slot left
without a trial near the end trains on, its results dropped. A trial's value
is the mean over seeds of `sweep.final_score`; one whose returns are not finite FAILs with user
attr `diverged` and counts towards `trials`. `env_steps` is what this call's trials trained
(pruned ones what they ran, per-trial in user attr `env_steps`).

Resuming and several workers: a URL gets heartbeats (`make_storage`). Trials left RUNNING by a
process that raised, or that died (no heartbeat for `GRACE_S`), are marked FAIL and their params
enqueued again; each worker asks only while finished + running trials number fewer than `trials`
and gives back a trial asked past that (a race with another worker). So a resumed or shared study
ends with exactly `trials` COMPLETE | PRUNED (| diverged) trials.
"""

import csv
import dataclasses
import importlib.util
import itertools
import json
import math
import sys
import threading
import time
import warnings
from typing import NamedTuple

import jax
import numpy as np
import optuna
import sqlalchemy.exc
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.logging import chunk_sizes
from ecomrl_jax.sweep import check_traced, final_score, run_batch

SAMPLERS = ("tpe", "gp", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
SPACE_FORMS = "LOW:HIGH (uniform), log:LOW:HIGH (log-uniform), int:LOW:HIGH or V1,V2,... (choices)"
HEARTBEAT_S = 20  # a running trial's heartbeat interval in a URL storage
GRACE_S = 120  # a RUNNING trial with no heartbeat for this long belongs to a dead process
SCHEMA_ATTEMPTS = 5  # tries at opening a storage whose tables another worker is creating


class TuneResult(NamedTuple):
    study: optuna.Study
    env_steps: int  # env steps this call's trials trained, all seeds (pruned: what they ran)


def parse_space(specs: list[str], config_cls) -> dict:
    """`NAME=SPEC` strings -> {name: Optuna distribution}; NAME must be a traced field."""
    space = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep:
            raise ValueError(f"--space expects NAME=SPEC with SPEC one of {SPACE_FORMS}, got {spec!r}")
        check_traced(name, config_cls, "tune")
        if name in space:
            raise ValueError(f"--space {name} given twice")
        space[name] = parse_distribution(name, text)
    if not space:
        raise ValueError("tune needs at least one --space NAME=SPEC")
    return space


def parse_distribution(name: str, text: str):
    """One SPEC (`SPACE_FORMS`) -> an Optuna distribution; ValueError saying what is wrong."""
    parts = text.split(":")
    kind = parts.pop(0) if len(parts) == 3 else "float"
    try:
        if len(parts) == 1:
            return CategoricalDistribution([float(v) for v in text.split(",")])
        if len(parts) != 2 or kind not in ("log", "int", "float"):
            raise ValueError(f"unknown kind {kind!r}" if len(parts) == 2 else "too many ':'")
        low, high = (int(p) if kind == "int" else float(p) for p in parts)
    except ValueError as error:
        raise ValueError(f"--space {name}={text}: {error}; SPEC is one of {SPACE_FORMS}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"--space {name}={text}: LOW must be finite and below HIGH")
    if kind == "log" and low <= 0:
        raise ValueError(f"--space {name}={text}: a log range needs LOW > 0")
    if kind == "int":
        return IntDistribution(low, high)
    return FloatDistribution(low, high, log=kind == "log")


def check_space(space: dict, config_cls, base: dict) -> None:
    """ValueError unless every field is traced and every bound or choice passes the config's rules."""
    for name, distribution in space.items():
        check_traced(name, config_cls, "tune")
        ends = (distribution.choices if isinstance(distribution, CategoricalDistribution)
                else (distribution.low, distribution.high))
        for value in ends:
            try:
                config_from(config_cls, base, {name: value}).validate()
            except ValueError as error:
                raise ValueError(f"--space {name}: {value} is outside the config's rules ({error})") from None


def config_from(config_cls, base: dict, params: dict):
    """`base` with a trial's `params`, each cast to its field's type."""
    types = {f.name: type(f.default) for f in dataclasses.fields(config_cls)}
    return config_cls(**{**base, **{k: types[k](v) for k, v in params.items()}})


def make_sampler(name: str, space: dict, seed: int | None, trials: int):
    """The Optuna sampler `name` (`SAMPLERS`); TPE with the constant liar, as batches of trials
    run at once."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise ValueError("--sampler gp needs torch (Optuna's GPSampler is written in it), which "
                             "ecomrl_jax does not install: pip install torch, or use --sampler tpe")
        return optuna.samplers.GPSampler(seed=seed)
    if name == "grid":  # the points are enqueued (`enqueue_grid`); random draws none of them
        grid_points(space, seed, trials)
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {list(SAMPLERS)}")


def grid_points(space: dict, seed: int | None, trials: int) -> list[dict]:
    """Every point of the grid over `space`'s listed values and int ranges, in a seeded shuffled
    order (so fewer `trials` than points still spread over the grid); ValueError for a float
    range or more `trials` than points."""
    grid = {}
    for field, distribution in space.items():
        if isinstance(distribution, FloatDistribution):
            raise ValueError(f"--sampler grid needs listed values or an int range, got a float "
                             f"range for {field}: list them, e.g. --space {field}=1e-4,1e-3,1e-2")
        grid[field] = (distribution.choices if isinstance(distribution, CategoricalDistribution)
                       else list(range(distribution.low, distribution.high + 1)))
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if trials > len(points):
        raise ValueError(f"--sampler grid: the grid has {len(points)} points, fewer than --trials {trials}")
    return [points[i] for i in np.random.default_rng(seed).permutation(len(points))]


def enqueue_grid(study, space: dict, seed: int | None, trials: int) -> None:
    """Queue the first `trials` grid points (`grid_points`) in `study`, each once even when several
    workers or a resumed run queue them. Optuna's GridSampler is not used: it stops the study
    after its last point, which raises in an ask/tell loop (optuna issues 4121, 5141)."""
    for point in grid_points(space, seed, trials)[:trials]:
        study.enqueue_trial(point, skip_if_exists=True)


def make_pruner(name: str, chunk: int, num_updates: int):
    """The Optuna pruner `name` (`PRUNERS`), its steps counted in updates (reports every `chunk`)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=chunk, max_resource=num_updates)
    raise ValueError(f"unknown pruner {name!r}; choose from {list(PRUNERS)}")


def make_storage(url: str, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S):
    """An Optuna RDB storage (`sqlite:///...`, `postgresql+psycopg2://...`) whose running trials
    send a heartbeat; a trial silent for `grace_s` seconds is failed and its params enqueued again.
    SQLAlchemy >= 2.1 reads a bare `postgresql://` as psycopg 3, which the tune extra lacks."""
    with warnings.catch_warnings():  # Optuna calls heartbeats and retries "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        def storage():
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())

        try:
            for attempt in range(1, SCHEMA_ATTEMPTS + 1):
                try:
                    return storage()
                except sqlalchemy.exc.IntegrityError:
                    # workers started together on a new database: another one is creating the
                    # tables and version row, statement by statement; try again once it is done
                    if attempt == SCHEMA_ATTEMPTS:
                        raise
                    time.sleep(0.5 * attempt)
        except ImportError as error:
            raise ValueError(f"storage {url}: no database driver for it ({error.__cause__ or error}); "
                             f"for PostgreSQL write postgresql+psycopg2://USER:PASSWORD@HOST/DB") from None


class _Heartbeat:
    """Records the heartbeat of this process's running trials every interval from a thread, so
    other workers see them alive while it compiles and trains; nothing for storages without one."""

    def __init__(self, storage):
        self.storage, self.trial_ids, self.stopped = storage, set(), threading.Event()
        self.interval = getattr(storage, "heartbeat_interval", None)
        if self.interval:
            threading.Thread(target=self._beat, daemon=True).start()

    def add(self, trial_id: int) -> None:
        self.trial_ids.add(trial_id)
        if self.interval:
            self.storage.record_heartbeat(trial_id)

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(trial_id)
                except sqlalchemy.exc.SQLAlchemyError:
                    pass  # a busy or briefly unreachable database: the next beat retries


def _counted(study) -> list:
    """Trials that count towards the total: complete, pruned, diverged or running."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            or (t.state == TrialState.FAIL and t.user_attrs.get("diverged"))]


def _ask(study, space: dict, trials: int):
    """A new trial with its params, or None when the study has `trials` counted trials; a trial
    asked past the total by a race with another worker is given back (FAIL, user attr `surplus`)."""
    if len(_counted(study)) >= trials:
        return None
    trial = study.ask(space)
    numbers = sorted(t.number for t in _counted(study))
    if numbers.index(trial.number) >= trials:
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


@dataclasses.dataclass
class _Slot:
    trial: optuna.Trial
    config: object
    returns: list  # (num_seeds, updates) episode returns of each chunk run so far
    updates: int = 0


def run_tune(module, config_cls, env, env_params, base: dict, space: dict, trials: int,
             batch: int = 16, sampler="tpe", pruner="none", num_seeds: int = 1, seed: int = 0,
             storage=None, study_name: str | None = None, quiet: bool = False,
             devices: int | None = None, sampler_seed: int | None = None) -> TuneResult:
    """Run the study until it holds `trials` counted trials (module docstring); `sampler_seed`
    defaults to `seed` (give each worker of a shared study its own)."""
    if trials < 1 or batch < 1 or num_seeds < 1:
        raise ValueError(f"trials, batch and num_seeds must be positive, got {trials}, {batch}, {num_seeds}")
    check_space(space, config_cls, base)
    grid = space if sampler == "grid" else None  # queued in the study in `seed`'s order, as every worker does
    base_config = config_cls(**base)
    first = module.make_learner(base_config, env, env_params)  # sizes, shared by every trial
    chunk = next(chunk_sizes(first.num_updates))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING if quiet else optuna.logging.INFO)
    with warnings.catch_warnings():  # stale trials, retries and the constant liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        if isinstance(storage, str):
            storage = make_storage(storage)
        if isinstance(sampler, str):
            sampler = make_sampler(sampler, space, seed if sampler_seed is None else sampler_seed, trials)
        if isinstance(pruner, str):
            pruner = make_pruner(pruner, chunk, first.num_updates)
        study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
        if grid:
            enqueue_grid(study, grid, seed, trials)
        heartbeat = _Heartbeat(storage)
        try:
            return TuneResult(study, _train_trials(study, space, trials, batch, num_seeds, seed, chunk,
                                                   first, run_batch(module, env, env_params, devices),
                                                   config_cls, base, heartbeat, quiet))
        finally:
            heartbeat.stopped.set()
            optuna.logging.set_verbosity(verbosity)


def _train_trials(study, space, trials, batch, num_seeds, seed, chunk, first, runs, config_cls,
                  base, heartbeat, quiet) -> int:
    """The slot loop of `run_tune`; returns the env steps its trials trained."""
    base_config, env_steps = config_cls(**base), 0
    slots = [None] * min(batch, trials)
    keys = [jax.random.fold_in(jax.random.key(seed), s) for s in range(num_seeds)] * len(slots)

    def fill(i) -> bool:
        """Ask a trial for slot `i`; False when the study needs no more."""
        slots[i] = None
        optuna.storages.fail_stale_trials(study)
        trial = _ask(study, space, trials)
        if trial is not None:
            slots[i] = _Slot(trial, config_from(config_cls, base, trial.params), [])
            heartbeat.add(trial._trial_id)
        return trial is not None

    def stacked():
        return runs.stack([s.config if s else base_config for s in slots for _ in range(num_seeds)], keys)

    try:
        for i in range(len(slots)):
            fill(i)
        configs, stacked_keys = stacked()
        state = runs.init(configs, stacked_keys)
        while any(slots):
            state, metrics = runs.update(configs, state, chunk)
            returns = np.asarray(metrics["episode_return"])[:len(keys)].reshape(len(slots), num_seeds, chunk)
            fresh = np.zeros(stacked_keys.shape[0], bool)
            for i, slot in enumerate(slots):
                if slot is None:
                    continue
                ran = min(chunk, first.num_updates - slot.updates)
                slot.returns.append(returns[i, :, :ran])
                slot.updates += ran
                if _tell_if_done(study, slot, first, quiet):
                    env_steps += slot.updates * first.steps_per_update * num_seeds
                    heartbeat.trial_ids.discard(slot.trial._trial_id)
                    fresh[i * num_seeds:(i + 1) * num_seeds] = fill(i)
            if fresh.any() and any(slots):
                configs, _ = stacked()
                state = runs.refill(configs, stacked_keys, state, jax.device_put(fresh, runs.split))
    except BaseException:  # a failure or an interrupt: this process's trials are run again later
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for slot in filter(None, slots):
            study.tell(slot.trial, state=TrialState.FAIL)
            retry(study, by_number[slot.trial.number])
        raise
    return env_steps


def _tell_if_done(study, slot: _Slot, first, quiet: bool) -> bool:
    """After a chunk: report the trial's mean return over it and tell it PRUNED if the pruner
    says so, COMPLETE after its last update, FAIL (diverged) on a non-finite return; True when
    it was told (with a line on stderr unless `quiet`)."""
    trial, returns = slot.trial, np.concatenate(slot.returns, axis=1)
    finite, finished = np.isfinite(returns).all(), slot.updates == first.num_updates
    if finite and not finished:
        trial.report(float(slot.returns[-1].mean()), slot.updates)
        if not trial.should_prune():
            return False
    trial.set_user_attr("env_steps", slot.updates * first.steps_per_update * returns.shape[0])
    if not finite:
        trial.set_user_attr("diverged", True)
        study.tell(trial, state=TrialState.FAIL)
    elif finished:
        scores = final_score(returns)
        trial.set_user_attr("scores", scores.tolist())
        study.tell(trial, float(scores.mean()))
    else:
        study.tell(trial, state=TrialState.PRUNED)
    if not quiet:
        told = "diverged" if not finite else "complete" if finished else "pruned"
        print(f"trial {trial.number} {told} after {slot.updates}/{first.num_updates} updates, "
              f"return {np.mean(slot.returns[-1]):.4g} over the last chunk, params {trial.params}",
              file=sys.stderr)
    return True


def trial_rows(study) -> list[dict]:
    """One row per trial of `study` (any worker's): number, state, params, value, per-seed
    scores, env steps and wall seconds."""
    names = sorted({name for t in study.trials for name in t.params})
    rows = []
    for t in study.trials:
        state = "DIVERGED" if t.user_attrs.get("diverged") else t.state.name
        wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append({"number": t.number, "state": state, **{n: t.params.get(n) for n in names},
                     "value": t.value, "scores": json.dumps(t.user_attrs.get("scores", [])),
                     "env_steps": t.user_attrs.get("env_steps"), "wall_s": wall})
    return rows


def write_trials_csv(study, path) -> None:
    rows = trial_rows(study)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def best_config(study, config_cls, base: dict) -> dict:
    """Every config field of the best complete trial: `base` with its params (what `ecomrl train
    --config` reads)."""
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    return dataclasses.asdict(config_from(config_cls, base, study.best_trial.params))


def tune_table(study, top: int = 10) -> str:
    """Markdown table of the `top` complete trials: params and value (mean [95% CI] over seeds)."""
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    names = sorted({name for t in done for name in t.params})
    lines = ["| rank | trial | " + " | ".join(names) + " | episode return (mean [95% CI]) |",
             "|" + "---|" * (len(names) + 3)]
    for rank, t in enumerate(done[:top], 1):
        scores = np.array(t.user_attrs["scores"])
        cell = f"{t.value:.3f} (one seed)"
        if len(scores) > 1:
            mean, low, high = confidence_interval(scores)
            cell = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
        lines.append(f"| {rank} | {t.number} | " + " | ".join(f"{t.params[n]:.4g}" for n in names)
                     + f" | {cell} |")
    return "\n".join(lines)


def plot_history(study, png_path) -> None:
    """Each trial's value (pruned: its last report) by trial number, and the best so far."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for state, marker, label in ((TrialState.COMPLETE, "o", "complete"),
                                 (TrialState.PRUNED, "x", "pruned (its last report)")):
        trials = [t for t in study.trials if t.state == state and t.value is not None]
        ax.plot([t.number for t in trials], [t.value for t in trials], marker, ls="", label=label)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    ax.step([t.number for t in complete], np.maximum.accumulate([t.value for t in complete]),
            where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("episode return")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


def plot_importance(study, png_path) -> bool:
    """Bar chart of PED-ANOVA parameter importances (Optuna's default, fANOVA, needs
    scikit-learn); False, and no figure, for a study of one parameter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    if len(importances) < 2:
        return False
    fig = Figure(figsize=(6, 1 + 0.5 * len(importances)))
    ax = fig.add_subplot()
    ax.barh(list(importances)[::-1], list(importances.values())[::-1])
    ax.set_xlabel("importance (PED-ANOVA)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    return True
