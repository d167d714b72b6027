"""The `ecomrl` command: train, evaluate and resume on a tiny budget; bad arguments give one line."""

import csv
import json
import shutil

import jax
import numpy as np
import pytest

from ecomrl_jax import checkpoint
from ecomrl_jax.cli import build, main
from tests.helpers import assert_identical, run_quickly

TINY = ["--set", "num_envs=8", "--set", "num_steps=16", "--set", "num_minibatches=2",
        "--set", "hidden_size=16", "--total-steps", str(8 * 16 * 4)]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-seed, 4-update run with a checkpoint after every update, and its printed output."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--seeds", "2", "--checkpoints", "4", "--episodes", "20",
                 "--out", str(out), *TINY])
    return out, code


def test_train_writes_metrics_plot_checkpoints_and_run_description(trained):
    out, code = trained
    assert code == 0
    rows = read_rows(out / "metrics.csv")
    assert [(int(r["update"]), int(r["seed"])) for r in rows] == [(u, s) for u in range(4) for s in range(2)]
    assert [int(r["env_steps"]) for r in rows[::2]] == [128, 256, 384, 512]
    assert (out / "learning_curve.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3", "4"]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["num_envs"] == 8 and run["config"]["total_timesteps"] == 512


def test_evaluate_prints_a_table_for_the_latest_checkpoint(trained, capsys):
    out, _ = trained
    assert main(["evaluate", "--checkpoint", str(out), "--episodes", "10"]) == 0
    printed = capsys.readouterr().out
    assert "checkpoint after 4 updates" in printed
    assert "| return |" in printed and "| clicks |" in printed


def test_resume_continues_from_the_latest_checkpoint(trained, tmp_path, capsys):
    """Drop the last two checkpoints (as if the run died after update 2): the resumed run redoes
    updates 2 and 3 only, and, being deterministic, writes the same metrics as before."""
    original, _ = trained
    out = tmp_path / "run"
    shutil.copytree(original, out)
    for step in ("3", "4"):
        shutil.rmtree(out / "checkpoints" / step)
    assert main(["train", "--resume", "--out", str(out), "--episodes", "10"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert read_rows(out / "metrics.csv") == read_rows(original / "metrics.csv")
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3", "4"]


def test_resume_of_a_finished_run_does_no_more_updates(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    assert main(["train", "--resume", "--out", str(out), "--episodes", "5"]) == 0
    assert "after 4 of 4 updates" in capsys.readouterr().out
    assert len(read_rows(out / "metrics.csv")) == 8


def _settings(**values):
    return [arg for name, value in values.items() for arg in ("--set", f"{name}={value}")]


# Two updates per run for every learner besides PPO (covered above), on an env it supports.
RESUMABLE = {
    "a2c": ("ShopperRec-v0", _settings(num_envs=4, num_steps=4, hidden_size=8, total_timesteps=32)),
    "reinforce": ("ShopperRec-v0", _settings(num_envs=4, num_steps=4, hidden_size=8,
                                             total_timesteps=32)),
    "dqn": ("ShopperRec-v0", _settings(num_envs=4, train_frequency=2, total_timesteps=16,
                                       buffer_size=16, batch_size=4, learning_starts=8, n_step=1,
                                       hidden_size=8)),
    "q_learning": ("ToyRec-v0", _settings(num_envs=4, num_steps=5, total_timesteps=40)),
    "sarsa": ("ToyRec-v0", _settings(num_envs=4, num_steps=5, total_timesteps=40)),
}


def _final_state(out):
    """The latest checkpoint of the run in `out`, restored into its learner's runner state."""
    run = json.loads((out / "run.json").read_text())
    learner = build(run)[-1]
    target = jax.vmap(learner.init)(jax.random.split(jax.random.key(0), run["seeds"]))
    return checkpoint.restore(out / "checkpoints", target)[0]


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(RESUMABLE))
def test_every_learner_resumes_from_its_checkpoint(algo, tmp_path, capfd):
    """A run killed after update 1 of 2 and resumed ends with the same metrics and the same
    final runner state as the run that was never interrupted."""
    env, settings = RESUMABLE[algo]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["--env", env, "--algo", algo, "--checkpoints", "2", "--episodes", "1", *settings]
    assert run_quickly("ecomrl_jax.cli", ["train", "--out", str(whole), *args]) == 0
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "2")
    capfd.readouterr()
    resume = ["train", "--resume", "--out", str(cut), "--episodes", "1"]
    assert run_quickly("ecomrl_jax.cli", resume) == 0
    assert f"resuming {cut} after 1 of 2 updates" in capfd.readouterr().out
    assert read_rows(cut / "metrics.csv") == read_rows(whole / "metrics.csv")
    assert_identical(_final_state(cut), _final_state(whole))


def test_list_names_envs_and_algorithms(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "ShopperRec-v0" in printed and "ppo" in printed


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "Nope-v0"], "unknown --env 'Nope-v0'; choose from"),
    (["train", "--algo", "nope"], "unknown --algo 'nope'; choose from ['a2c', 'dqn', 'ppo',"),
    (["train", "--set", "nope=1"], "--set expects NAME=VALUE with NAME one of"),
    (["train", "--set", "lr"], "--set expects NAME=VALUE"),
    (["train", "--set", "lr=fast"], "--set lr: cannot read 'fast' as float"),
    (["train", "--set", "lr=-1"], "PPOConfig.lr must be > 0"),
    (["train", "--seeds", "0"], "must be positive"),
    (["train", "--total-steps", "ten"], "argument --total-steps: invalid int value"),
    (["train", "--total-steps", "10"], "less than one update"),
    (["train", "--devices", "2"], "the number of devices must be in [1, 1]"),
    (["sweep", "--grid", "lr=1e-3", "--devices", "0"], "the number of devices must be in [1, 1]"),
    (["evaluate"], "the following arguments are required: --checkpoint"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["bench", "--envs", "Nope-v0"], "unknown env ids ['Nope-v0']"),
    (["bench", "--batch-sizes", "0"], "batch sizes, --num-steps and --repeats must be positive"),
])
def test_bad_arguments_give_one_line_and_exit_code_2(argv, message, tmp_path, capsys):
    assert main([*argv, *(["--out", str(tmp_path / "run")] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecomrl: error: ") and message in err
    assert err.count("\n") == 1, err


def test_bad_run_directories_give_one_line(trained, tmp_path, capsys):
    assert main(["train", "--resume", "--out", str(tmp_path)]) == 2
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    assert main(["train", "--out", str(trained[0])]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(e.startswith("ecomrl: error: ") for e in errors)
    assert "--resume: no run found" in errors[0]
    assert "not a training run directory" in errors[1]
    assert "already holds a run; use --resume" in errors[2]


def test_corrupt_checkpoint_is_a_clear_error(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    for path in (out / "checkpoints" / "4").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    assert main(["evaluate", "--checkpoint", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecomrl: error: ") and "checkpoint" in err and err.count("\n") == 1


def test_bench_writes_json_and_markdown(tmp_path, capsys):
    assert main(["bench", "--envs", "ShopperRec-v0", "--batch-sizes", "2", "--num-steps", "3",
                 "--repeats", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "env_throughput.json").read_text())["results"]
    assert [(r["env"], r["batch_size"], r["num_steps"]) for r in results] == [("ShopperRec-v0", 2, 3)]
    assert results[0]["steps_per_s"] > 0 and results[0]["compile_s"] > 0
    reference = json.loads((tmp_path / "env_throughput.json").read_text())["reference"]
    assert reference["env"] == "CartPole-v1"  # gymnax's, measured by the same harness
    np.testing.assert_allclose(results[0]["vs_reference"],
                               results[0]["steps_per_s"] / reference["steps_per_s"]["2"])
    table = (tmp_path / "env_throughput.md").read_text()
    assert "| ShopperRec-v0 | 2 |" in table and "x CartPole-v1 |" in table
    assert "CartPole-v1 (gymnax)" in capsys.readouterr().out


@pytest.mark.slow
def test_one_seed_reports_values_without_an_interval(tmp_path, capfd):
    assert run_quickly("ecomrl_jax.cli", ["train", "--checkpoints", "1", "--episodes", "5",
                                          "--out", str(tmp_path / "run"), *TINY]) == 0
    printed = capfd.readouterr().out
    assert "| return |" in printed and "(one seed: no interval)" in printed
