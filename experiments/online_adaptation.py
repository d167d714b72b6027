"""Policies after a market change: frozen, online-updating and restarted PPO and drift-aware
bandits on DynamicPricing-v0 with a step change (`wrappers.Drift`), against the per-period oracle.

Per scenario (the env's drift presets "demand_shift" and "competitor_entry", revenue as the
reward): PPO is trained on the market before the change (training keys 0..seeds-1), then
deployed in `--markets` markets for `--periods` periods of PERIOD_DAYS days; the change comes at
period `--change`. "frozen" keeps the trained weights; "online" keeps training them (continual
PPO, learning rate held at the floor ONLINE_LR_FLOOR x the training lr); "restarted" is a fresh
PPO started at the change; the bandits (one per market, arms = grid prices) run from the start.
The per-period oracle charges the myopic optimum of the current params. Reported: revenue per
day around the change, cumulative regret to the oracle, and the periods each policy needs after
the change until its revenue reaches 95% of the oracle's (first period whose mean over this and
the next RECOVERY_SMOOTHING - 1 periods does). Deployment keys: 100 + seed. Writes
`results/online_adaptation.md` and `results/online_adaptation_<scenario>.png`.

    python -m experiments.online_adaptation [--quick]
"""

import sys
import time
from functools import partial

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.envs.pricing.dynamic_pricing import SETTINGS
from ecomrl_jax.envs.pricing.policies import myopic_price
from ecomrl_jax.learners import bandits, ppo
from ecomrl_jax.learners.loop import run_updates
from ecomrl_jax.wrappers import Drift, DriftParams, DriftSchedule, ScaleReward, drift_preset

SCENARIOS = ("demand_shift", "competitor_entry")
PERIOD_DAYS = 16  # days per period = PPO's rollout per update; also the deployment's episode
REWARD_SCALE = 50.0  # PPO sees revenue / 50 (about 1 a day at the stationary optimum)
REVENUE_RANGE = (0.0, 100.0)  # bandits' reward range: daily revenue, clipped for the Beta trick
TRAIN_LR = 3e-3
ONLINE_LR_FLOOR = 0.3  # online PPO's constant lr, as a fraction of the training lr
RECOVERY, RECOVERY_SMOOTHING = 0.95, 3
BANDITS = {
    "sliding-window UCB (300 days)": bandits.SlidingWindowUCB(c=0.1, window=300),
    "discounted TS (gamma=0.995)": bandits.DiscountedThompson(gamma=0.995),
}


def ppo_config(total_timesteps: int, markets: int, **overrides) -> ppo.PPOConfig:
    """pricing_rl's PPO for unlimited stock (gamma 0.5), with PERIOD_DAYS-day rollouts."""
    settings = dict(gamma=0.5, lr=TRAIN_LR, ent_coef=0.001, update_epochs=4, hidden_size=64)
    return ppo.PPOConfig(total_timesteps=total_timesteps, num_envs=markets,
                         num_steps=PERIOD_DAYS, **{**settings, **overrides})


def scenario_params(inner, scenario: str, change_day: float) -> DriftParams:
    base = inner.default_params
    base = base.replace(**SETTINGS["stationary"], reward_profit=0.0,
                        max_steps_in_episode=PERIOD_DAYS)
    return drift_preset(inner, scenario, DriftSchedule(start=change_day), base)


class _RevenueArms:
    """The pricing env as the bandit algorithms see it: one arm per grid price, bounded revenue."""

    def __init__(self, num_arms: int):
        self.num_arms, self.context_dim, self.is_contextual = num_arms, 1, False
        self.name = "DynamicPricing-v0 (price grid arms)"

    def reward_range(self, params):
        return jnp.float32(REVENUE_RANGE[0]), jnp.float32(REVENUE_RANGE[1])


def run_markets(env: Drift, params, keys, days: int, agent, select, update, per_market: bool):
    """Daily revenue (markets, days): each market (one key) runs `select(agent, key, obs, state)
    -> action` and `update(agent, key, action, reward) -> agent` for `days` days, from `agent`
    (one per market along axis 0 where `per_market`, else shared)."""

    def market(key, agent):
        k_reset, k_days = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def day(carry, key):
            obs, state, agent = carry
            k_select, k_update, k_env = jax.random.split(key, 3)
            action = select(agent, k_select, obs, state)
            obs, state, reward, *_ = env.step(k_env, state, action, params)
            return (obs, state, update(agent, k_update, action, reward)), reward

        return jax.lax.scan(day, (obs, state, agent), jax.random.split(k_days, days))[1]

    return jax.vmap(market, in_axes=(0, 0 if per_market else None))(keys, agent)


def per_period(daily: np.ndarray) -> np.ndarray:
    """(..., days) -> (..., periods) mean daily revenue of each period."""
    return daily.reshape(daily.shape[:-1] + (-1, PERIOD_DAYS)).mean(-1)


def deploy_ppo(config, env, params, init, keys):
    """(seeds, updates) mean daily revenue of PPO deployed from `init` (batched over seeds, or
    None: fresh weights) and training on as it goes."""

    def one(key, weights):
        learner = ppo.make_learner(config, env, params, init_network_params=weights)
        return run_updates(learner, learner.init(key), learner.num_updates)[1]["revenue"]

    return np.asarray(jax.jit(jax.vmap(one))(keys, init)) / PERIOD_DAYS


def run_scenario(scenario: str, args) -> dict:
    """Policy -> (seeds, periods) mean daily revenue; "oracle" included."""
    inner = ecomrl_jax.make("DynamicPricing-v0")[0]
    env = Drift(inner)
    change_day = float(args.change * PERIOD_DAYS)
    params = scenario_params(inner, scenario, change_day)
    env.validate_params(params)
    before = params.replace(target=params.base)
    after = params.replace(base=params.target)
    learner_env = ScaleReward(env, REWARD_SCALE)
    seeds = jnp.arange(args.seeds)
    train_keys = jax.vmap(jax.random.key)(seeds)
    deploy_keys = jax.vmap(jax.random.key)(100 + seeds)
    days = args.periods * PERIOD_DAYS
    start = time.perf_counter()

    train_cfg = ppo_config(args.train_steps, args.markets)
    trained = jax.jit(jax.vmap(ppo.make_train(train_cfg, learner_env, before)))(train_keys)[0]
    weights = ppo.network_params(trained)
    print(f"{scenario}: PPO trained before the change ({time.perf_counter() - start:.0f} s)",
          file=sys.stderr, flush=True)
    deploy_steps = args.periods * PERIOD_DAYS * args.markets
    online = ppo_config(deploy_steps, args.markets, lr=TRAIN_LR * ONLINE_LR_FLOOR, anneal_lr=False)
    restart_steps = (args.periods - args.change) * PERIOD_DAYS * args.markets
    restart = ppo_config(restart_steps, args.markets, anneal_lr=False)
    curves = {
        "online PPO": deploy_ppo(online, learner_env, params, weights, deploy_keys),
        "restarted PPO": np.concatenate([np.full((args.seeds, args.change), np.nan),
                                         deploy_ppo(restart, learner_env, after, None,
                                                    deploy_keys)], axis=1),
    }

    def market_keys(key):
        return jax.random.split(key, args.markets)

    def revenue(select, update, agent, per_market=False):
        """(seeds, periods) of agents batched over seeds (and markets where `per_market`)."""
        daily = jax.jit(jax.vmap(lambda k, a: run_markets(
            env, params, market_keys(k), days, a, select, update, per_market)))(deploy_keys, agent)
        return per_period(np.asarray(daily)).mean(1)

    frozen_policy = ppo.make_policy(train_cfg, env, weights)
    curves["frozen PPO"] = revenue(
        lambda w, k, obs, state: frozen_policy.func(w, k, obs, state, params),
        lambda w, *_: w, weights)
    arms = _RevenueArms(inner.num_prices)
    for name, algo in BANDITS.items():
        state = jax.vmap(lambda _: jax.vmap(lambda _: algo.init(arms, params))(
            jnp.arange(args.markets)))(seeds)
        curves[name] = revenue(
            lambda s, k, obs, _: algo.select(s, k, jnp.ones((inner.num_prices, 1))),
            lambda s, k, a, r: algo.update(s, k, a, None, r), state, per_market=True)
    curves["oracle"] = revenue(
        lambda a, k, obs, state: myopic_price(inner, state.env_state,
                                              Drift.params_at(state.clock, params))[1],
        lambda a, *_: a, seeds)
    print(f"{scenario}: deployed ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return curves


def recovery_periods(curve: np.ndarray, oracle: np.ndarray, change: int) -> int | None:
    """Periods after the change until the smoothed revenue reaches RECOVERY x the oracle's."""
    ratio = curve[change:] / oracle[change:]
    smooth = np.convolve(ratio, np.ones(RECOVERY_SMOOTHING) / RECOVERY_SMOOTHING, "valid")
    hits = np.flatnonzero(smooth >= RECOVERY)
    return int(hits[0]) if hits.size else None


def summarise(scenario: str, curves: dict, change: int) -> list[str]:
    oracle = curves["oracle"].mean(0)
    lines = [f"### {scenario}", "",
             "| policy | revenue/day before | revenue/day after | regret after (per market) "
             f"| periods to {RECOVERY:.0%} of oracle |", "|---|---|---|---|---|"]
    for name, c in curves.items():
        regret = (curves["oracle"][:, change:] - c[:, change:]).sum(1) * PERIOD_DAYS
        recovered = [recovery_periods(row, curves["oracle"][i], change) for i, row in enumerate(c)]
        rec = ("-" if name == "oracle" else "never" if any(r is None for r in recovered)
               else f"{np.mean(recovered):.1f} (seeds {min(recovered)}-{max(recovered)})")
        pre = harness.ci_cell(c[:, :change].mean(1), ".1f") if change and not np.isnan(
            c[:, :change]).any() else "-"
        lines.append(f"| {name} | {pre} | {harness.ci_cell(c[:, change:].mean(1), '.1f')} | "
                     f"{harness.ci_cell(regret, '.0f')} | {rec} |")
    return lines + [""] + [f"oracle revenue per day: before {oracle[:change].mean():.1f}, "
                           f"after {oracle[change:].mean():.1f}", ""]


def plot(scenario: str, curves: dict, change: int, path) -> None:
    fig = Figure(figsize=(11, 4.2))
    ax, ax_regret = fig.subplots(1, 2)
    periods = np.arange(curves["oracle"].shape[1])
    for i, (name, c) in enumerate(curves.items()):
        style = dict(color="k", ls="--") if name == "oracle" else dict(color=f"C{i}")
        ax.plot(periods, c.mean(0), label=name, **style)
        if name != "oracle":
            regret = np.nancumsum((curves["oracle"] - c)[:, change:], axis=1) * PERIOD_DAYS
            ax_regret.plot(periods[change:], regret.mean(0), label=name, **style)
    ax.axvline(change, color="grey", lw=0.8)
    ax.set(xlabel=f"period ({PERIOD_DAYS} days)", ylabel="revenue per day (mean over markets)",
           title=f"DynamicPricing-v0, {scenario} at period {change}")
    ax_regret.set(xlabel=f"period ({PERIOD_DAYS} days)", ylabel="cumulative regret per market",
                  title="regret to the per-period oracle after the change")
    ax.legend(fontsize=7)
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    """Run every scenario; returns scenario -> policy -> (seeds, periods) revenue per day."""
    parser = harness.make_parser(__doc__, "small sizes: finishes in a few minutes on 2 CPU cores")
    args = harness.parse_sizes(
        parser, argv,
        train_steps=harness.Size("PPO env steps before the change", 100_000, 400_000, PERIOD_DAYS),
        markets=harness.Size("markets deployed (PPO's num_envs)", 16, 64),
        periods=harness.Size(f"deployment periods of {PERIOD_DAYS} days", 60, 150, 2),
        change=harness.Size("period of the change", 20, 50))
    if args.change >= args.periods:
        parser.error(f"--change must be < --periods ({args.periods}), got {args.change}")
    lines = ["# Online adaptation to a market change (DynamicPricing-v0)", "",
             f"{args.seeds} seeds, {args.markets} markets each, {args.periods} periods of "
             f"{PERIOD_DAYS} days, change at period {args.change}; PPO trained "
             f"{args.train_steps:,} env steps before it. Intervals: 95% Student t over seeds.", ""]
    results = {}
    for scenario in SCENARIOS:
        results[scenario] = curves = run_scenario(scenario, args)
        lines += summarise(scenario, curves, args.change)
        plot(scenario, curves, args.change, args.out / f"online_adaptation_{scenario}.png")
    harness.write_table(lines, args.out / "online_adaptation.md")
    return results


if __name__ == "__main__":
    main()
