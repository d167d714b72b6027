"""Smoke runs of the benchmark scripts at tiny sizes: they run and write their tables; the env batch
shares one copy of the catalogue in `EnvParams`, vmapped and split over devices."""

import json
import os
import subprocess
import sys

import jax
import pytest

from benchmarks import accelerator_suite, ope_speed
from benchmarks.cpu_devices import FLAG, request_cpu_devices
from ecomrl_jax import benchmark
from tests.helpers import QUICK_COMPILE, REPO, run_quickly

BATCH = 256  # envs: a copy of the catalogue per env would need BATCH x its bytes


@pytest.mark.slow
def test_ope_speed_writes_its_table(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # the script appends its device count to the user's flags
    result = ope_speed.main(["--rows", "2000", "--resamples", "20", "--devices", "1", "--out", str(tmp_path)])
    timings = result["jax"]["timings"]
    assert set(timings) == {"all seven, shared resamples", *ope_speed.NAMES}
    assert all(t["run_s"] > 0 and t["compile_s"] > 0 for t in timings.values())
    assert json.loads((tmp_path / "ope_speed.json").read_text())["rows"] == 2000
    assert "| ecomrl_jax, one bootstrap of all seven" in (tmp_path / "ope_speed.md").read_text()


def test_scaled_shopper_rec_has_the_literature_sizes():
    env, params = benchmark.make_env("ShopperRec-v0@10k")
    assert (env.num_items, env.num_candidates, env.slate_size) == (10_000, 100, 10)
    assert "ShopperRec-v0@10k" in benchmark.bench_names()
    memory = benchmark.memory_per_env(env, params)
    assert memory["params_bytes"] > 10_000 * env.embed_dim * 4 > memory["state_bytes"] > 0


@pytest.mark.parametrize("name", ["ShopperRec-v0@10k", "CouponCRM-v0",
                                  pytest.param("OBDClicks-v0", marks=pytest.mark.slow)])
def test_vmapped_envs_share_one_catalogue(name):
    """The benchmark's compiled rollout of BATCH envs takes the params once (in_axes None) and
    holds no per-env copy of them: all it allocates besides its arguments is far below BATCH
    copies."""
    env, params = benchmark.make_env(name)
    compiled, _, _ = benchmark.compile_rollout(name, BATCH, 1)
    memory = compiled.memory_analysis()
    params_bytes = benchmark.tree_bytes(params)
    assert memory.argument_size_in_bytes <= params_bytes + 64  # the params and a key, once
    assert memory.temp_size_in_bytes + memory.output_size_in_bytes < BATCH * params_bytes / 16


def report_on_two_devices(out: str) -> None:
    """Run in a process with 2 CPU devices: `--devices 2` of both throughput scripts, and the
    per-device memory of a rollout split over them; prints JSON."""
    from benchmarks import env_throughput, train_throughput
    from ecomrl_jax.learners.loop import make_mesh

    env_rows = env_throughput.main(["--envs", "ShopperRec-v0", "--batch-sizes", "4", "--num-steps", "2",
                                    "--repeats", "1", "--devices", "2", "--out", out])
    train_rows = train_throughput.main(["--algos", "ppo", "--seeds", "1", "--total-steps", "4096",
                                        "--devices", "2", "--out", out])
    compiled, params, _ = benchmark.compile_rollout("ShopperRec-v0@10k", BATCH, 1, make_mesh(2))
    memory = compiled.memory_analysis()
    print(json.dumps({"env": env_rows, "train": train_rows, "params_bytes": benchmark.tree_bytes(params),
                      "replicated": all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 2
                                        for x in jax.tree.leaves(params)),
                      "argument_bytes": memory.argument_size_in_bytes,
                      "other_bytes": memory.temp_size_in_bytes + memory.output_size_in_bytes}))


@pytest.mark.slow
def test_two_devices_scale_and_share_the_catalogue(tmp_path, capfd):
    """On 2 virtual CPU devices both scripts report a scaling efficiency and say it is only a smoke
    test; the catalogue is replicated, one copy per device, not split per env."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE} {FLAG}=2"
    done = subprocess.run([sys.executable, "-c", "import sys; from tests.test_benchmarks import "
                           "report_on_two_devices as r; r(sys.argv[1])", str(tmp_path)],
                          cwd=REPO, env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for row in report["env"] + report["train"]:
        assert row["scaling_efficiency"] > 0 and row["devices_steps_per_s"] > 0
    assert done.stdout.count(benchmark.CPU_SMOKE_NOTE) == 2
    for table in ("env_throughput.md", "train_throughput.md"):
        assert "| efficiency |" in (tmp_path / table).read_text()
    assert report["replicated"]
    assert report["argument_bytes"] <= report["params_bytes"] + 64  # per device: the whole catalogue once
    assert report["other_bytes"] < BATCH / 2 * report["params_bytes"] / 16


def test_devices_flag_is_set_only_when_asked_and_not_over_the_users(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--a")
    request_cpu_devices(["--envs", "X", "--devices", "4"])
    assert os.environ["XLA_FLAGS"] == f"--a {FLAG}=4"
    request_cpu_devices(["--devices", "8"])  # the user's (or an earlier) setting stays
    assert os.environ["XLA_FLAGS"] == f"--a {FLAG}=4"
    monkeypatch.setenv("XLA_FLAGS", "--a")
    request_cpu_devices(["--devices", "1"])
    assert os.environ["XLA_FLAGS"] == "--a"


def test_bench_refuses_more_devices_than_jax_sees(capsys):
    parser = benchmark.make_parser()
    with pytest.raises(SystemExit):
        benchmark.run(parser.parse_args(["--devices", "3"]), parser)
    assert "--devices must be in [1, 1]" in capsys.readouterr().err


def test_suite_skips_and_lists_what_the_budget_leaves_out(tmp_path):
    result = accelerator_suite.main(["--tiny", "--budget-s", "0.001", "--out", str(tmp_path)])
    assert result["env"] == [] and result["train"] == [] and result["ope"] is None
    names = len(accelerator_suite.GYMNAX_ENVS) + len(benchmark.bench_names())
    assert len(result["skipped"]) == names * len(accelerator_suite.TINY["batch_sizes"]) + len(accelerator_suite.TRAIN) + 1
    table = (tmp_path / "accelerator.md").read_text()
    assert "env ShopperRec-v0@10k at 8 envs: needs" in table and "- train ppo with 2 seeds: needs" in table
    assert json.loads((tmp_path / "accelerator.json").read_text())["jax_version"]


@pytest.mark.slow
def test_suite_tiny_measures_every_row(tmp_path):
    result = run_quickly("benchmarks.accelerator_suite", ["--tiny", "--budget-s", "3000", "--out", str(tmp_path)])
    sizes = accelerator_suite.TINY["batch_sizes"]
    names = {*accelerator_suite.GYMNAX_ENVS, *benchmark.bench_names()}
    assert {(r["env"], r["batch_size"]) for r in result["env"]} == {(n, b) for n in names for b in sizes}
    for r in result["env"]:
        assert r["steps_per_s"] > 0 and r["compile_s"] > 0 and r["state_bytes"] > 0
        reference = next(c for c in result["env"] if c["env"] == "CartPole-v1" and c["batch_size"] == r["batch_size"])
        assert r["vs_cartpole"] == pytest.approx(r["steps_per_s"] / reference["steps_per_s"])
    assert [(r["algo"], r["seeds"]) for r in result["train"]] == [("ppo", 1), ("ppo", 2), ("dqn", 1), ("dqn", 2)]
    assert result["ope"]["run_s"] > 0 and result["skipped"] == []
    table = (tmp_path / "accelerator.md").read_text()
    assert "| ShopperRec-v0@10k | 32 |" in table and "PPO >= 1e7 env steps/s with vmapped seeds: " in table
