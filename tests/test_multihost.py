"""`ecomrl train` on several processes (`jax.distributed`): which command lines and cluster
environments join a multi-process run (fast), and, slow, 2 processes of 2 virtual CPU devices
each training a tiny PPO on a 4-device global mesh: the same metrics as one process with 4
devices, only process 0 writing the run's files, and a resume on 2 processes.
"""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from ecomrl_jax import checkpoint
from ecomrl_jax.cli import build, main
from ecomrl_jax.learners import ppo
from ecomrl_launch import cluster_args
from ecomrl_launch import main as launch
from tests.helpers import QUICK_COMPILE, REPO, assert_identical
from tests.learners.test_data_parallel import RTOL

EXPLICIT = ["--coordinator", "10.0.0.1:1234", "--num-processes", "2", "--process-id", "1"]
SRUN = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_NTASKS": "2",
        "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}


@pytest.mark.parametrize("argv, environ, expected", [
    (["train", *EXPLICIT], {}, {"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                                "process_id": 1}),
    (["train", "--distributed"], {}, {}),  # jax.distributed reads the cluster's variables
    (["train"], SRUN, {}),  # srun with 2 tasks
    (["train"], {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:5", "OMPI_COMM_WORLD_SIZE": "4"}, {}),
    (["train"], {**SRUN, "SLURM_NTASKS": "1"}, None),  # one task: a one-process run
    (["train"], {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}, None),  # in sbatch's script, not srun
    (["train", "--env", "Inventory-v0"], {}, None),  # a laptop
    (["evaluate", "--checkpoint", "runs/x"], SRUN, None),  # only train runs on several processes
])
def test_which_runs_join_a_multi_process_run(argv, environ, expected):
    assert cluster_args(argv, environ) == expected


@pytest.mark.parametrize("argv, message", [
    (["--coordinator", "host:1234", "--num-processes", "2"],
     "--coordinator, --num-processes and --process-id go together; got --coordinator host:1234, "
     "--num-processes 2, --process-id None"),
    (["--coordinator", "host", "--num-processes", "2", "--process-id", "0"],
     "--coordinator must be HOST:PORT, got 'host'"),
    (["--coordinator", "host:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in [0, --num-processes) = [0, 2), got 2"),
])
def test_bad_cluster_flags_give_one_line_before_jax_starts(argv, message, capsys):
    assert launch(["train", *argv]) == 2
    assert capsys.readouterr().err == f"ecomrl: error: {message}\n"


def test_cluster_flags_without_the_launcher_are_a_clear_error(tmp_path, capsys, monkeypatch):
    """This process did not join a multi-process run (it imported ecomrl_jax first), so the CLI
    refuses to train alone, and so it does as one of several srun tasks."""
    assert main(["train", *EXPLICIT, "--out", str(tmp_path / "a")]) == 2
    for name, value in SRUN.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "--out", str(tmp_path / "b")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all("needs the `ecomrl` command" in e for e in errors)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


TINY = ["--set", "num_envs=8", "--set", "num_steps=16", "--set", "num_minibatches=2",
        "--set", "hidden_size=16", "--total-steps", str(8 * 16 * 4), "--checkpoints", "2",
        "--episodes", "5"]

# `ecomrl_launch.main(argv)` recording every file and directory the process creates or opens for
# writing from Python (an audit hook); orbax writes array data from C++, unrecorded.
RECORDING = """
import atexit, json, os, sys
written = set()
def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[2] & (os.O_WRONLY | os.O_RDWR):
        written.add(os.path.abspath(args[0]))
    elif event == "os.mkdir" and isinstance(args[0], str):
        written.add(os.path.abspath(args[0]))
sys.addaudithook(audit)
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(written))))
import ecomrl_launch
sys.exit(ecomrl_launch.main(sys.argv[2:]))
"""


def start(argv: list[str], record, devices: int) -> subprocess.Popen:
    """`ecomrl ARGV` in a fresh Python with `devices` virtual CPU devices; its writes go to `record`."""
    flags = (f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE} "
             f"--xla_force_host_platform_device_count={devices}")
    return subprocess.Popen([sys.executable, "-c", RECORDING, str(record), *argv], cwd=REPO,
                            env={**os.environ, "XLA_FLAGS": flags}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(processes: list[subprocess.Popen]) -> list[str]:
    """Wait for every process (killing all if one fails or hangs); their stdout."""
    try:
        outputs = [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


def train_on_two_processes(out, tmp_path, *args: str) -> tuple[list[str], list[set[str]]]:
    """`ecomrl train --out OUT ARGS` as processes 0 and 1 on localhost, 2 CPU devices each: their
    stdout and the paths each wrote."""
    with socket.socket() as s:  # a free port for process 0's coordinator
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    records = [tmp_path / f"written_{i}.json" for i in range(2)]
    printed = finish([start(["train", "--out", str(out), "--coordinator", f"localhost:{port}",
                             "--num-processes", "2", "--process-id", str(i), *args], records[i], 2)
                      for i in range(2)])
    return printed, [set(json.loads(r.read_text())) for r in records]


def read_columns(path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {name: np.array([float(row[name]) for row in rows]) for name in rows[0]}


def final_state(out):
    """The run's latest checkpoint, restored into a runner state on this process's one device."""
    run = json.loads((out / "run.json").read_text())
    learner = build(run)[-1]
    target = jax.vmap(learner.init)(jax.random.split(jax.random.key(0), run["seeds"]))
    return checkpoint.restore(out / "checkpoints", target)[0]


@pytest.mark.slow  # three fresh Pythons (five processes) compile a PPO run each
def test_two_processes_train_as_one_with_four_devices_and_only_process_0_writes(tmp_path):
    """Same maths as one process with 4 devices: one global program, GSPMD-partitioned the same
    way; only the all-reduces of the batch means run across processes (gloo) and may sum in
    another order, so metrics and params agree to `RTOL` of their scale (as in
    test_data_parallel), counts exactly."""
    single, multi = tmp_path / "single", tmp_path / "multi"
    finish([start(["train", "--out", str(single), "--quiet", *TINY], tmp_path / "single.json", 4)])
    printed, written = train_on_two_processes(multi, tmp_path, *TINY)

    expected, actual = read_columns(single / "metrics.csv"), read_columns(multi / "metrics.csv")
    assert list(actual) == list(expected) and len(actual["update"]) == 4  # one row per update
    for name in expected:
        if name in ("update", "env_steps", "episodes_finished"):
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
        np.testing.assert_allclose(actual[name], expected[name], rtol=0,
                                   atol=RTOL * np.max(np.abs(expected[name])), err_msg=name)
    params = [jax.tree.leaves(ppo.network_params(final_state(out))) for out in (single, multi)]
    scale = max(np.max(np.abs(p)) for p in params[0])
    for a, e in zip(params[1], params[0], strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=RTOL * scale)

    # process 0 wrote the run's files and printed the report; process 1 only its checkpoint shards
    run_files = {multi / name for name in ("run.json", "metrics.csv", "metrics.jsonl",
                                           "learning_curve.png")}
    assert {str(p) for p in run_files} <= written[0]
    assert any("tensorboard" in p for p in written[0])
    assert all(p.startswith(str(multi / "checkpoints")) for p in written[1] if p.startswith(str(multi)))
    assert "| return |" in printed[0] and "| return |" not in printed[1] and "wrote" not in printed[1]

    # killed after update 2 of 4 and resumed on 2 processes: the same run
    cut = tmp_path / "cut"
    shutil.copytree(multi, cut)
    shutil.rmtree(cut / "checkpoints" / "4")
    printed, _ = train_on_two_processes(cut, tmp_path, "--resume", "--episodes", "5")
    assert f"resuming {cut} after 2 of 4 updates" in printed[0] and "resuming" not in printed[1]
    assert (cut / "metrics.csv").read_text() == (multi / "metrics.csv").read_text()
    assert_identical(final_state(cut), final_state(multi))
