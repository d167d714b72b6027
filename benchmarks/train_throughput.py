"""Training throughput of every learner: env steps/s for one seed and for vmapped seeds.

Each learner's whole `train` (env interaction and updates) is compiled AOT first; compile
seconds are reported separately and only the compiled call is timed. Learners run on
ShopperRec-v0, the tabular ones on ToyRec-v0 (they need a small discrete state space), SlateQ
on InterestEvolution-v0 (it needs the env's choice model).
Writes `<out>/train_throughput.json` and `<out>/train_throughput.md`.

    python -m benchmarks.train_throughput [--algos ppo dqn] [--seeds 1 4] [--total-steps 262144]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

import ecomrl_jax  # sets the XLA CPU flag before jax starts (ecomrl_jax/xla.py)
from ecomrl_jax.learners import LEARNERS

DEFAULT_ENVS = {"q_learning": "ToyRec-v0", "sarsa": "ToyRec-v0", "slateq": "InterestEvolution-v0"}


def env_for(algo: str, env_id: str | None) -> str:
    """The env a learner is benchmarked on: `env_id` if given, else its default."""
    return env_id or DEFAULT_ENVS.get(algo, "ShopperRec-v0")


def measure(algo: str, env_id: str, num_seeds: int, total_timesteps: int) -> dict:
    """Compile seconds and env steps/s (all seeds together) of one training run, vmapped over seeds."""
    config_cls, module = LEARNERS[algo]
    env, params = ecomrl_jax.make(env_id)
    config = config_cls(total_timesteps=total_timesteps)
    train = module.make_train(config, env, params)
    if num_seeds == 1:  # one seed is plain `train(key)`: a size-1 vmap costs about a third on CPU
        keys = jax.random.key(0)
    else:
        train, keys = jax.vmap(train), jax.random.split(jax.random.key(0), num_seeds)
    start = time.perf_counter()
    compiled = jax.jit(train).lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - start
    env_steps = int(np.ravel(metrics["env_steps"])[-1]) * num_seeds
    return {"env": env_id, "algo": algo, "seeds": num_seeds, "env_steps": env_steps,
            "steps_per_s": env_steps / run_s, "compile_s": compile_s, "run_s": run_s}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=sorted(LEARNERS), help="learners (default: all)")
    parser.add_argument("--env", default=None, help="one env for every learner (default: see above)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--total-steps", type=int, default=262_144, help="env steps per seed")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.algos) - set(LEARNERS))
    if unknown:
        parser.error(f"unknown learners {unknown}; choose from {sorted(LEARNERS)}")
    if args.env is not None and args.env not in ecomrl_jax.list_envs():
        parser.error(f"unknown env {args.env!r}; registered: {ecomrl_jax.list_envs()}")
    if any(s < 1 for s in args.seeds) or args.total_steps < 1:
        parser.error("--seeds and --total-steps must be positive")
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {platform.machine()}, {os.cpu_count()} cores)"
    rows = []
    for algo in args.algos:
        for seeds in args.seeds:
            rows.append(measure(algo, env_for(algo, args.env), seeds, args.total_steps))
            r = rows[-1]
            print(f"{algo} {r['env']} seeds {seeds}: {r['steps_per_s']:,.0f} env steps/s "
                  f"(compile {r['compile_s']:.1f} s, run {r['run_s']:.1f} s)", flush=True)
    lines = [f"Training throughput on {device}", "",
             "| learner | env | seeds | env steps/s (all seeds) | compile s | run s |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['algo']} | {r['env']} | {r['seeds']} | {r['steps_per_s']:,.0f} | "
              f"{r['compile_s']:.1f} | {r['run_s']:.1f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps({"device": device, "results": rows}, indent=2))
    (args.out / "train_throughput.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
