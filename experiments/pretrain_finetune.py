"""Pre-training then RL fine-tuning vs RL from scratch: PPO with a transformer on ShopperRec-v0.

A logged dataset comes from an epsilon-greedy myopic oracle (epsilon 0.3, key 0); a tiny
transformer actor-critic is pre-trained on it by behaviour cloning plus next-click prediction
(`learners.pretrain`, key 1), once. PPO with the same transformer then trains from scratch and
from the pre-trained params, `vmap`ped over seeds (keys 0..seeds-1, the same for both arms).
Return vs env steps is the training-episode return, mean over seeds with a 95% Student-t band;
the final greedy policies are evaluated on common episodes (key 1000). Writes
`results/pretrain_finetune.md` and `results/pretrain_finetune.png`.

    python -m experiments.pretrain_finetune [--quick]
"""

import time
from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import numpy as np
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.envs.recommendation import logs as shopper_logs
from ecomrl_jax.envs.recommendation import policies as baselines
from ecomrl_jax.evaluation import confidence_interval, evaluate
from ecomrl_jax.learners import ppo, pretrain

EPSILON = 0.3
NETWORK = "transformer-tiny"


def run(num_seeds: int, total_timesteps: int, log_envs: int, log_steps: int, num_epochs: int,
        eval_episodes: int, out: Path, quiet: bool = False) -> dict:
    env, params = ecomrl_jax.make("ShopperRec-v0")
    oracle = baselines.myopic_oracle(env, params)
    behaviour = shopper_logs.epsilon_policy(oracle, env, params, EPSILON)

    start = time.perf_counter()
    logs = jax.block_until_ready(jax.jit(lambda k: shopper_logs.collect_logs(
        env, params, behaviour, k, log_envs, log_steps))(jax.random.key(0)))
    log_s = time.perf_counter() - start
    pre_config = pretrain.PretrainConfig(num_epochs=num_epochs, lr=3e-3, network=NETWORK)
    start = time.perf_counter()
    init_params, pre_metrics = jax.block_until_ready(
        jax.jit(pretrain.make_pretrain(pre_config, env, params))(jax.random.key(1), logs))
    pretrain_s = time.perf_counter() - start

    config = ppo.PPOConfig(num_envs=64, num_steps=16, total_timesteps=total_timesteps,
                           network=NETWORK)
    arms = {"from scratch": None, "pre-trained + fine-tuned": init_params}
    trained = {name: harness.train_seeds(ppo, config, env, params, num_seeds, label=name,
                                         quiet=quiet, init_network_params=init)
               for name, init in arms.items()}
    curves = {name: t.curves["episode_return"] for name, t in trained.items()}
    env_steps = trained["from scratch"].curves["env_steps"][0]

    def greedy_return(policy, seed):
        return float(np.mean(evaluate(env, params, policy, jax.random.key(1000 + seed),
                                      eval_episodes)["return"]))

    pretrained = ppo.make_policy(config, env, init_params, deterministic=True)
    evaluated = {"pre-trained, no fine-tuning": [greedy_return(pretrained, 0)] * num_seeds}
    for name, t in trained.items():
        evaluated[name] = [greedy_return(policy, s) for s, policy in enumerate(t.policies)]
    references = {name: float(np.mean(evaluate(env, params, policy, jax.random.key(1000),
                                               eval_episodes)["return"]))
                  for name, policy in (("myopic oracle", oracle), ("logging policy", behaviour))}
    facts = dict(num_seeds=num_seeds, total_timesteps=total_timesteps, dataset=logs.clicked.shape[0],
                 clicks=int(np.sum(logs.clicked)), log_s=log_s, pretrain_s=pretrain_s,
                 pretrain_steps=len(pre_metrics["loss_bc"]), trained=trained, config=config,
                 pre_config=pre_config, eval_episodes=eval_episodes,
                 bc=(float(np.mean(pre_metrics["loss_bc"][:10])), float(np.mean(pre_metrics["loss_bc"][-10:]))),
                 accuracy=float(np.mean(pre_metrics["accuracy"][-10:])))
    write_table(curves, env_steps, evaluated, references, facts, out / "pretrain_finetune.md")
    plot(curves, env_steps, references, out / "pretrain_finetune.png")
    return {"curves": curves, "evaluated": evaluated, "references": references}


def write_table(curves, env_steps, evaluated, references, facts, path: Path) -> None:
    num_updates = len(env_steps)
    budgets = sorted({0, num_updates // 4 - 1, num_updates // 2 - 1, num_updates - 1} - {-1})
    window = max(1, num_updates // 20)
    names = list(curves)
    lines = [
        "# Pre-training then fine-tuning vs PPO from scratch (ShopperRec-v0, transformer-tiny)", "",
        f"Logged data: {facts['dataset']:,} steps ({facts['clicks']:,} with a known click) of an "
        f"epsilon-greedy myopic oracle (epsilon {EPSILON}, key 0), collected in {facts['log_s']:.1f} s. "
        f"Pre-training: {facts['pretrain_steps']} Adam steps of {facts['pre_config'].batch_size} "
        f"({facts['pre_config'].num_epochs} epochs, key 1) in {facts['pretrain_s']:.1f} s wall "
        f"(compile included, CPU); BC loss {facts['bc'][0]:.2f} -> {facts['bc'][1]:.2f}, "
        f"minibatch agreement with the logged action {facts['accuracy']:.0%}.", "",
        f"PPO: {facts['total_timesteps']:,} env steps per seed ({facts['config'].num_envs} envs x "
        f"{facts['config'].num_steps} steps per update), {facts['num_seeds']} seeds (keys "
        f"0..{facts['num_seeds'] - 1}) vmapped; "
        + ", ".join(f"{n}: compile {t.compile_s:.0f} s, run {t.run_s:.0f} s"
                    for n, t in facts["trained"].items()) + ".", "",
        f"Training-episode return at an env-step budget (mean of the {window} updates up to it), "
        "mean over seeds [95% t-interval]:", "",
        "| env steps | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for b in budgets:
        cells = [harness.ci_cell(curves[n][:, max(0, b + 1 - window):b + 1].mean(axis=1), ".2f")
                 for n in names]
        lines.append(f"| {int(env_steps[b]):,} | " + " | ".join(cells) + " |")
    lines += ["", f"Greedy return on {facts['eval_episodes']} common episodes per seed (key 1000 + "
              "seed), mean over seeds [95% t-interval]:", "", "| policy | return |", "|---|---|"]
    for name, values in evaluated.items():
        cell = (f"{values[0]:.2f} (one pre-trained model)" if len(set(values)) == 1
                else harness.ci_cell(values, ".2f"))
        lines.append(f"| {name} | {cell} |")
    for name, value in references.items():
        lines.append(f"| {name} (reference, key 1000) | {value:.2f} |")
    harness.write_table(lines, path)


def plot(curves, env_steps, references, path: Path) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for i, (name, returns) in enumerate(curves.items()):
        mean, low, high = np.array([confidence_interval(returns[:, u]) for u in range(returns.shape[1])]).T
        ax.plot(env_steps, mean, color=f"C{i}", label=f"{name} (mean over {returns.shape[0]} seeds)")
        ax.fill_between(env_steps, low, high, color=f"C{i}", alpha=0.25)
    for i, (name, value) in enumerate(references.items()):
        ax.axhline(value, color=f"C{i + 2}", ls="--", label=name)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training episode return (95% band)")
    ax.set_title("ShopperRec-v0: PPO + transformer, scratch vs pre-trained")
    ax.legend()
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds, short runs (CPU, minutes)")
    args = harness.parse_sizes(
        parser, argv,
        total_steps=harness.Size("env steps per seed (one update: 1024)", 32_768, 1_000_000, 1024),
        episodes=harness.Size("evaluation episodes per seed", 200, 1000))
    log_envs, log_steps, epochs = (64, 128, 6) if args.quick else (256, 256, 10)
    return run(args.seeds, args.total_steps, log_envs, log_steps, epochs, args.episodes, args.out,
               args.quiet)


if __name__ == "__main__":
    main()
