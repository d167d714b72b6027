"""Sweeps (ecomrl_jax/sweep.py and `ecomrl sweep`): grid expansion, one vmapped run, table, plot."""

import json

import jax
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax import sweep
from ecomrl_jax.learners import ppo
from ecomrl_jax.cli import main

TINY = dict(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 3, update_epochs=1,
            num_minibatches=2, hidden_size=8)


def test_expand_grid_is_row_major_and_refuses_static_or_unknown_fields():
    points = sweep.expand_grid({"lr": [1e-3, 1e-2], "ent_coef": [0.0, 0.1, 0.2]}, ppo.PPOConfig)
    assert points[:4] == [{"lr": 1e-3, "ent_coef": 0.0}, {"lr": 1e-3, "ent_coef": 0.1},
                          {"lr": 1e-3, "ent_coef": 0.2}, {"lr": 1e-2, "ent_coef": 0.0}]
    assert len(points) == 6
    with pytest.raises(ValueError, match="cannot sweep 'num_envs'.*sizes are static"):
        sweep.expand_grid({"num_envs": [4, 8]}, ppo.PPOConfig)
    with pytest.raises(ValueError, match="no values"):
        sweep.expand_grid({"lr": []}, ppo.PPOConfig)


@pytest.mark.slow
def test_run_sweep_matches_separate_runs_and_chunking_changes_nothing():
    env, params = ecomrl_jax.make("ShopperRec-v0", max_steps_in_episode=10)
    grid = {"lr": [1e-4, 3e-2]}
    rows = sweep.run_sweep(ppo, ppo.PPOConfig, env, params, TINY, grid, num_seeds=2)
    chunked = sweep.run_sweep(ppo, ppo.PPOConfig, env, params, TINY, grid, num_seeds=2, chunk_size=3)
    assert [r["lr"] for r in rows] == [1e-4, 3e-2]
    np.testing.assert_allclose([r["scores"] for r in rows], [r["scores"] for r in chunked], rtol=1e-5)
    # point 1, seed 1 is the same run as training that config alone with that seed's key
    _, metrics = jax.jit(ppo.make_train(ppo.PPOConfig(**TINY, lr=3e-2), env, params))(
        jax.random.fold_in(jax.random.key(0), 1))
    np.testing.assert_allclose(rows[1]["scores"][1], metrics["episode_return"][-1:].mean(), rtol=1e-5)
    mean, low, high = rows[0]["score"]
    assert low <= mean <= high


def test_sweep_command_writes_table_json_and_heat_map(tmp_path, capsys):
    argv = ["sweep", "--grid", "lr=1e-4,1e-2", "--grid", "ent_coef=0,0.1", "--seeds", "2",
            "--total-steps", str(TINY["total_timesteps"]), "--out", str(tmp_path)]
    argv += [arg for k, v in TINY.items() if k != "total_timesteps" for arg in ("--set", f"{k}={v}")]
    assert main(argv) == 0
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["lr"], r["ent_coef"]) for r in result["rows"]] == [(1e-4, 0.0), (1e-4, 0.1),
                                                                  (1e-2, 0.0), (1e-2, 0.1)]
    assert (tmp_path / "sweep.md").read_text().count("\n| ") == 5
    assert (tmp_path / "sweep.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["sweep"], "sweep needs at least one --grid"),
    (["sweep", "--grid", "num_envs=4,8"], "cannot sweep 'num_envs'"),
    (["sweep", "--grid", "lr=fast"], "--grid lr: cannot read 'fast' as float values"),
    (["sweep", "--grid", "nope=1"], "--grid expects NAME=V1,V2,... with NAME one of"),
    (["sweep", "--grid", "lr=1", "--seeds", "0"], "--seeds and --chunk-size must be positive"),
    (["sweep", "--grid", "lr=-1", "--total-steps", "4096"], "lr must be > 0"),
])
def test_bad_sweep_arguments_give_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
