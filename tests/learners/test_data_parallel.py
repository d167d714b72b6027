"""Same answer at any scale: a learner's env batch split over 4 (virtual CPU) devices, or over 2
and resumed from its checkpoint on 1, trains as on 1 device.

The runs happen in a subprocess with 4 CPU devices (`run_on_devices`), so this process keeps one.
Tabular learners are bit-identical: their only cross-env float reduction (the mean TD error)
comes out the same. Gradient learners agree to `RTOL` of each metric's scale over the run, not
bit for bit: XLA partitions the one global program, so every mean over the env batch (losses,
gradients, advantage normalisation, episode means) is summed as per-device partial sums plus an
all-reduce, in another order than on one device, and those last-bit differences pass through
the updates. Counts (env steps, finished episodes) are exact.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import QUICK_COMPILE

RTOL = 1e-3  # of a metric's largest magnitude over the run; measured <= 1e-4 over 6 updates (A2C,
# its actor loss: a mean of normalised advantages, near 0), final params <= 2e-5


def run_on_devices(tmp_path, *names: str) -> dict:
    """`run_on_devices`' JSON; its programs are tiny, so they compile quickly (`QUICK_COMPILE`)
    even under `-m slow`."""
    flags = (f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE} "
             "--xla_force_host_platform_device_count=4")
    done = subprocess.run([sys.executable, "-m", "tests.learners.run_on_devices", str(tmp_path), *names],
                          env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_close(run, reference, rtol: float) -> None:
    """Each metric of `run` within `rtol` of its largest magnitude in `reference` (integer counts
    equal), and the final params within `rtol` of the largest parameter (a softmax's shift-free
    biases stay near 0, where a relative error means nothing)."""
    for name, expected in reference["metrics"].items():
        expected, actual = np.asarray(expected), np.asarray(run["metrics"][name])
        if name in ("env_steps", "episodes_finished"):
            np.testing.assert_array_equal(actual, expected, err_msg=name)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.max(np.abs(expected)),
                                   err_msg=name)
    expected, actual = _leaves(reference["params"]), _leaves(run["params"])
    scale = max(np.max(np.abs(e)) for e in expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=rtol * scale, err_msg="params")


def _leaves(tree) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
    return [np.asarray(tree)]


@pytest.mark.slow  # a fresh Python with 3-4 virtual devices: compiles everything again
def test_tabular_learner_is_bit_identical_on_4_devices_and_resumed_on_fewer(tmp_path):
    result = run_on_devices(tmp_path, "q_learning")
    runs = result["q_learning"]
    assert runs["envs_per_device"] == 2  # 8 envs split 4 ways: the split really happened
    assert_close(runs["4"], runs["1"], rtol=0)
    assert_close(runs["2->1"], runs["1"], rtol=0)
    assert result["indivisible"] == ("num_envs (6) must be divisible by the number of devices it "
                                     "is split over (4)")


@pytest.mark.slow
def test_gradient_learners_and_a_sweep_agree_on_4_devices_and_after_resuming_on_fewer(tmp_path):
    result = run_on_devices(tmp_path, "--sweep", "ppo", "dqn", "a2c")
    # a PPO sweep's 6 runs (padded to 8) split 4 ways: each run is computed as before
    np.testing.assert_allclose(result["sweep"]["4"], result["sweep"]["1"], rtol=RTOL)
    for name in ("ppo", "dqn", "a2c"):
        runs = result[name]
        assert runs["envs_per_device"] == 2
        assert_close(runs["4"], runs["1"], RTOL)
        assert_close(runs["2->1"], runs["1"], RTOL)
