"""`ecomrl tune` (ecomrl_jax/tune.py): search spaces, slot refill after pruning, resuming a killed
study, the outputs and their round trip into `ecomrl train --config`, and (slow) two workers on one
PostgreSQL study."""

import csv
import dataclasses
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import optuna
import pytest
import sqlalchemy.exc
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import ecomrl_jax
from ecomrl_jax import cli, sweep, tune
from ecomrl_jax.cli import main
from ecomrl_jax.learners import ppo

# ShopperRec-v0 as `ecomrl tune` makes it (50-step episodes): 4 updates of 8 envs x 25 steps
TINY = dict(num_envs=8, num_steps=25, total_timesteps=8 * 25 * 4, update_epochs=1,
            num_minibatches=2, hidden_size=8)
TINY_ARGS = [arg for k, v in TINY.items() if k != "total_timesteps" for arg in ("--set", f"{k}={v}")]
STEPS_PER_TRIAL = TINY["total_timesteps"] * 2  # two seeds
ENV, PARAMS = ecomrl_jax.make("ShopperRec-v0")
SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "ent_coef": FloatDistribution(0.0, 0.05)}


def tiny_tune(trials, storage=None, study_name=None, **kwargs):
    """Every test's searches have the same shapes (2 slots x 2 seeds), so they compile once."""
    return tune.run_tune(ppo, ppo.PPOConfig, ENV, PARAMS, TINY, SPACE, trials, batch=2,
                         sampler=kwargs.pop("sampler", "random"), num_seeds=2, storage=storage,
                         study_name=study_name, quiet=True, **kwargs)


def by_state(study, state):
    return [t for t in study.trials if t.state == state]


@pytest.mark.parametrize("spec, distribution", [
    ("lr=log:1e-4:1e-2", FloatDistribution(1e-4, 1e-2, log=True)),
    ("ent_coef=0:0.05", FloatDistribution(0.0, 0.05)),
    ("gamma=int:0:1", IntDistribution(0, 1)),
    ("clip_eps=0.1,0.2,0.3", CategoricalDistribution([0.1, 0.2, 0.3])),
])
def test_parse_space_forms(spec, distribution):
    name = spec.partition("=")[0]
    assert tune.parse_space([spec], ppo.PPOConfig) == {name: distribution}


@pytest.mark.parametrize("specs, message", [
    (["num_envs=int:4:8"], r"cannot tune 'num_envs': the PPOConfig fields that can vary are \['lr', 'min_lr', 'gamma'"),
    (["lr=log:0:1e-2"], "a log range needs LOW > 0"),
    (["lr=1e-2:1e-3"], "LOW must be finite and below HIGH"),
    (["lr=exp:1:2"], "unknown kind 'exp'"),
    (["lr=1:2:3:4"], "too many ':'"),
    (["lr=fast"], "could not convert"),
    (["lr"], "--space expects NAME=SPEC"),
    (["lr=0:1", "lr=0:1"], "given twice"),
    ([], "at least one --space"),
])
def test_malformed_or_static_spaces_are_refused(specs, message):
    with pytest.raises(ValueError, match=message):
        tune.parse_space(specs, ppo.PPOConfig)


def test_a_bound_outside_the_config_rules_and_grid_misuse_are_refused():
    with pytest.raises(ValueError, match=r"--space lr: 0.0 is outside the config's rules"):
        tune.check_space({"lr": FloatDistribution(0.0, 1.0)}, ppo.PPOConfig, TINY)
    with pytest.raises(ValueError, match="--sampler grid needs listed values"):
        tune.make_sampler("grid", SPACE, 0, 4)
    with pytest.raises(ValueError, match="the grid has 2 points, fewer than --trials 3"):
        tune.make_sampler("grid", {"lr": CategoricalDistribution([1e-3, 1e-2])}, 0, 3)


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_the_gp_sampler_without_torch_says_what_it_needs():
    with pytest.raises(ValueError, match="--sampler gp needs torch"):
        tune.make_sampler("gp", SPACE, 0, 4)


def test_a_grid_search_runs_each_point_once_and_ends_cleanly():
    grid = {"lr": CategoricalDistribution([1e-3, 1e-2]), "ent_coef": CategoricalDistribution([0.0])}
    study = tune.run_tune(ppo, ppo.PPOConfig, ENV, PARAMS, TINY, grid, 2, batch=2, sampler="grid",
                          num_seeds=2, quiet=True).study
    assert sorted(t.params["lr"] for t in by_state(study, TrialState.COMPLETE)) == [1e-3, 1e-2]
    assert len(study.trials) == 2


class PruneOdd(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its first report."""

    def prune(self, study, trial):
        return trial.number % 2 == 1


def count_updates(monkeypatch) -> list:
    """The chunk sizes of every `update` call of the shared RunBatch from now on."""
    calls, batch = [], sweep.run_batch(ppo, ENV, PARAMS)
    update = batch.update
    monkeypatch.setattr(batch, "update", lambda *a: calls.append(a[2]) or update(*a))
    return calls


def test_a_pruned_trials_slot_is_refilled_and_its_new_run_starts_fresh(monkeypatch):
    """Trial 1 is pruned at its first report; trial 2, with trial 0's params, takes its slot at
    once and scores exactly as trial 0 did (same keys, its state initialised anew)."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="refill", direction="maximize")
    for params in ({"lr": 3e-3, "ent_coef": 0.01}, {"lr": 1e-2, "ent_coef": 0.02}, {"lr": 3e-3, "ent_coef": 0.01}):
        study.enqueue_trial(params)
    calls = count_updates(monkeypatch)
    result = tiny_tune(3, storage, "refill", pruner=PruneOdd())
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert list(study.trials[1].intermediate_values) == [1]  # reported after update 1, then pruned
    assert study.trials[2].user_attrs["scores"] == pytest.approx(study.trials[0].user_attrs["scores"], rel=1e-6)
    assert study.trials[0].value != 0  # episodes finished: the comparison means something
    assert calls == [1] * 5  # 4 updates of trial 0, trial 2 from the second call: 5, not 8 in two batches
    assert result.env_steps == (4 + 1 + 4) * STEPS_PER_TRIAL // 4
    assert study.trials[1].user_attrs["env_steps"] == STEPS_PER_TRIAL // 4


def test_a_study_killed_mid_batch_resumes_to_exactly_its_trials(monkeypatch, tmp_path):
    """The process dies (an exception) after trials 0 and 1 complete and 2 and 3 start: those two
    are marked FAIL and their params enqueued, so the resumed run completes 4 trials in all."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls = count_updates(monkeypatch)
    batch = sweep.run_batch(ppo, ENV, PARAMS)
    update = batch.update

    def dies_at_the_sixth_call(*args):
        if len(calls) == 5:
            raise RuntimeError("killed")
        return update(*args)

    monkeypatch.setattr(batch, "update", dies_at_the_sixth_call)
    with pytest.raises(RuntimeError, match="killed"):
        tiny_tune(4, url, "resume")
    monkeypatch.undo()
    study = optuna.load_study(study_name="resume", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    result = tiny_tune(4, url, "resume")
    trials = study.trials
    assert [t.number for t in trials if t.state == TrialState.COMPLETE] == [0, 1, 4, 5]
    assert [t.params for t in trials[4:]] == [t.params for t in trials[2:4]]  # re-run, same params
    assert len({tuple(t.params.values()) for t in trials[:4]}) == 4
    assert result.env_steps == 2 * STEPS_PER_TRIAL
    assert tiny_tune(4, url, "resume").env_steps == 0 and len(study.trials) == 6  # nothing left to do


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_whose_process_died_silently_is_failed_and_run_again(tmp_path):
    """A RUNNING trial with no heartbeat for the grace period is another process's that died."""
    storage = tune.make_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_s=1, grace_s=1)
    study = optuna.create_study(storage=storage, study_name="stale", direction="maximize")
    orphan = study.ask(SPACE)
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(3)  # SQLite's clock counts whole seconds
    tiny_tune(2, storage, "stale")
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == orphan.params


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    argv = ["tune", "--space", "lr=log:1e-4:1e-1", "--space", "ent_coef=0:0.05", "--trials", "3",
            "--batch", "2", "--seeds", "2", "--sampler", "tpe", "--pruner", "median",
            "--total-steps", str(TINY["total_timesteps"]), "--out", str(out), "--quiet", *TINY_ARGS]
    return out, main(argv)


def test_tune_command_writes_csv_best_config_table_and_figures(tuned):
    out, code = tuned
    assert code == 0
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["number"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "COMPLETE"), ("2", "COMPLETE")]
    for row in rows:
        scores = json.loads(row["scores"])
        assert len(scores) == 2 and float(row["value"]) == pytest.approx(np.mean(scores))
        assert int(row["env_steps"]) == STEPS_PER_TRIAL and float(row["wall_s"]) > 0
    best = max(rows, key=lambda r: float(r["value"]))
    config = json.loads((out / "best_config.json").read_text())
    assert (config["lr"], config["ent_coef"]) == (float(best["lr"]), float(best["ent_coef"]))
    assert config["num_envs"] == 8 and config["total_timesteps"] == TINY["total_timesteps"]
    assert (out / "tune.md").read_text().count("\n| ") == 4
    assert (out / "history.png").stat().st_size > 0 and (out / "importance.png").stat().st_size > 0
    assert (out / "study.db").stat().st_size > 0


def test_best_config_reads_back_as_the_config_it_was(tuned):
    out, _ = tuned
    fields = cli.read_config_file(out / "best_config.json", ppo.PPOConfig)
    assert dataclasses.asdict(ppo.PPOConfig(**fields)) == json.loads((out / "best_config.json").read_text())
    cli.build({"env": "ShopperRec-v0", "algo": "ppo", "config": fields})  # validates, makes the learner


@pytest.mark.slow
def test_best_config_trains_with_set_on_top(tuned, tmp_path):
    out, _ = tuned
    config = json.loads((out / "best_config.json").read_text())
    run = tmp_path / "run"
    assert main(["train", "--config", str(out / "best_config.json"), "--set", "ent_coef=0.5",
                 "--episodes", "2", "--checkpoints", "1", "--quiet", "--out", str(run)]) == 0
    assert json.loads((run / "run.json").read_text())["config"] == {**config, "ent_coef": 0.5}


@pytest.mark.parametrize("content, message", [
    ('{"lr": 1e-3, "nope": 1}', "unknown PPOConfig fields ['nope']; valid: ["),
    ('[1, 2]', "expected a JSON object of config fields"),
    ('{"lr": ', "cannot read a JSON object"),
])
def test_bad_config_files_give_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["tune"], "at least one --space"),
    (["tune", "--space", "num_envs=int:4:8"], "cannot tune 'num_envs'"),
    (["tune", "--space", "lr=log:-1:1"], "a log range needs LOW > 0"),
    (["tune", "--space", "lr=0:1"], "0.0 is outside the config's rules"),
    (["tune", "--space", "lr=1e-4:1e-2", "--trials", "0"], "must be positive"),
])
def test_bad_tune_arguments_give_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.slow
def test_without_optuna_tune_says_how_to_install_it_and_the_package_never_imports_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now fails
    monkeypatch.delitem(sys.modules, "ecomrl_jax.tune")
    monkeypatch.delattr(ecomrl_jax, "tune")
    assert main(["tune", "--space", "lr=1e-4:1e-2"]) == 2
    assert 'tune needs optuna: pip install "ecomrl_jax[tune]"' in capsys.readouterr().err
    imported = subprocess.run([sys.executable, "-c", "import sys, ecomrl_jax, ecomrl_jax.cli; "
                               "print('optuna' in sys.modules)"], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on a Unix socket in a temporary directory (Debian's package;
    `.ci/run` installs it); yields its Optuna URL. As root, the server runs as `postgres`."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    bin_dir = os.path.dirname(initdb[-1])
    root = tempfile.mkdtemp(prefix="ecomrl-pg-")
    as_server = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_server = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(root, "data"), os.path.join(root, "log")
    subprocess.run([*as_server, f"{bin_dir}/initdb", "-D", data, "-U", "tune", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_server, f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-w", "start",
                    "-o", f"-c listen_addresses='' -k {root} -p 5432"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://tune@/postgres?host={root}&port=5432"
    finally:
        subprocess.run([*as_server, f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_one_postgresql_study_run_each_trial_once(postgres, tmp_path):
    """Two `ecomrl tune` processes share a study: together they complete exactly the trials asked
    for, each trial told by one worker only, no params run twice."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [sys.executable, "-m", "ecomrl_jax.cli", "tune", "--space", "lr=log:1e-4:1e-1",
            "--space", "ent_coef=0:0.05", "--trials", "10", "--batch", "2", "--seeds", "2",
            "--total-steps", str(TINY["total_timesteps"]), "--storage", postgres, "--study", "shared",
            *TINY_ARGS]
    env = {**os.environ, "PYTHONPATH": repo}
    workers = [subprocess.Popen([*argv, "--sampler-seed", str(i), "--out", str(tmp_path / f"w{i}")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    told = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        told.append({int(line.split()[1]) for line in err.splitlines() if line.startswith("trial ")})
    study = optuna.load_study(study_name="shared", storage=postgres)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 10
    assert told[0] | told[1] == {t.number for t in complete} and not told[0] & told[1]
    # not asserted: that both ran trials (on a loaded machine one may compile after the other has
    # taken every trial, and then must ask none; seen once in CI-like runs)
    assert len({tuple(t.params.values()) for t in complete}) == 10
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state != TrialState.COMPLETE)


def test_a_postgresql_url_without_its_driver_says_which_to_write():
    with pytest.raises(ValueError, match=r"no database driver .*psycopg.*postgresql\+psycopg2://"):
        tune.make_storage("postgresql://user@localhost/db")


def test_a_worker_waits_for_another_creating_the_tables(monkeypatch):
    """Workers started together on a new database race to create Optuna's tables: the loser's
    IntegrityError means "being created", so it tries again, up to SCHEMA_ATTEMPTS times."""
    calls = []

    def storage(url, **kwargs):
        calls.append(url)
        if len(calls) < 3:
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("dup"))
        return "storage"

    monkeypatch.setattr(tune.optuna.storages, "RDBStorage", storage)
    monkeypatch.setattr(tune.time, "sleep", lambda s: None)
    assert tune.make_storage("postgresql+psycopg2://u@h/db") == "storage" and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(tune, "SCHEMA_ATTEMPTS", 2)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        tune.make_storage("postgresql+psycopg2://u@h/db")
    assert len(calls) == 2
