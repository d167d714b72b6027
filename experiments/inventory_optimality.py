"""PPO, DQN, tabular Q-learning, base-stock and (s, S) vs the exact optimum on Inventory-v0.

Six instances: lead time 0, 2, 4 with lost sales and with backorders, default params
otherwise (Poisson(4) demand, fixed order cost 5, `max_order` 10). The exact optimum is the
average profit per period from relative value iteration (`envs.inventory.policies.value_iteration`).
Base-stock and (s, S) are tuned by `grid_search` (key 1). PPO and DQN (discrete order
quantity) train with `vmap` over seeds (keys 0..seeds-1) on a stationary view of the env:
the observation keeps net inventory and pipeline (time and season columns dropped, the
demand is stationary) and the reward is `(profit - REWARD_SHIFT) / REWARD_SCALE`. Tabular
Q-learning sees the same reward and, as its observation, the index of that state in the value
iteration table; it runs at L=0 and 2 only, as the L=4 table is too big (see TABULAR_CONFIGS).

Evaluation follows the steady-state convention of docs/envs/inventory.md: every policy runs
the same episodes (key 2, common random numbers) and its average cost per period
(= -profit) is taken over steps [WARMUP, WARMUP + window); the gap to the optimum is
`(cost - optimal cost) / |optimal cost|` in %, the optimal cost being negative (profit ~15 a
period). Intervals (95%, Student t) are over seeds for learners (each seed's mean over
episodes) and over episodes for fixed policies. Writes `results/inventory_optimality.md`
and `results/inventory_optimality.png`.

    python -m experiments.inventory_optimality [--quick]
"""

import time
from pathlib import Path

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.envs.inventory import policies as policies
from ecomrl_jax.evaluation import confidence_interval, evaluate
from ecomrl_jax.learners import dqn, ppo, tabular

WARMUP = 200  # steps dropped before the steady-state window
# Training episode length. Once a workaround for learners that treated truncation as
# termination; they now bootstrap a truncated episode from V(final observation), so it is no
# longer needed for correct targets. It stays because the env default (100) would change the
# training setup: five times as many resets to the initial inventory and an empty pipeline, so
# less of the training data near the steady state the evaluation window measures, and
# different published numbers.
TRAIN_HORIZON = 500
REWARD_SHIFT, REWARD_SCALE = 15.0, 5.0  # learners see (profit - 15) / 5: O(1) values
GOAL_GAP = 3.0  # %: the target for the best learner
# ent_coef 0.01 and 8 epochs: with 0.003 and 4 epochs one PPO seed in three stalled ~25% off at
# L=2 lost sales; these settings came within 2% on every seed and instance at 1M steps.
PPO_CONFIG = ppo.PPOConfig(lr=1e-3, gamma=0.99, gae_lambda=0.95, ent_coef=0.01, num_envs=128,
                           num_steps=32, update_epochs=8, num_minibatches=4, hidden_size=64)
DQN_CONFIG = dqn.DQNConfig(gamma=0.99, lr=5e-4, num_envs=16, learning_starts=2_000,
                           epsilon_end=0.02, hidden_size=64)
# Tabular Q-learning per lead time, on StateIndexView. gamma 0.95 at L=2: with 0.97 or 0.99 the
# 4,961-state (lost sales) table stayed 5-25% off after 10-20M steps. None at L=4: 41 x 11^4 = 600k
# states (1M with backorders) x 11 orders; 20M steps tried every order in only 81k states and the
# greedy policy was ~50% off the optimum (each pair needs ~1 / alpha updates: billions of steps).
TABULAR_CONFIGS = {
    0: tabular.QLearningConfig(alpha=0.01, gamma=0.99, epsilon=1.0, epsilon_final=0.01,
                               epsilon_schedule="linear", num_envs=64, num_steps=25,
                               total_timesteps=10_000_000),
    2: tabular.QLearningConfig(alpha=0.02, gamma=0.95, epsilon=1.0, epsilon_final=0.01,
                               epsilon_schedule="linear", num_envs=64, num_steps=25,
                               total_timesteps=20_000_000),
}


class StationaryView(GymnaxWrapper):
    """Inventory-v0 for learners: observation = [net inventory, pipeline...] / max_order and
    reward = (profit - shift) / scale. Demand and dynamics are the wrapped env's (same keys,
    same episodes); `info` is unchanged but for its `final_observation`, so profit is read from it."""

    def __init__(self, env, shift: float = REWARD_SHIFT, scale: float = REWARD_SCALE):
        super().__init__(env)
        self.size, self.shift, self.scale = env.lead_time + 1, shift, scale

    def observe(self, obs):
        """The wrapped observation without its time and season columns."""
        return obs[:self.size]

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self.observe(obs), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        info = {**info, "final_observation": self.observe(info["final_observation"])}
        return (self.observe(obs), state, (reward - self.shift) / self.scale, terminated, truncated,
                info)

    def observation_space(self, params=None):
        space = self._env.observation_space(params)
        return spaces.Box(space.low[:self.size], space.high[:self.size], (self.size,), jnp.float32)


class StateIndexView(StationaryView):
    """StationaryView for tabular learners: the observation is the flat index of (net inventory,
    pipeline) in the `value_iteration` table `optimum.policy`, net inventory clipped to its levels
    as `table_policy` does, so Q-table rows and VI states are the same states."""

    def __init__(self, env, optimum: policies.ValueIterationResult, **kwargs):
        super().__init__(env, **kwargs)
        self.shape, self.min_level = optimum.policy.shape, optimum.min_level

    def observe(self, obs):
        units = jnp.round(obs[:self.size] * self._env.max_order).astype(jnp.int32)
        level = jnp.clip(units[0] - self.min_level, 0, self.shape[0] - 1)
        return jnp.ravel_multi_index((level, *units[1:]), self.shape, mode="clip")

    def observation_space(self, params=None):
        return spaces.Discrete(int(np.prod(self.shape)))


def window_costs(env, params, policy, key, episodes: int, window: int) -> np.ndarray:
    """Per-episode average cost per period over steps [WARMUP, WARMUP + window): the
    difference of two runs over the same episodes (same keys, so the first WARMUP steps agree)."""
    def cost(steps):
        out = evaluate(env, params.replace(max_steps_in_episode=WARMUP + window), policy, key,
                       episodes, steps)
        profit = out["revenue"] - out["ordering_cost"] - out["holding_cost"] - out["shortage_cost"]
        return -np.asarray(profit, np.float64)

    return (cost(WARMUP + window) - cost(WARMUP)) / window


def run_instance(lead_time, backorders, learners, num_seeds, search_episodes, episodes, window,
                 quiet=False):
    """Rows {policy: (cost interval, gap interval, note)} for one instance, plus its optimum."""
    env, params = ecomrl_jax.make("Inventory-v0", lead_time=lead_time)
    params = params.replace(backorders=backorders)
    optimum = policies.value_iteration(env, params)
    best_cost = -optimum.gain
    key_search, key_eval = jax.random.key(1), jax.random.key(2)

    levels = np.arange(0, 41, dtype=np.float32)
    base = policies.grid_search(env, params, policies.base_stock_policy, (levels,), key_search,
                                search_episodes, WARMUP + window)
    pairs = [(s, s + d) for s in range(-5, 36) for d in range(1, 21)]
    s_s = policies.grid_search(env, params, policies.s_S_policy, tuple(np.array(pairs, np.float32).T),
                               key_search, search_episodes, WARMUP + window)
    fixed = {"VI policy (optimal)": (policies.table_policy(env, optimum), ""),
             "base-stock": (policies.base_stock_policy(env, *base.best), f"S = {base.best[0]:.0f}"),
             "(s, S)": (policies.s_S_policy(env, *s_s.best),
                        f"(s, S) = ({s_s.best[0]:.0f}, {s_s.best[1]:.0f})")}

    def gap(costs):
        return 100.0 * (costs - best_cost) / abs(best_cost)

    rows = {}
    for name, (policy, note) in fixed.items():
        costs = window_costs(env, params, policy, key_eval, episodes, window)
        rows[name] = (confidence_interval(costs), confidence_interval(gap(costs)), note)
    train_params = params.replace(max_steps_in_episode=TRAIN_HORIZON)
    for name, (module, config) in learners.items():
        view = StationaryView(env)
        if module is tabular:  # configs by lead time; none where the table is too big
            if lead_time not in config:
                continue
            config, view = config[lead_time], StateIndexView(env, optimum)
        t = harness.train_seeds(module, config, view, train_params, num_seeds, label=name,
                                quiet=quiet)
        costs = np.array([window_costs(view, params, p, key_eval, episodes, window).mean()
                          for p in t.policies])
        rows[name] = (confidence_interval(costs), confidence_interval(gap(costs)),
                      f"{config.total_timesteps:,} steps/seed, compile {t.compile_s:.0f} s, "
                      f"run {t.run_s:.0f} s")
    return best_cost, optimum, rows


def run(lead_times, learners, num_seeds, search_episodes, episodes, window, out: Path,
        quiet: bool = False) -> dict:
    start = time.perf_counter()
    results = {}
    for backorders in (False, True):
        for lead_time in lead_times:
            name = f"L={lead_time}, {'backorders' if backorders else 'lost sales'}"
            results[name] = run_instance(lead_time, backorders, learners, num_seeds,
                                         search_episodes, episodes, window, quiet)
            print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
    write_table(results, learners, num_seeds, search_episodes, episodes, window,
                time.perf_counter() - start, out / "inventory_optimality.md")
    plot(results, out / "inventory_optimality.png")
    return results


def write_table(results, learners, num_seeds, search_episodes, episodes, window, seconds, path):
    lines = [
        "# Inventory-v0: learners and classic policies against the exact optimum", "",
        f"Default params (Poisson(4) demand, fixed cost 5, max_order 10). Optimum: relative value "
        f"iteration (exact average profit). Base-stock (S in 0..40) and (s, S) (-5 <= s < S <= s + 20) "
        f"tuned by grid search on {search_episodes} episodes x {WARMUP + window} steps (key 1). "
        f"Learners: {num_seeds} seeds (keys 0..{num_seeds - 1}), vmapped, greedy at evaluation; "
        f"PPO {PPO_CONFIG.num_envs} envs x {PPO_CONFIG.num_steps} steps, lr {PPO_CONFIG.lr}, "
        f"gamma {PPO_CONFIG.gamma}, entropy {PPO_CONFIG.ent_coef}, {PPO_CONFIG.update_epochs} epochs, "
        f"hidden {PPO_CONFIG.hidden_size}; DQN {DQN_CONFIG.num_envs} envs, lr {DQN_CONFIG.lr}, "
        f"gamma {DQN_CONFIG.gamma}; tabular Q-learning on the value-iteration state index, "
        + ", ".join(f"L={lead_time}: alpha {c.alpha}, gamma {c.gamma}"
                    for lead_time, c in TABULAR_CONFIGS.items())
        + f", epsilon 1 -> 0.01 (none at other lead times: at L=4, 600k-1M states x 11 orders is "
        f"too big a table to learn in the budget); reward (profit - {REWARD_SHIFT:g}) / {REWARD_SCALE:g}, "
        f"training episodes of {TRAIN_HORIZON} steps.", "",
        f"Evaluation: {episodes} episodes (key 2, the same for every policy), average cost per period "
        f"(= -profit) over steps {WARMUP}..{WARMUP + window}. Gap = (cost - optimal cost) / "
        f"|optimal cost| in % (the optimal cost is negative: a profit of about 15 a period). "
        f"Mean [95% t-interval] over seeds for learners, over episodes for fixed policies. "
        f"Total run time {seconds:.0f} s.", "",
        "| instance | policy | cost per period | gap to optimum (%) | notes |",
        "|---|---|---|---|---|",
    ]
    met = []
    for instance, (best_cost, optimum, rows) in results.items():
        lines.append(f"| {instance} | optimum (VI, exact) | {best_cost:.3f} | 0 | span {optimum.span:.1e} |")
        for name, (cost, gap, note) in rows.items():
            lines.append(f"| {instance} | {name} | {harness.cell(cost)} | "
                         f"{harness.cell(gap, '.2f')} | {note} |")
        best = min((rows[name][1][0], name) for name in learners if name in rows)
        met.append((instance, best))
    verdict = all(gap <= GOAL_GAP for _, (gap, _) in met)
    lines += ["", f"Goal (best learner's mean gap within {GOAL_GAP:g}% of the optimum on every instance): "
              f"{'met' if verdict else 'NOT met'}. Best learner per instance: "
              + "; ".join(f"{inst}: {name} {gap:+.2f}%" for inst, (gap, name) in met) + "."]
    harness.write_table(lines, path)


def plot(results, path: Path) -> None:
    """Grouped bars: gap to the optimum per instance and policy, with the 95% intervals."""
    names = list(dict.fromkeys(name for _, _, rows in results.values() for name in rows))
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        gaps = np.array([rows[name][1] if name in rows else (np.nan,) * 3
                         for _, _, rows in results.values()])
        x = np.arange(len(results)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, gaps[:, 0], width, yerr=[gaps[:, 0] - gaps[:, 1], gaps[:, 2] - gaps[:, 0]],
               capsize=2, label=name)
    ax.axhline(GOAL_GAP, color="k", ls="--", lw=1, label=f"goal {GOAL_GAP:g}%")
    ax.set_xticks(np.arange(len(results)), list(results), fontsize=8)
    ax.set_ylabel("gap to optimal cost (% of |optimum|)")
    ax.set_title("Inventory-v0: average cost per period vs the exact optimum")
    ax.legend(fontsize=8)
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    parser = harness.make_parser(__doc__, "3 seeds, shorter runs")
    parser.add_argument("--tabular-steps", type=int, default=None,
                        help="tabular Q-learning env steps per seed (0: none; default per lead time)")
    parser.add_argument("--lead-times", type=int, nargs="+", default=[0, 2, 4])
    args = harness.parse_sizes(
        parser, argv, total_steps=harness.Size("PPO env steps per seed", 1_000_000, 3_000_000),
        dqn_steps=harness.Size("DQN env steps per seed (0: no DQN)", 500_000, 1_000_000, 0),
        episodes=harness.Size("evaluation episodes", 64, 256, minimum=2),
        window=harness.Size("steady-state steps per episode", 500, 2000))
    if (args.tabular_steps or 0) < 0:
        parser.error(f"--tabular-steps must be >= 0, got {args.tabular_steps}")
    learners = {"PPO": (ppo, PPO_CONFIG.replace(total_timesteps=args.total_steps))}
    if args.dqn_steps:
        learners["DQN"] = (dqn, DQN_CONFIG.replace(total_timesteps=args.dqn_steps))
    if args.tabular_steps != 0:
        learners["Q-learning (tabular)"] = (tabular, {
            lead_time: c.replace(total_timesteps=args.tabular_steps or c.total_timesteps)
            for lead_time, c in TABULAR_CONFIGS.items()})
    return run(args.lead_times, learners, args.seeds, 32 if args.quick else 64, args.episodes,
               args.window, args.out, args.quiet)


if __name__ == "__main__":
    main()
