"""Speed of the off-policy estimators: every estimator with bootstrap intervals on a large log,
ecomrl_jax (JAX) beside obp 0.4.1 (numpy) on the same rows, run side by side.

The log is synthetic (numpy seed 0): `--rows` rows, 10 items, 3 positions, random propensities,
evaluation action distribution and reward-model predictions, stored in a temporary .npz that the
obp half reads in a subprocess of `--obp-python` (a Python with obp 0.4.1; obp is no dependency of
ecomrl_jax). JAX: `row_terms` then one `bootstrap` of all seven estimators (shared resamples),
compiled ahead of time; compile seconds apart, only compiled calls timed; the resamples split over
`--devices` virtual CPU devices (default: one per core; obp's numpy runs on one core). obp: each estimator's
`estimate_interval(n_bootstrap_samples=...)`; with `--obp-resamples` below `--resamples` its
bootstrap time is scaled up linearly (stated in the output). Writes `<out>/ope_speed.json` and `.md`.

    python -m benchmarks.ope_speed [--rows 1000000] [--resamples 1000] [--devices 2] \\
        [--obp-python /work/scratch/obpvenv/bin/python] [--obp-resamples 1000]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAMES = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os")
NUM_ACTIONS, LEN_LIST = 10, 3


def synthetic_log(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, NUM_ACTIONS, LEN_LIST))
    dist = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.savez(path, action=rng.integers(0, NUM_ACTIONS, n), position=rng.integers(0, LEN_LIST, n),
             reward=rng.binomial(1, 0.05, n).astype(np.float64), pscore=rng.uniform(0.02, 0.5, n),
             action_dist=dist, q_hat=rng.uniform(0, 0.1, (n, NUM_ACTIONS, LEN_LIST)))


def obp_half(path: str, resamples: int) -> dict:
    """Runs under obp's Python: seconds per estimator for the point estimate and its interval."""
    from obp.ope import (DirectMethod, DoublyRobust, DoublyRobustWithShrinkage, InverseProbabilityWeighting,
                         SelfNormalizedDoublyRobust, SelfNormalizedInverseProbabilityWeighting,
                         SwitchDoublyRobust)
    estimators = dict(zip(NAMES, (InverseProbabilityWeighting(), SelfNormalizedInverseProbabilityWeighting(),
                                  DirectMethod(), DoublyRobust(), SelfNormalizedDoublyRobust(),
                                  SwitchDoublyRobust(), DoublyRobustWithShrinkage())))
    data = dict(np.load(path))
    inputs = dict(reward=data["reward"], action=data["action"], position=data["position"], pscore=data["pscore"],
                  action_dist=data["action_dist"], estimated_rewards_by_reg_model=data["q_hat"])
    out = {}
    for name, estimator in estimators.items():
        start = time.perf_counter()
        estimator.estimate_policy_value(**inputs)
        point_s = time.perf_counter() - start
        start = time.perf_counter()
        estimator.estimate_interval(**inputs, n_bootstrap_samples=resamples, random_state=0)
        out[name] = {"point_s": point_s, "interval_s": time.perf_counter() - start}
    return out


def jax_half(path: Path, resamples: int, separately: bool = True) -> dict:
    """Seconds (compile apart) of one bootstrap of all seven estimators and, if `separately`,
    of each alone; the resamples split over the local devices."""
    import ecomrl_jax  # noqa: F401  (the XLA CPU flag before jax starts)
    import jax
    import jax.numpy as jnp

    from ecomrl_jax.offline import LoggedBandit
    from ecomrl_jax.offline import estimators as E

    stored = np.load(path)
    n = stored["action"].shape[0]
    data = LoggedBandit(context=jnp.zeros((n, 1)), action=jnp.asarray(stored["action"], jnp.int32),
                        position=jnp.asarray(stored["position"], jnp.int32),
                        reward=jnp.asarray(stored["reward"], jnp.float32),
                        propensity=jnp.asarray(stored["pscore"], jnp.float32),
                        num_actions=NUM_ACTIONS, len_list=LEN_LIST)
    dist, q_hat = jnp.asarray(stored["action_dist"], jnp.float32), jnp.asarray(stored["q_hat"], jnp.float32)
    key = jax.random.key(0)

    def run(names, data, dist, q_hat, key):  # arrays as arguments: closed over, XLA would fold them
        return E.bootstrap(E.row_terms(data, dist, q_hat), key, names, num_resamples=resamples)

    timings = {}
    groups = (("all seven, shared resamples", NAMES), *(((name, (name,)) for name in NAMES) if separately else ()))
    for label, names in groups:
        start = time.perf_counter()
        compiled = jax.jit(run, static_argnums=0).lower(names, data, dist, q_hat, key).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(compiled(data, dist, q_hat, key))
        timings[label] = {"compile_s": compile_s, "run_s": time.perf_counter() - start}
    return {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "devices": jax.local_device_count(), "timings": timings}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=os.cpu_count(),
                        help="virtual CPU devices the resamples split over (default: one per core)")
    parser.add_argument("--obp-python", default=None, help="a Python with obp 0.4.1 (omit: JAX only)")
    parser.add_argument("--obp-resamples", type=int, default=None,
                        help="bootstrap resamples obp runs (default --resamples); its time is scaled to --resamples")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--obp-worker", nargs=2, metavar=("NPZ", "RESAMPLES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.obp_worker:  # the obp half, inside obp's Python
        print(json.dumps(obp_half(args.obp_worker[0], int(args.obp_worker[1]))))
        return {}
    obp_resamples = args.obp_resamples or args.resamples
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.devices}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.npz"
        synthetic_log(path, args.rows)
        result = {"rows": args.rows, "resamples": args.resamples, "cpu": platform.processor() or platform.machine(),
                  "jax": jax_half(path, args.resamples)}
        if args.obp_python:
            done = subprocess.run([args.obp_python, __file__, "--obp-worker", str(path), str(obp_resamples)],
                                  capture_output=True, text=True, check=True)
            obp = json.loads(done.stdout.strip().splitlines()[-1])
            scale = args.resamples / obp_resamples
            result["obp"] = {"resamples_run": obp_resamples, "per_estimator": obp,
                             "total_s": sum(v["point_s"] + v["interval_s"] * scale for v in obp.values())}
    write(result, args.out)
    return result


def write(result: dict, out: Path) -> None:
    timings = result["jax"]["timings"]
    joint = timings["all seven, shared resamples"]
    separate = sum(timings[name]["run_s"] for name in NAMES)
    lines = [f"# OPE speed: {len(NAMES)} estimators, {result['resamples']:,} bootstrap resamples, "
             f"{result['rows']:,} logged rows ({NUM_ACTIONS} items x {LEN_LIST} positions)", "",
             f"JAX backend: {result['jax']['backend']} ({result['jax']['device']}, resamples split over "
             f"{result['jax']['devices']} devices); compiled code timed, compile apart. obp: numpy, one core.", "",
             "| implementation | seconds | compile s |", "|---|---|---|",
             f"| ecomrl_jax, one bootstrap of all seven (shared resamples) | {joint['run_s']:.1f} | "
             f"{joint['compile_s']:.1f} |",
             f"| ecomrl_jax, seven separate bootstraps | {separate:.1f} | "
             f"{sum(timings[n]['compile_s'] for n in NAMES):.1f} |"]
    if "obp" in result:
        obp = result["obp"]
        scaled = "" if obp["resamples_run"] == result["resamples"] else \
            f" (ran {obp['resamples_run']} resamples per estimator, bootstrap time scaled x{result['resamples'] / obp['resamples_run']:g})"
        lines += [f"| obp 0.4.1 estimate_policy_value + estimate_interval per estimator{scaled} | "
                  f"{obp['total_s']:.1f} | - |", "",
                  f"Speed-up over obp: {obp['total_s'] / joint['run_s']:.0f}x (shared resamples), "
                  f"{obp['total_s'] / separate:.0f}x (separate bootstraps)."]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ope_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ope_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
