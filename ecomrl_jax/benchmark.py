"""Env steps/s of every registered env under jit(scan(vmap(step))) with random valid actions.

Compile time is measured separately with AOT `lower().compile()`; only compiled code is
timed. Each row also gives the env's speed as a multiple of gymnax's CartPole-v1 measured by
the same harness at the same batch size in the same run, which makes runs on different
machines or under different load comparable. Writes `<out>/env_throughput.json` and `<out>/env_throughput.md`. Run it as
`ecomrl bench` or `python -m benchmarks.env_throughput` (a script on top of this module).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnax
import jax

import ecomrl_jax

REFERENCE = "CartPole-v1"  # gymnax's; every row gives its speed as a multiple of this env's


def make_rollout(env, params, batch_size: int, num_steps: int):
    """A jittable rollout of `num_steps` vmapped steps over `batch_size` envs."""
    action_space = env.action_space(params)

    def rollout(key):
        reset_key, key = jax.random.split(key)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, batch_size), params)

        def step(state, step_key):
            keys = jax.random.split(step_key, 2 * batch_size)
            actions = jax.vmap(action_space.sample)(keys[:batch_size])
            _, state, reward, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys[batch_size:], state, actions, params)
            return state, reward.sum()

        _, rewards = jax.lax.scan(step, state, jax.random.split(key, num_steps))
        return rewards.sum()

    return rollout


def measure(env_id: str, batch_size: int, num_steps: int, repeats: int) -> dict:
    """Compile seconds and best-of-`repeats` env steps/s for one env (an ecomrl_jax id, or
    REFERENCE from gymnax) and batch size."""
    env, params = gymnax.make(env_id) if env_id == REFERENCE else ecomrl_jax.make(env_id)
    rollout = make_rollout(env, params, batch_size, num_steps)
    start = time.perf_counter()
    compiled = jax.jit(rollout).lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - start
    compiled(jax.random.key(1)).block_until_ready()
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        compiled(jax.random.key(2 + i)).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return {"env": env_id, "batch_size": batch_size, "num_steps": num_steps,
            "steps_per_s": batch_size * num_steps / best, "compile_s": compile_s}


def to_markdown(rows: list[dict], device: str) -> str:
    lines = [f"Env throughput on {device} (jit(scan(vmap(step))), random valid actions); "
             f"x {REFERENCE}: steps/s over gymnax's {REFERENCE} at the same batch size, same run",
             "", f"| env | batch | steps/s | x {REFERENCE} | compile s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['env']} | {r['batch_size']} | {r['steps_per_s']:,.0f} | "
              f"{r['vs_reference']:.3g} | {r['compile_s']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """This benchmark's arguments, added to `parser` (the `ecomrl bench` subcommand) or a new one."""
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=None, help="env ids (default: all registered)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 1024, 4096, 16384])
    parser.add_argument("--num-steps", type=int, default=100, help="scan length per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results"))
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[dict]:
    """Check the arguments (bad ones go to `parser.error`), measure, print and write the results."""
    env_ids = args.envs or ecomrl_jax.list_envs()
    unknown = sorted(set(env_ids) - set(ecomrl_jax.list_envs()))
    if unknown:
        parser.error(f"unknown env ids {unknown}; registered: {ecomrl_jax.list_envs()}")
    if any(b < 1 for b in args.batch_sizes) or args.num_steps < 1 or args.repeats < 1:
        parser.error("batch sizes, --num-steps and --repeats must be positive")
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {platform.machine()}, {os.cpu_count()} cores)"
    reference = {b: measure(REFERENCE, b, args.num_steps, args.repeats)["steps_per_s"]
                 for b in args.batch_sizes}
    for batch_size, speed in reference.items():
        print(f"{REFERENCE + ' (gymnax)':26s} batch {batch_size:7d}: {speed:14,.0f} steps/s", flush=True)
    rows = []
    for env_id in env_ids:
        for batch_size in args.batch_sizes:
            r = measure(env_id, batch_size, args.num_steps, args.repeats)
            r["vs_reference"] = r["steps_per_s"] / reference[batch_size]
            rows.append(r)
            print(f"{env_id:26s} batch {batch_size:7d}: {r['steps_per_s']:14,.0f} steps/s "
                  f"({r['vs_reference']:.3g} x {REFERENCE}), compile {r['compile_s']:.2f} s",
                  flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "env_throughput.json").write_text(json.dumps(
        {"device": device, "reference": {"env": REFERENCE, "steps_per_s": reference},
         "results": rows}, indent=2))
    (args.out / "env_throughput.md").write_text(to_markdown(rows, device))
    return rows

