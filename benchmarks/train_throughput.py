"""Training throughput of every learner: env steps/s for one seed and for vmapped seeds.

Each learner's whole `train` (env interaction and updates) is compiled AOT first; compile
seconds are reported separately and only the compiled call is timed. Learners run on
ShopperRec-v0, the tabular ones on ToyRec-v0 (they need a small discrete state space), SlateQ
on InterestEvolution-v0 (it needs the env's choice model).
With `--devices N` each row is measured on 1 device and on N: each seed's env batch split over a
mesh (`learners.loop`), N x the envs and steps (the same envs per device), and gives the scaling
efficiency throughput(N) / (N x throughput(1)); on CPU the N devices are virtual and share the
cores, so that figure is only a correctness smoke test.
Writes `<out>/train_throughput.json` and `<out>/train_throughput.md`.

    python -m benchmarks.train_throughput [--algos ppo dqn] [--seeds 1 4] [--total-steps 262144] [--devices 4]
"""

import argparse
import json
import time
from pathlib import Path

from benchmarks.cpu_devices import request_cpu_devices

request_cpu_devices()  # before jax starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

import ecomrl_jax  # noqa: E402  (sets the XLA CPU flag before jax starts: ecomrl_jax/xla.py)
from ecomrl_jax.benchmark import CPU_SMOKE_NOTE, device_name  # noqa: E402
from ecomrl_jax.learners import LEARNERS  # noqa: E402
from ecomrl_jax.learners.loop import make_mesh  # noqa: E402

DEFAULT_ENVS = {"q_learning": "ToyRec-v0", "sarsa": "ToyRec-v0", "slateq": "InterestEvolution-v0"}


def env_for(algo: str, env_id: str | None) -> str:
    """The env a learner is benchmarked on: `env_id` if given, else its default."""
    return env_id or DEFAULT_ENVS.get(algo, "ShopperRec-v0")


def measure(algo: str, env_id: str, num_seeds: int, total_timesteps: int, devices: int = 1) -> dict:
    """Compile seconds and env steps/s (all seeds together) of one training run, vmapped over seeds;
    on `devices` devices each seed runs `devices` x the config's envs and `total_timesteps`,
    its env batch split over them."""
    config_cls, module = LEARNERS[algo]
    env, params = ecomrl_jax.make(env_id)
    config = config_cls(total_timesteps=total_timesteps * devices, num_envs=config_cls().num_envs * devices)
    train = module.make_train(config, env, params)
    if num_seeds == 1:  # one seed is plain `train(key)`: a size-1 vmap costs about a third on CPU
        keys = jax.random.key(0)
    else:
        train, keys = jax.vmap(train), jax.random.split(jax.random.key(0), num_seeds)
    with jax.set_mesh(make_mesh(devices)):  # each seed's envs split over the devices (learners.loop)
        start = time.perf_counter()
        compiled = jax.jit(train).lower(keys).compile()
        compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - start
    env_steps = int(np.ravel(metrics["env_steps"])[-1]) * num_seeds
    return {"env": env_id, "algo": algo, "seeds": num_seeds, "devices": devices, "env_steps": env_steps,
            "steps_per_s": env_steps / run_s, "compile_s": compile_s, "run_s": run_s}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=sorted(LEARNERS), help="learners (default: all)")
    parser.add_argument("--env", default=None, help="one env for every learner (default: see above)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--total-steps", type=int, default=262_144, help="env steps per seed")
    parser.add_argument("--devices", type=int, default=1,
                        help="also run on this many devices and report the scaling efficiency "
                             "(on CPU: virtual devices)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.algos) - set(LEARNERS))
    if unknown:
        parser.error(f"unknown learners {unknown}; choose from {sorted(LEARNERS)}")
    if args.env is not None and args.env not in ecomrl_jax.list_envs():
        parser.error(f"unknown env {args.env!r}; registered: {ecomrl_jax.list_envs()}")
    if any(s < 1 for s in args.seeds) or args.total_steps < 1:
        parser.error("--seeds and --total-steps must be positive")
    if not 1 <= args.devices <= jax.device_count():
        parser.error(f"--devices must be in [1, {jax.device_count()}] (the devices jax sees), got {args.devices}")
    device, scaling = device_name(), args.devices > 1
    if scaling and jax.default_backend() == "cpu":
        print(f"note: {CPU_SMOKE_NOTE}", flush=True)
    rows = []
    for algo in args.algos:
        for seeds in args.seeds:
            rows.append(measure(algo, env_for(algo, args.env), seeds, args.total_steps))
            r = rows[-1]
            line = (f"{algo} {r['env']} seeds {seeds}: {r['steps_per_s']:,.0f} env steps/s "
                    f"(compile {r['compile_s']:.1f} s, run {r['run_s']:.1f} s)")
            if scaling:
                many = measure(algo, r["env"], seeds, args.total_steps, args.devices)
                r["devices_steps_per_s"] = many["steps_per_s"]
                r["scaling_efficiency"] = many["steps_per_s"] / (args.devices * r["steps_per_s"])
                line += (f"; {args.devices} devices: {many['steps_per_s']:,.0f} env steps/s, "
                         f"efficiency {r['scaling_efficiency']:.0%}")
            print(line, flush=True)
    lines = [f"Training throughput on {device}", ""]
    if scaling:
        lines += [f"Scaling: {args.devices} devices, each with the envs of the 1-device row; efficiency = "
                  f"steps/s on {args.devices} / ({args.devices} x steps/s on 1)"
                  + (f" ({CPU_SMOKE_NOTE})" if jax.default_backend() == "cpu" else ""), ""]
    extra = (f" steps/s on {args.devices} | efficiency |", "---:|---:|") if scaling else ("", "")
    lines += ["| learner | env | seeds | env steps/s (all seeds) | compile s | run s |" + extra[0],
              "|---|---|---:|---:|---:|---:|" + extra[1]]
    lines += [f"| {r['algo']} | {r['env']} | {r['seeds']} | {r['steps_per_s']:,.0f} | "
              f"{r['compile_s']:.1f} | {r['run_s']:.1f} |"
              + (f" {r['devices_steps_per_s']:,.0f} | {r['scaling_efficiency']:.0%} |" if scaling else "")
              for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(
        {"device": device, "devices": args.devices, "results": rows}, indent=2))
    (args.out / "train_throughput.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
