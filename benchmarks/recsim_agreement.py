"""InterestEvolution-v0 against RecSim 0.2.4's own interest-evolution env, under the same fixed
policies: distributions of episode return (clicked watch time), length and clicks.

Policies: a uniformly random slate of distinct candidates, the first `slate_size` candidates, and
the oracle showing the candidates of highest hidden quality (best first). Each side runs
`--episodes` episodes per policy to the end of the time budget; per metric the table gives both
means with 95% t intervals, whether each mean lies in the other's interval, and the p-values of
the two-sample Kolmogorov-Smirnov and Mann-Whitney U tests (scipy). Also times RecSim's numpy env
(steps/s under the random policy, one env, policy included; the port's throughput is
`benchmarks.env_throughput`'s). RecSim is no dependency of ecomrl_jax: its half runs in a
subprocess of `--recsim-python`, a Python with `pip install --no-deps recsim==0.2.4` plus numpy,
gym and absl-py; its TensorFlow, dopamine and gin imports are stubbed (`import_recsim`).
Writes `<out>/recsim_agreement.json` and `.md`.

    python -m benchmarks.recsim_agreement --recsim-python /work/scratch/recsimvenv/bin/python \\
        [--episodes 2000] [--num-candidates 10] [--slate-size 2] [--seed 0]
"""

import argparse
import json
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

POLICIES = ("random", "first_k", "quality_oracle")
METRICS = ("return", "length", "clicks")
ALPHA = 0.01  # the level at which a two-sample test counts as a rejection


def import_recsim():
    """`recsim.environments.interest_evolution` with its TensorFlow-only imports stubbed: the
    env is numpy; `gin.configurable` becomes the identity."""
    for name in ("tensorflow", "dopamine", "gin", "gin.tf", "recsim.simulator.runner_lib"):
        sys.modules.setdefault(name, types.ModuleType(name))

    def configurable(fn=None, **kwargs):
        return fn if fn is not None else (lambda f: f)

    sys.modules["gin"].configurable = sys.modules["gin.tf"].configurable = configurable
    sys.modules["gin"].tf = sys.modules["gin.tf"]
    from recsim.environments import interest_evolution
    return interest_evolution


def recsim_half(episodes: int, num_candidates: int, slate_size: int, seed: int) -> dict:
    """Per-episode metrics of RecSim's env under each policy, and its steps/s (random policy)."""
    ie = import_recsim()
    np.random.seed(seed)  # RecSim draws choices and interest flips from numpy's global RNG
    rng = np.random.RandomState(seed + 1)  # the random policy's own stream
    env = ie.create_environment({"num_candidates": num_candidates, "slate_size": slate_size,
                                 "resample_documents": True, "seed": seed})

    def slate(policy):
        if policy == "random":
            return rng.choice(num_candidates, slate_size, replace=False)
        if policy == "first_k":
            return np.arange(slate_size)
        docs = env.environment.candidate_set.get_all_documents()  # in observation order
        return np.argsort([-d.quality for d in docs], kind="stable")[:slate_size]

    out = {}
    for policy in POLICIES:
        metrics = {name: [] for name in METRICS}
        start, steps = time.perf_counter(), 0
        for _ in range(episodes):
            env.reset()
            total = clicks = length = 0.0
            done = False
            while not done:
                obs, reward, done, _ = env.step(slate(policy))
                total += reward
                length += 1
                clicks += sum(response["click"] for response in obs["response"])
            for name, value in zip(METRICS, (total, length, clicks)):
                metrics[name].append(value)
            steps += int(length)
        out[policy] = {**metrics, "steps_per_s": steps / (time.perf_counter() - start)}
    return out


def port_half(episodes: int, num_candidates: int, slate_size: int, seed: int) -> dict:
    """Per-episode metrics of InterestEvolution-v0 under each policy (`evaluate`, one jit each)."""
    import jax
    import jax.numpy as jnp

    import ecomrl_jax
    from ecomrl_jax.envs.recommendation.policies import quality_oracle, random_policy
    from ecomrl_jax.evaluation import evaluate

    env, params = ecomrl_jax.make("InterestEvolution-v0", num_candidates=num_candidates,
                                  slate_size=slate_size)
    first_k = jnp.arange(slate_size) if slate_size > 1 else jnp.int32(0)
    policies = {"random": random_policy(env, params),
                "first_k": lambda key, obs, state, p: first_k,
                "quality_oracle": quality_oracle(env, params)}
    out = {}
    for i, (policy, fn) in enumerate(policies.items()):
        key = jax.random.fold_in(jax.random.key(seed), i)
        totals = evaluate(env, params, fn, key, episodes)
        lengths = np.asarray(totals["length"])
        if np.any(lengths >= params.max_steps_in_episode):
            raise RuntimeError(f"{policy}: an episode reached max_steps_in_episode; the comparison "
                               "needs sessions ended by the budget")
        out[policy] = {name: np.asarray(totals[name], np.float64).tolist() for name in METRICS}
    return out


def compare(recsim: dict, port: dict) -> dict:
    """Per policy and metric: both means with 95% intervals, cross-containment and p-values."""
    from scipy import stats

    from ecomrl_jax.evaluation import confidence_interval

    rows = {}
    for policy in POLICIES:
        for metric in METRICS:
            a, b = np.asarray(recsim[policy][metric]), np.asarray(port[policy][metric])
            (ma, la, ha), (mb, lb, hb) = confidence_interval(a), confidence_interval(b)
            rows[f"{policy} {metric}"] = {
                "recsim": [ma, la, ha], "port": [mb, lb, hb],
                "means_in_each_others_interval": bool(la <= mb <= ha and lb <= ma <= hb),
                "ks_p": float(stats.ks_2samp(a, b).pvalue),
                "mann_whitney_p": float(stats.mannwhitneyu(a, b).pvalue)}
    return rows


def to_markdown(result: dict) -> str:
    rows = result["comparison"]

    def longest(side):
        return max(max(result[side][p]["length"]) for p in POLICIES)

    lines = [f"# InterestEvolution-v0 vs RecSim 0.2.4 interest_evolution "
             f"({result['num_candidates']} candidates, slate {result['slate_size']}, "
             f"{result['episodes']} episodes per policy and side, seed {result['seed']})", "",
             "| policy, metric | RecSim mean [95% CI] | port mean [95% CI] | in each other's CI | "
             "KS p | Mann-Whitney p |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        (ma, la, ha), (mb, lb, hb) = row["recsim"], row["port"]
        lines.append(f"| {name} | {ma:.2f} [{la:.2f}, {ha:.2f}] | {mb:.2f} [{lb:.2f}, {hb:.2f}] | "
                     f"{'yes' if row['means_in_each_others_interval'] else 'no'} | "
                     f"{row['ks_p']:.3f} | {row['mann_whitney_p']:.3f} |")
    rejected = [n for n, r in rows.items() if min(r["ks_p"], r["mann_whitney_p"]) < ALPHA]
    outside = [n for n, r in rows.items() if not r["means_in_each_others_interval"]]
    lines += ["", f"Tests rejecting at {ALPHA:g}: {', '.join(rejected) or 'none'}. "
              f"Means outside each other's interval: {', '.join(outside) or 'none'} (with equal "
              "episode counts and identical distributions each mean lies in the other's 95% "
              "interval with probability about 0.83 per metric: |z| < 1.96 / sqrt(2)).",
              f"Longest episode: RecSim {longest('recsim'):.0f}, port {longest('port'):.0f} steps.", "",
              f"Steps/s: RecSim numpy env {result['recsim']['random']['steps_per_s']:,.0f} "
              f"(one env, random policy, {result['cpu']}); the port's are measured by "
              "`python -m benchmarks.env_throughput --envs InterestEvolution-v0`."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recsim-python", required=True, help="a Python with recsim 0.2.4")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--num-candidates", type=int, default=10)
    parser.add_argument("--slate-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--recsim-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = (args.episodes, args.num_candidates, args.slate_size, args.seed)
    if args.recsim_worker:  # the RecSim half, inside RecSim's Python
        print(json.dumps(recsim_half(*sizes)))
        return {}
    worker = [args.recsim_python, __file__, "--recsim-worker", "--recsim-python", "-",
              "--episodes", str(args.episodes), "--num-candidates", str(args.num_candidates),
              "--slate-size", str(args.slate_size), "--seed", str(args.seed)]
    done = subprocess.run(worker, capture_output=True, text=True, check=True)
    recsim = json.loads(done.stdout.strip().splitlines()[-1])
    port = port_half(*sizes)
    result = {"episodes": args.episodes, "num_candidates": args.num_candidates,
              "slate_size": args.slate_size, "seed": args.seed,
              "cpu": platform.processor() or platform.machine(), "recsim": recsim, "port": port,
              "comparison": compare(recsim, port)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recsim_agreement.json").write_text(json.dumps(result) + "\n")
    (args.out / "recsim_agreement.md").write_text(to_markdown(result) + "\n")
    print(to_markdown(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
