"""Env steps/s of every registered env under jit(scan(vmap(step))) with random valid actions.

Compile time is measured separately with AOT `lower().compile()`; only compiled code is
timed. Each row also gives the env's speed as a multiple of gymnax's CartPole-v1 measured by
the same harness at the same batch size in the same run, which makes runs on different
machines or under different load comparable, and the bytes of one env's state (the catalogue
and other arrays in `EnvParams` are passed once, unbatched, and shared by the whole batch).
`SCALED` adds envs at the sizes papers use (`ShopperRec-v0@10k`). With `--devices N` each
row is measured on 1 device and on N (the env batch split over a mesh, N x the batch: the
same envs per device) and gives the scaling efficiency throughput(N) / (N x throughput(1)).
Writes `<out>/env_throughput.json` and `<out>/env_throughput.md`. Run it as `ecomrl bench`
or `python -m benchmarks.env_throughput` (a script on top of this module).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnax
import jax
from jax.sharding import NamedSharding, PartitionSpec

import ecomrl_jax
from ecomrl_jax.learners.loop import make_mesh, shard_envs

REFERENCE = "CartPole-v1"  # gymnax's; every row gives its speed as a multiple of this env's
SCALED = {  # name -> (env id, constructor arguments): envs at the sizes their literature uses
    # RecSim / SlateQ-style recommendation: 10,000 items, 100 candidates a step, slate of 10
    "ShopperRec-v0@10k": ("ShopperRec-v0", {"num_items": 10_000, "num_candidates": 100, "slate_size": 10}),
}
CPU_SMOKE_NOTE = ("on CPU the devices are virtual and share the same cores: the scaling efficiency "
                  "is only a correctness smoke test, not a measure of scaling")


def bench_names() -> list[str]:
    """Every registered env id and every `SCALED` name: what the benchmark runs by default."""
    return ecomrl_jax.list_envs() + sorted(SCALED)


def make_env(name: str):
    """`(env, params)` for a registered id, a `SCALED` name or a gymnax id."""
    if name in SCALED:
        env_id, kwargs = SCALED[name]
        return ecomrl_jax.make(env_id, **kwargs)
    if name in ecomrl_jax.list_envs():
        return ecomrl_jax.make(name)
    return gymnax.make(name)


def tree_bytes(tree) -> int:
    """Sum of the leaves' bytes: arrays or shapes (`jax.eval_shape`); Python scalars count as the
    float32/int32 arrays they become."""
    return sum(x.size * x.dtype.itemsize if isinstance(x, jax.ShapeDtypeStruct) else jax.numpy.asarray(x).nbytes
               for x in jax.tree.leaves(tree))


def memory_per_env(env, params) -> dict:
    """Bytes of one env's state, and of the params (catalogue, coefficients) the batch shares."""
    _, state = jax.eval_shape(env.reset, jax.random.key(0), params)
    return {"state_bytes": tree_bytes(state), "params_bytes": tree_bytes(params)}


def make_rollout(env, params, batch_size: int, num_steps: int):
    """A jittable `rollout(key, params)` of `num_steps` vmapped steps over `batch_size` envs;
    `params` is one unbatched argument (in_axes None). Traced under `jax.set_mesh` of a mesh with
    an `envs` axis, the env batch is split over it (`learners.loop.shard_envs`); the rewards are
    summed per env and only once at the end, so the devices do not talk inside the scan."""
    action_space = env.action_space(params)

    def rollout(key, params):
        reset_key, key = jax.random.split(key)
        reset_keys = shard_envs(jax.random.split(reset_key, batch_size), batch_size)
        _, state = shard_envs(jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params), batch_size)

        def step(carry, step_key):
            state, total = carry
            act_keys, step_keys = (shard_envs(jax.random.split(k, batch_size), batch_size)
                                   for k in jax.random.split(step_key))
            actions = jax.vmap(action_space.sample)(act_keys)
            _, state, reward, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(step_keys, state, actions, params)
            return shard_envs((state, total + reward), batch_size), None

        total = shard_envs(jax.numpy.zeros(batch_size, jax.numpy.float32), batch_size)
        (_, total), _ = jax.lax.scan(step, (state, total), jax.random.split(key, num_steps))
        return total.sum()

    return rollout


def compile_rollout(name: str, batch_size: int, num_steps: int, mesh=None):
    """`(compiled rollout, its params placed on the mesh, compile seconds)`; params replicated
    over the devices of `mesh` (default: one device)."""
    env, params = make_env(name)
    mesh = mesh or make_mesh(1)
    rollout = make_rollout(env, params, batch_size, num_steps)
    with jax.set_mesh(mesh):
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
        start = time.perf_counter()
        compiled = jax.jit(rollout).lower(jax.random.key(0), params).compile()
    return compiled, params, time.perf_counter() - start


def best_seconds(compiled, params, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls of a compiled rollout, after one warm-up call."""
    compiled(jax.random.key(1), params).block_until_ready()
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        compiled(jax.random.key(2 + i), params).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str, batch_size: int, num_steps: int, repeats: int, mesh=None) -> dict:
    """Compile seconds and best-of-`repeats` env steps/s for one env (a registered id, a `SCALED`
    name or a gymnax id) and batch size, on the devices of `mesh` (default: one)."""
    compiled, params, compile_s = compile_rollout(name, batch_size, num_steps, mesh)
    best = best_seconds(compiled, params, repeats)
    return {"env": name, "batch_size": batch_size, "num_steps": num_steps,
            "steps_per_s": batch_size * num_steps / best, "compile_s": compile_s}


def device_name() -> str:
    return (f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {platform.machine()}, "
            f"{os.cpu_count()} cores)")


def to_markdown(rows: list[dict], device: str, devices: int) -> str:
    scaling = devices > 1
    lines = [f"Env throughput on {device} (jit(scan(vmap(step))), random valid actions); "
             f"x {REFERENCE}: steps/s over gymnax's {REFERENCE} at the same batch size, same run; "
             "state B/env: bytes of one env's state; params B: the arrays every env shares", ""]
    if scaling:
        lines += [f"Scaling: {devices} devices, each with the batch of the 1-device row; efficiency = "
                  f"steps/s on {devices} / ({devices} x steps/s on 1)"
                  + (f" ({CPU_SMOKE_NOTE})" if jax.default_backend() == "cpu" else ""), ""]
    header = f"| env | batch | steps/s | x {REFERENCE} | compile s | state B/env | params B |"
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if scaling:
        header += f" steps/s on {devices} | efficiency |"
        rule += "---:|---:|"
    lines += [header, rule]
    for r in rows:
        line = (f"| {r['env']} | {r['batch_size']} | {r['steps_per_s']:,.0f} | {r['vs_reference']:.3g} | "
                f"{r['compile_s']:.2f} | {r['state_bytes']:,} | {r['params_bytes']:,} |")
        if scaling:
            line += f" {r['devices_steps_per_s']:,.0f} | {r['scaling_efficiency']:.0%} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """This benchmark's arguments, added to `parser` (the `ecomrl bench` subcommand) or a new one."""
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=None,
                        help=f"env ids or scaled configurations {sorted(SCALED)} (default: all)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 1024, 4096, 16384])
    parser.add_argument("--num-steps", type=int, default=100, help="scan length per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1,
                        help="also run on this many devices and report the scaling efficiency "
                             "(on CPU: virtual devices, `XLA_FLAGS=--xla_force_host_platform_device_count=N`, "
                             "which benchmarks/env_throughput.py sets)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[dict]:
    """Check the arguments (bad ones go to `parser.error`), measure, print and write the results."""
    names = args.envs or bench_names()
    unknown = sorted(set(names) - set(bench_names()))
    if unknown:
        parser.error(f"unknown env ids {unknown}; registered: {bench_names()}")
    if any(b < 1 for b in args.batch_sizes) or args.num_steps < 1 or args.repeats < 1:
        parser.error("batch sizes, --num-steps and --repeats must be positive")
    if not 1 <= args.devices <= jax.device_count():
        parser.error(f"--devices must be in [1, {jax.device_count()}] (the {jax.default_backend()} devices "
                     f"jax sees), got {args.devices}; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                     "before jax starts makes N virtual devices")
    device, meshes = device_name(), (make_mesh(1), make_mesh(args.devices))
    if args.devices > 1 and jax.default_backend() == "cpu":
        print(f"note: {CPU_SMOKE_NOTE}", flush=True)
    reference = {b: measure(REFERENCE, b, args.num_steps, args.repeats)["steps_per_s"]
                 for b in args.batch_sizes}
    for batch_size, speed in reference.items():
        print(f"{REFERENCE + ' (gymnax)':26s} batch {batch_size:7d}: {speed:14,.0f} steps/s", flush=True)
    rows = []
    for name in names:
        memory = memory_per_env(*make_env(name))
        for batch_size in args.batch_sizes:
            r = {**measure(name, batch_size, args.num_steps, args.repeats, meshes[0]), **memory}
            r["vs_reference"] = r["steps_per_s"] / reference[batch_size]
            line = (f"{name:26s} batch {batch_size:7d}: {r['steps_per_s']:14,.0f} steps/s "
                    f"({r['vs_reference']:.3g} x {REFERENCE}), compile {r['compile_s']:.2f} s, "
                    f"{r['state_bytes']:,} B state/env")
            if args.devices > 1:
                many = measure(name, args.devices * batch_size, args.num_steps, args.repeats, meshes[1])
                r["devices_steps_per_s"] = many["steps_per_s"]
                r["scaling_efficiency"] = many["steps_per_s"] / (args.devices * r["steps_per_s"])
                line += (f"; {args.devices} devices: {many['steps_per_s']:,.0f} steps/s, "
                         f"efficiency {r['scaling_efficiency']:.0%}")
            rows.append(r)
            print(line, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "env_throughput.json").write_text(json.dumps(
        {"device": device, "devices": args.devices, "reference": {"env": REFERENCE, "steps_per_s": reference},
         "results": rows}, indent=2))
    (args.out / "env_throughput.md").write_text(to_markdown(rows, device, args.devices))
    return rows
