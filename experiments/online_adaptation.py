"""Policies after a market change: frozen, online-updating (continual) and restarted PPO and DQN,
and drift-aware bandits, against the per-period oracle, in five step-change scenarios.

Scenarios (`wrappers.Drift` with the envs' drift presets, the change at period `--change`):
DynamicPricing-v0 "demand_shift" and "competitor_entry" (reward: revenue), ShopperRec-v0
"interest_shift" and "new_items" (reward: clicks + purchases), Inventory-v0 "demand_jump"
(reward: profit). PPO and DQN are trained on the market before the change (training keys
0..seeds-1), then deployed in `--markets` markets (their num_envs) for `--periods` periods.
Policies: "frozen" keeps the trained weights (PPO samples its policy, DQN is greedy); "online"
keeps training them (`learners.continual`): PPO with the lr held at a floor (as before this
experiment's fix, training's ent_coef), PPO with the lr and ent_coef held at floors, PPO whose
lr schedule restarts at the change (annealing from the training lr to the floor; ent_coef at its
floor), DQN with epsilon and lr held at floors, DQN whose epsilon and lr schedules restart at the
change; "scratch PPO" is a fresh PPO started at the change (given the change time); the bandits
(pricing only, the one bandit-like env: one arm per grid price, one bandit per market) run from
the start. Oracle per period: pricing, the myopic optimum of the current params (exact: unlimited
stock, no reference effect); ShopperRec, the myopic oracle on the hidden interest and current
params (the strongest per-step rule, not the long-run optimum: it ignores patience); Inventory,
the value-iteration optimum of the current params (exact for the stationary average; episodes here
restart every 100 periods). Reported per policy: reward per step around the change, cumulative
regret to the oracle after it, and the periods after the change until the reward reaches 95% of
the oracle's (first period whose mean over this and the next RECOVERY_SMOOTHING - 1 periods
does). Deployment keys: 100 + seed. Writes `results/online_adaptation.md` and
`results/online_adaptation_<scenario>.png`.

    python -m experiments.online_adaptation [--quick]
"""

import sys
import time
from typing import NamedTuple

from experiments import _harness as harness  # first: sets the XLA CPU flag before jax starts

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import ecomrl_jax
from ecomrl_jax.envs.inventory.policies import table_policy, value_iteration
from ecomrl_jax.envs.pricing.dynamic_pricing import SETTINGS
from ecomrl_jax.envs.pricing.policies import myopic_price
from ecomrl_jax.envs.recommendation.policies import myopic_oracle
from ecomrl_jax.learners import bandits, continual, dqn, ppo
from ecomrl_jax.learners.loop import run_updates
from ecomrl_jax.wrappers import Drift, DriftSchedule, ScaleReward, drift_preset

PERIOD_STEPS = 16  # env steps per period = PPO's rollout per update; a pricing episode
DQN_UPDATES_PER_PERIOD = 4  # DQN's train_frequency is PERIOD_STEPS / this
LR_FLOOR = 0.3  # the online learners' lr floor, as a fraction of the training lr
EPSILON_FLOOR, EPSILON_RESTART = 0.05, 0.5  # online DQN's epsilon: held, and restarted from
RECOVERY, RECOVERY_SMOOTHING = 0.95, 3
REVENUE_RANGE = (0.0, 100.0)  # bandits' reward range: daily revenue, clipped for the Beta trick
BANDITS = {
    "sliding-window UCB (300 days)": bandits.SlidingWindowUCB(c=0.1, window=300),
    "discounted TS (gamma=0.995)": bandits.DiscountedThompson(gamma=0.995),
}
PPO_ONLINE = ("online PPO (lr floor)", "online PPO (lr + entropy floor)",
              "online PPO (restarted at change)")
DQN_ONLINE = ("online DQN (epsilon + lr floor)", "online DQN (restarted at change)")


class Scenario(NamedTuple):
    env_id: str
    preset: str
    base: dict  # param overrides of the market before the change
    reward_scale: float  # the learners see reward / reward_scale (about 1 at the optimum)
    train_factor: int  # PPO and DQN train train_factor x --train-steps before the change
    ppo: dict  # PPOConfig fields
    ent_floor: float  # online PPO's ent_coef floor
    dqn: dict  # DQNConfig fields
    reward: str  # what the reward is


PRICING_PPO = dict(gamma=0.5, lr=3e-3, ent_coef=0.001, update_epochs=4, hidden_size=64)
PRICING_DQN = dict(gamma=0.5, lr=1e-3, hidden_size=64, n_step=1)
SHOPPER_PPO = dict(lr=3e-3, ent_coef=0.01)
SHOPPER_DQN = dict(lr=1e-3)
INVENTORY_PPO = dict(lr=1e-3, ent_coef=0.01, update_epochs=8, hidden_size=64)
INVENTORY_DQN = dict(lr=5e-4, hidden_size=64)
PRICING_BASE = dict(**SETTINGS["stationary"], reward_profit=0.0, max_steps_in_episode=PERIOD_STEPS)
SCENARIOS = {
    "pricing_demand_shift": Scenario("DynamicPricing-v0", "demand_shift", PRICING_BASE, 50.0, 1,
                                     PRICING_PPO, 0.02, PRICING_DQN, "revenue per day"),
    "pricing_competitor_entry": Scenario("DynamicPricing-v0", "competitor_entry", PRICING_BASE,
                                         50.0, 1, PRICING_PPO, 0.02, PRICING_DQN,
                                         "revenue per day"),
    "shopper_interest_shift": Scenario("ShopperRec-v0", "interest_shift", {}, 1.0, 2, SHOPPER_PPO,
                                       0.03, SHOPPER_DQN, "clicks + purchases per step"),
    "shopper_new_items": Scenario("ShopperRec-v0", "new_items", {}, 1.0, 2, SHOPPER_PPO, 0.03,
                                  SHOPPER_DQN, "clicks + purchases per step"),
    "inventory_demand_jump": Scenario("Inventory-v0", "demand_jump", {}, 20.0, 2, INVENTORY_PPO,
                                      0.02, INVENTORY_DQN, "profit per period"),
}


class _RevenueArms:
    """The pricing env as the bandit algorithms see it: one arm per grid price, bounded revenue."""

    def __init__(self, num_arms: int):
        self.num_arms, self.context_dim, self.is_contextual = num_arms, 1, False
        self.name = "DynamicPricing-v0 (price grid arms)"

    def reward_range(self, params):
        return jnp.float32(REVENUE_RANGE[0]), jnp.float32(REVENUE_RANGE[1])


def oracle_action(inner, params):
    """`select(key, obs, state) -> action` of the per-period oracle (see the module docstring)
    on the Drift env with `params`."""
    if inner.name == "DynamicPricing-v0":
        return lambda key, obs, state: myopic_price(
            inner, state.env_state, Drift.params_at(state.clock, params))[1]
    if inner.name == "ShopperRec-v0":
        policy = myopic_oracle(inner, params.base)
        return lambda key, obs, state: policy(key, obs, state.env_state,
                                              Drift.params_at(state.clock, params))
    before, after = (table_policy(inner, value_iteration(inner, p))
                     for p in (params.base, params.target))

    def select(key, obs, state):
        now = Drift.params_at(state.clock, params)
        return jnp.where(params.schedule.weight(state.clock) >= 0.5,
                         after(key, obs, state.env_state, now),
                         before(key, obs, state.env_state, now))

    return select


def run_markets(env: Drift, params, keys, steps: int, agent, select, update, per_market: bool):
    """Rewards (markets, steps): each market (one key) runs `select(agent, key, obs, state)
    -> action` and `update(agent, key, action, reward) -> agent` for `steps` steps, from `agent`
    (one per market along axis 0 where `per_market`, else shared)."""

    def market(key, agent):
        k_reset, k_steps = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def step(carry, key):
            obs, state, agent = carry
            k_select, k_update, k_env = jax.random.split(key, 3)
            action = select(agent, k_select, obs, state)
            obs, state, reward, *_ = env.step(k_env, state, action, params)
            return (obs, state, update(agent, k_update, action, reward)), reward

        return jax.lax.scan(step, (obs, state, agent), jax.random.split(k_steps, steps))[1]

    return jax.vmap(market, in_axes=(0, 0 if per_market else None))(keys, agent)


def deploy(module, hold, restart, env, params, weights, keys, change: int, periods: int,
           scale: float) -> np.ndarray:
    """(seeds, updates) reward per step of `module`'s learner deployed from `weights` (batched
    over seeds; None: fresh) on `hold` config, switching at update `change` to a learner on
    `restart` config whose schedules start again there (`continual.restart_schedules`), or
    staying on `hold` where `restart` is None."""
    updates_per_period = PERIOD_STEPS * hold.num_envs // hold.steps_per_update

    def learner(config, w):
        return continual.track_reward(module.make_learner(config, env, params,
                                                          init_network_params=w))

    def one(key, w):
        first = learner(hold, w)
        state, pre = run_updates(first, first.init(key), change * updates_per_period)
        second = first
        if restart is not None:
            second = learner(restart, module.network_params(state))
            state = continual.restart_schedules(second.init(key), state)
        post = run_updates(second, state, (periods - change) * updates_per_period)[1]
        return jnp.concatenate([pre["step_reward"], post["step_reward"]])

    rewards = np.asarray(jax.jit(jax.vmap(one))(keys, weights)) * scale
    return rewards.reshape(rewards.shape[0], periods, updates_per_period).mean(-1)


def run_scenario(name: str, args) -> dict:
    """Policy -> (seeds, periods) mean reward per step; "oracle" included."""
    scenario = SCENARIOS[name]
    inner, base = ecomrl_jax.make(scenario.env_id)
    env = Drift(inner)
    schedule = DriftSchedule(start=float(args.change * PERIOD_STEPS))
    params = drift_preset(inner, scenario.preset, schedule, base.replace(**scenario.base))
    env.validate_params(params)
    before, after = params.replace(target=params.base), params.replace(base=params.target)
    learner_env = ScaleReward(env, scenario.reward_scale)
    markets, periods, change = args.markets, args.periods, args.change
    seeds = jnp.arange(args.seeds)
    train_keys = jax.vmap(jax.random.key)(seeds)
    deploy_keys = jax.vmap(jax.random.key)(100 + seeds)
    start = time.perf_counter()

    def ppo_config(steps, **overrides):
        return ppo.PPOConfig(total_timesteps=steps, num_envs=markets, num_steps=PERIOD_STEPS,
                             **{**scenario.ppo, **overrides})

    def dqn_config(steps, **overrides):
        fields = dict(num_envs=markets, train_frequency=PERIOD_STEPS // DQN_UPDATES_PER_PERIOD,
                      learning_starts=0, epsilon_end=0.02, buffer_size=8 * PERIOD_STEPS * markets)
        return dqn.DQNConfig(total_timesteps=steps, **{**fields, **scenario.dqn, **overrides})

    train_steps = args.train_steps * scenario.train_factor
    ppo_train = ppo_config(train_steps)
    ppo_weights = ppo.network_params(jax.jit(jax.vmap(
        ppo.make_train(ppo_train, learner_env, before)))(train_keys)[0])
    dqn_train = dqn_config(train_steps, learning_starts=min(2_000, train_steps // 4),
                           buffer_size=min(100_000, train_steps))
    dqn_weights = dqn.network_params(jax.jit(jax.vmap(
        dqn.make_train(dqn_train, learner_env, before)))(train_keys)[0])
    print(f"{name}: PPO and DQN trained before the change ({time.perf_counter() - start:.0f} s)",
          file=sys.stderr, flush=True)

    deploy_steps = periods * PERIOD_STEPS * markets
    post_steps = (periods - change) * PERIOD_STEPS * markets
    lr, dqn_lr = scenario.ppo["lr"], scenario.dqn["lr"]
    floor = dict(lr=lr * LR_FLOOR, anneal_lr=False)
    ent = dict(ent_coef=scenario.ent_floor)
    ppo_hold = ppo_config(deploy_steps, **floor, **ent)
    ppo_restart = ppo_config(post_steps, min_lr=lr * LR_FLOOR, **ent)
    dqn_hold = dqn_config(deploy_steps, lr=dqn_lr * LR_FLOOR, anneal_lr=False,
                          epsilon_schedule="constant", epsilon_start=EPSILON_FLOOR)
    dqn_restart = dqn_config(post_steps, min_lr=dqn_lr * LR_FLOOR, epsilon_start=EPSILON_RESTART,
                             epsilon_end=EPSILON_FLOOR)
    run = dict(env=learner_env, params=params, keys=deploy_keys, change=change, periods=periods,
               scale=scenario.reward_scale)
    curves = {
        PPO_ONLINE[0]: deploy(ppo, ppo_config(deploy_steps, **floor), None, weights=ppo_weights,
                              **run),
        PPO_ONLINE[1]: deploy(ppo, ppo_hold, None, weights=ppo_weights, **run),
        PPO_ONLINE[2]: deploy(ppo, ppo_hold, ppo_restart, weights=ppo_weights, **run),
        DQN_ONLINE[0]: deploy(dqn, dqn_hold, None, weights=dqn_weights, **run),
        DQN_ONLINE[1]: deploy(dqn, dqn_hold, dqn_restart, weights=dqn_weights, **run),
    }
    scratch = deploy(ppo, ppo_config(post_steps, anneal_lr=False), None, learner_env, after, None,
                     deploy_keys, 0, periods - change, scenario.reward_scale)
    curves["scratch PPO"] = np.concatenate([np.full((args.seeds, change), np.nan), scratch], axis=1)

    def market_keys(key):
        return jax.random.split(key, markets)

    def reward(select, agent, update=lambda a, *_: a, per_market=False):
        """(seeds, periods) of agents batched over seeds (and markets where `per_market`)."""
        rewards = jax.jit(jax.vmap(lambda k, a: run_markets(
            env, params, market_keys(k), periods * PERIOD_STEPS, a, select, update, per_market)))(
            deploy_keys, agent)
        rewards = np.asarray(rewards).mean(1)
        return rewards.reshape(rewards.shape[0], periods, PERIOD_STEPS).mean(-1)

    frozen_ppo = ppo.make_policy(ppo_train, env, ppo_weights)
    curves["frozen PPO"] = reward(
        lambda w, k, obs, state: frozen_ppo.func(w, k, obs, state, params), ppo_weights)
    frozen_dqn = dqn.make_policy(dqn_train, env, dqn_weights, deterministic=True)
    curves["frozen DQN"] = reward(lambda w, k, obs, state: frozen_dqn.func(
        w, frozen_dqn.args[1], k, obs, state, params), dqn_weights)
    if scenario.env_id == "DynamicPricing-v0":
        arms = _RevenueArms(inner.num_prices)
        for bandit, algo in BANDITS.items():
            state = jax.vmap(lambda _: jax.vmap(lambda _: algo.init(arms, params))(
                jnp.arange(markets)))(seeds)
            curves[bandit] = reward(
                lambda s, k, obs, _: algo.select(s, k, jnp.ones((inner.num_prices, 1))), state,
                lambda s, k, a, r: algo.update(s, k, a, None, r), per_market=True)
    oracle = oracle_action(inner, params)
    curves["oracle"] = reward(lambda a, k, obs, state: oracle(k, obs, state), seeds)
    print(f"{name}: deployed ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return curves


def recovery_periods(curve: np.ndarray, oracle: np.ndarray, change: int) -> int | None:
    """Periods after the change until the smoothed reward reaches RECOVERY x the oracle's."""
    ratio = curve[change:] / oracle[change:]
    smooth = np.convolve(ratio, np.ones(RECOVERY_SMOOTHING) / RECOVERY_SMOOTHING, "valid")
    hits = np.flatnonzero(smooth >= RECOVERY)
    return int(hits[0]) if hits.size else None


def summarise(name: str, curves: dict, change: int) -> list[str]:
    scenario = SCENARIOS[name]
    oracle = curves["oracle"].mean(0)
    lines = [f"### {name} ({scenario.env_id}, {scenario.preset}; {scenario.reward})", "",
             "| policy | reward/step before | reward/step after | regret after (per market) "
             f"| periods to {RECOVERY:.0%} of oracle |", "|---|---|---|---|---|"]
    for policy, c in curves.items():
        regret = (curves["oracle"][:, change:] - c[:, change:]).sum(1) * PERIOD_STEPS
        recovered = [recovery_periods(row, curves["oracle"][i], change) for i, row in enumerate(c)]
        never = sum(r is None for r in recovered)
        hits = [r for r in recovered if r is not None]
        rec = ("-" if policy == "oracle" else "never" if not hits else
               f"{np.mean(hits):.1f} (seeds {min(hits)}-{max(hits)})"
               + (f"; never in {never} of {len(recovered)} seeds" if never else ""))
        pre = harness.ci_cell(c[:, :change].mean(1), ".2f") if change and not np.isnan(
            c[:, :change]).any() else "-"
        lines.append(f"| {policy} | {pre} | {harness.ci_cell(c[:, change:].mean(1), '.2f')} | "
                     f"{harness.ci_cell(regret, '.0f')} | {rec} |")
    return lines + [""] + [f"oracle reward per step: before {oracle[:change].mean():.2f}, "
                           f"after {oracle[change:].mean():.2f}", ""]


def plot(name: str, curves: dict, change: int, path) -> None:
    scenario = SCENARIOS[name]
    fig = Figure(figsize=(12, 4.5))
    ax, ax_regret = fig.subplots(1, 2)
    periods = np.arange(curves["oracle"].shape[1])
    for i, (policy, c) in enumerate(curves.items()):
        style = dict(color="k", ls="--") if policy == "oracle" else dict(
            color=f"C{i % 10}", ls=":" if "DQN" in policy else "-")
        ax.plot(periods, c.mean(0), label=policy, **style)
        if policy != "oracle":
            regret = np.nancumsum((curves["oracle"] - c)[:, change:], axis=1) * PERIOD_STEPS
            ax_regret.plot(periods[change:], regret.mean(0), label=policy, **style)
    ax.axvline(change, color="grey", lw=0.8)
    ax.set(xlabel=f"period ({PERIOD_STEPS} steps)",
           ylabel=f"{scenario.reward} (mean over markets)",
           title=f"{scenario.env_id}, {scenario.preset} at period {change}")
    ax_regret.set(xlabel=f"period ({PERIOD_STEPS} steps)", ylabel="cumulative regret per market",
                  title="regret to the per-period oracle after the change")
    ax.legend(fontsize=6)
    harness.save_figure(fig, path)


def main(argv=None) -> dict:
    """Run the scenarios; returns scenario -> policy -> (seeds, periods) reward per step."""
    parser = harness.make_parser(__doc__, "small sizes: finishes in a few minutes on 2 CPU cores")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    args = harness.parse_sizes(
        parser, argv,
        train_steps=harness.Size("env steps of pricing's PPO and DQN before the change (other "
                                 "envs: Scenario.train_factor x this)", 100_000, 400_000,
                                 PERIOD_STEPS),
        markets=harness.Size("markets deployed (the learners' num_envs)", 16, 64),
        periods=harness.Size(f"deployment periods of {PERIOD_STEPS} steps", 60, 150, 2),
        change=harness.Size("period of the change", 20, 50))
    if args.change >= args.periods:
        parser.error(f"--change must be < --periods ({args.periods}), got {args.change}")
    lines = ["# Online adaptation to a market change", "",
             f"{args.seeds} seeds, {args.markets} markets each, {args.periods} periods of "
             f"{PERIOD_STEPS} steps, change at period {args.change}; PPO and DQN trained "
             f"{args.train_steps:,} env steps (pricing; x train_factor elsewhere) before it. "
             "Intervals: 95% Student t over seeds.", ""]
    results = {}
    for name in args.scenarios:
        results[name] = curves = run_scenario(name, args)
        lines += summarise(name, curves, args.change)
        plot(name, curves, args.change, args.out / f"online_adaptation_{name}.png")
    harness.write_table(lines, args.out / "online_adaptation.md")
    return results


if __name__ == "__main__":
    main()
