"""One accelerator command: env throughput of every env at accelerator batch sizes, PPO and DQN
training throughput with 1 and 64 vmapped seeds, and the OPE benchmark, within a time budget.

    python -m benchmarks.accelerator_suite --budget-s 480 [--out results] [--tiny]

Env rows: jit(scan(vmap(step))) with random valid actions (`ecomrl_jax.benchmark`), every
registered env and `SCALED` configuration at 4,096 envs, then x4 up to 1,048,576. At each batch
size gymnax's own CartPole-v1 and BernoulliBandit-misc run first, by the same harness, so every
row has its ratio to CartPole-v1; then the ShopperRec-v0 rows (the targets'), then the rest. An env
stops at the memory limit: a compiled rollout that needs more than the device's `bytes_limit`
(`memory_analysis`) is not run, and an out-of-memory error at run time ends that env's sizes.
Order: all envs at 4,096, the training rows, OPE, then the larger sizes. Before each row its time
is estimated from the rows before (compile + calls, scaled by the batch); a row that would not fit
in what is left of the budget is skipped and listed. Writes `<out>/accelerator.md` and `.json`
(device, jax version, compile seconds per row, bytes of state per env, skipped rows, targets).
`--tiny` is the CPU smoke test.

On a lent GPU: benchmarks/README.md (the device image lacks gymnax: carry its wheels).
"""

import argparse
import importlib.metadata
import json
import sys
import tempfile
import time
from pathlib import Path

import jax

from benchmarks import ope_speed, train_throughput
from ecomrl_jax import benchmark

GYMNAX_ENVS = (benchmark.REFERENCE, "BernoulliBandit-misc")  # gymnax's own, beside ours
BATCH_SIZES = (4096, 16_384, 65_536, 262_144, 1_048_576)
TRAIN = (("ppo", 1), ("ppo", 64), ("dqn", 1), ("dqn", 64))  # (learner, vmapped seeds)
TINY = dict(batch_sizes=(8, 32), num_steps=4, repeats=1, train_steps=8192, seeds=(1, 2), ope_rows=2000,
            ope_resamples=10)
FULL = dict(batch_sizes=BATCH_SIZES, num_steps=100, repeats=2, train_steps=2**21, seeds=(1, 64),
            ope_rows=100_000, ope_resamples=200)
FIRST_GUESS_S = 30.0  # a row's time before any row of its kind has been measured
TARGETS = ("ShopperRec-v0 >= 5e9 env steps/s at >= 1M envs (one H100-class GPU)",
           "PPO >= 1e7 env steps/s with vmapped seeds",
           "env throughput scaling efficiency >= 90% from 1 to 8 devices")


class Budget:
    """Seconds left of the run's budget, and the rows skipped for want of them."""

    def __init__(self, seconds: float):
        self.start, self.seconds, self.skipped = time.perf_counter(), seconds, []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, what: str, estimate_s: float) -> bool:
        left = self.seconds - self.elapsed()
        if estimate_s <= left:
            return True
        self.skipped.append(f"{what}: needs ~{estimate_s:.0f} s, {max(left, 0):.0f} s left")
        return False


def memory_limit() -> int | None:
    """The device's memory in bytes, where it reports one (GPUs, TPUs; not CPU)."""
    stats = jax.devices()[0].memory_stats()
    return stats.get("bytes_limit") if stats else None


def needed_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def is_out_of_memory(error: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def env_row(name: str, batch_size: int, sizes: dict, limit: int | None) -> dict:
    """One env row (`benchmark` harness); `{"out_of_memory": ...}` where it would not fit."""
    compiled, params, compile_s = benchmark.compile_rollout(name, batch_size, sizes["num_steps"])
    needed = needed_bytes(compiled)
    if limit is not None and needed > limit:
        return {"out_of_memory": f"needs {needed:,} B of {limit:,}"}
    try:
        best = benchmark.best_seconds(compiled, params, sizes["repeats"])
    except jax.errors.JaxRuntimeError as error:
        if not is_out_of_memory(error):
            raise
        return {"out_of_memory": str(error).splitlines()[0]}
    return {"env": name, "batch_size": batch_size, "steps_per_s": batch_size * sizes["num_steps"] / best,
            "compile_s": compile_s, "call_s": best, "device_bytes": needed}


def env_rows(names: list[str], batch_sizes, sizes: dict, budget: Budget, limit, done: dict) -> None:
    """Measure `names` at `batch_sizes` into `done` (name -> rows), skipping what would not fit."""
    for batch_size in batch_sizes:
        for name in names:
            rows = done.get(name, [])
            if rows and "out_of_memory" in rows[-1]:
                continue  # stopped at the memory limit
            last = rows[-1] if rows else None
            compile_guess = last["compile_s"] if last else max(
                [r["compile_s"] for rs in done.values() for r in rs if "compile_s" in r], default=FIRST_GUESS_S)
            call_guess = last["call_s"] * batch_size / last["batch_size"] if last else 0.0
            if not budget.fits(f"env {name} at {batch_size:,} envs",
                               compile_guess + (1 + sizes["repeats"]) * call_guess):
                continue
            row = env_row(name, batch_size, sizes, limit)
            if "out_of_memory" in row:
                row = {"env": name, "batch_size": batch_size, **row}
                print(f"{name:26s} batch {batch_size:9,d}: stopped at the memory limit ({row['out_of_memory']})",
                      flush=True)
            else:
                print(f"{name:26s} batch {batch_size:9,d}: {row['steps_per_s']:16,.0f} steps/s, "
                      f"compile {row['compile_s']:.1f} s", flush=True)
            done.setdefault(name, []).append(row)


def train_rows(sizes: dict, budget: Budget) -> list[dict]:
    """PPO and DQN on ShopperRec-v0, one seed and vmapped seeds, `train_steps` env steps per row."""
    rows = []
    for algo, seeds in TRAIN:
        seeds = sizes["seeds"][0] if seeds == 1 else sizes["seeds"][1]
        one = next((r for r in rows if r["algo"] == algo), None)  # same steps: run time about the same
        guess = 1.5 * one["compile_s"] + one["run_s"] if one else 2 * FIRST_GUESS_S
        if not budget.fits(f"train {algo} with {seeds} seeds", guess):
            continue
        rows.append(train_throughput.measure(algo, "ShopperRec-v0", seeds, sizes["train_steps"] // seeds))
        r = rows[-1]
        print(f"train {algo} seeds {seeds}: {r['steps_per_s']:,.0f} env steps/s "
              f"(compile {r['compile_s']:.1f} s, run {r['run_s']:.1f} s)", flush=True)
    return rows


def ope_row(sizes: dict, budget: Budget) -> dict | None:
    """`benchmarks.ope_speed`'s JAX half, small: one bootstrap of all seven estimators."""
    if not budget.fits("OPE", FIRST_GUESS_S):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.npz"
        ope_speed.synthetic_log(path, sizes["ope_rows"])
        timing = ope_speed.jax_half(path, sizes["ope_resamples"], separately=False)["timings"]
    row = {"rows": sizes["ope_rows"], "resamples": sizes["ope_resamples"], **timing["all seven, shared resamples"]}
    print(f"OPE: seven estimators, {row['resamples']} resamples of {row['rows']:,} rows: {row['run_s']:.2f} s "
          f"(compile {row['compile_s']:.1f} s)", flush=True)
    return row


def with_ratios(done: dict) -> list[dict]:
    """The measured env rows, each with its speed over CartPole-v1's at its batch size and its
    bytes of state per env."""
    reference = {r["batch_size"]: r["steps_per_s"] for r in done.get(benchmark.REFERENCE, []) if "steps_per_s" in r}
    rows = []
    for name, measured in done.items():
        memory = benchmark.memory_per_env(*benchmark.make_env(name))
        for r in measured:
            ratio = r["steps_per_s"] / reference[r["batch_size"]] \
                if "steps_per_s" in r and r["batch_size"] in reference else None
            rows.append({**r, **memory, "vs_cartpole": ratio})
    return rows


def target_lines(envs: list[dict], train: list[dict], devices: int) -> list[str]:
    """Each target of issue 13 beside what this run measured."""
    shopper = [f"{r['steps_per_s']:.3g} ({r['env']}, {r['batch_size']:,} envs)" for r in envs
               if r["env"].startswith("ShopperRec-v0") and r["batch_size"] >= 1_048_576 and "steps_per_s" in r]
    ppo = [r for r in train if r["algo"] == "ppo" and r["seeds"] > 1]
    return [f"- {TARGETS[0]}: " + ("; ".join(shopper) or "not measured (no row at 1M envs)"),
            f"- {TARGETS[1]}: " + (f"{ppo[0]['steps_per_s']:.3g} ({ppo[0]['seeds']} seeds)" if ppo else "not measured"),
            f"- {TARGETS[2]}: not measured here ({devices} device(s)); on 8 devices run "
            "`python -m benchmarks.env_throughput --devices 8 --batch-sizes 131072`"]


def write(result: dict, out: Path) -> None:
    def fmt(x, spec):
        return "-" if x is None else format(x, spec)

    lines = [f"# Accelerator suite: {result['device']}", "",
             f"jax {result['jax_version']}, gymnax {result['gymnax_version']}; budget {result['budget_s']:.0f} s, "
             f"used {result['elapsed_s']:.0f} s. Compiled code timed, compile seconds apart (AOT).", "",
             "## Targets (issue 13)", "", *result["targets"], "",
             "## Env throughput", "",
             "jit(scan(vmap(step))), random valid actions; x CartPole: steps/s over gymnax's CartPole-v1 at the "
             "same batch size in this run; gymnax's CartPole-v1 and BernoulliBandit-misc are gymnax's own envs.", "",
             "| env | batch | steps/s | x CartPole | compile s | state B/env | params B (shared) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["env"]:
        if "out_of_memory" in r:
            lines.append(f"| {r['env']} | {r['batch_size']:,} | memory limit: {r['out_of_memory']} | | | | |")
        else:
            lines.append(f"| {r['env']} | {r['batch_size']:,} | {r['steps_per_s']:,.0f} | {fmt(r['vs_cartpole'], '.3g')} | "
                         f"{r['compile_s']:.1f} | {r['state_bytes']:,} | {r['params_bytes']:,} |")
    lines += ["", "## Training throughput (ShopperRec-v0)", "",
              "| learner | seeds | env steps/s (all seeds) | compile s | run s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['algo']} | {r['seeds']} | {r['steps_per_s']:,.0f} | {r['compile_s']:.1f} | {r['run_s']:.1f} |"
              for r in result["train"]]
    ope = result["ope"]
    lines += ["", "## OPE (benchmarks/ope_speed.py, JAX half)", "",
              f"Seven estimators, one shared bootstrap of {ope['resamples']} resamples, {ope['rows']:,} rows: "
              f"{ope['run_s']:.2f} s (compile {ope['compile_s']:.1f} s)" if ope else "Skipped."]
    lines += ["", "## Skipped (budget)", "", *([f"- {s}" for s in result["skipped"]] or ["None."])]
    out.mkdir(parents=True, exist_ok=True)
    (out / "accelerator.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "accelerator.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=480.0, help="seconds for the whole suite")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU smoke test")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be positive, got {args.budget_s}")
    budget, sizes, limit = Budget(args.budget_s), TINY if args.tiny else FULL, memory_limit()
    shopper = [n for n in benchmark.bench_names() if n.startswith("ShopperRec-v0")]  # the targets' envs first
    names = [*GYMNAX_ENVS, *shopper, *(n for n in benchmark.bench_names() if n not in shopper)]
    print(f"{benchmark.device_name()}, jax {jax.__version__}, budget {args.budget_s:.0f} s", flush=True)
    done = {}
    env_rows(names, sizes["batch_sizes"][:1], sizes, budget, limit, done)
    train = train_rows(sizes, budget)
    ope = ope_row(sizes, budget)
    env_rows(names, sizes["batch_sizes"][1:], sizes, budget, limit, done)
    envs = with_ratios(done)
    result = {"device": benchmark.device_name(), "backend": jax.default_backend(), "jax_version": jax.__version__,
              "gymnax_version": importlib.metadata.version("gymnax"), "budget_s": args.budget_s,
              "elapsed_s": budget.elapsed(), "memory_limit_bytes": limit, "env": envs, "train": train, "ope": ope,
              "skipped": budget.skipped, "targets": target_lines(envs, train, jax.device_count())}
    write(result, args.out)
    print("\n".join(["", *result["targets"], *(f"skipped {s}" for s in budget.skipped)]))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
