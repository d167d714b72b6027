"""Continual (online) learning: a trained policy that keeps updating while it is deployed.

A deployed learner is an ordinary `Learner` started from trained weights
(`ppo.make_learner(..., init_network_params=weights)`, `dqn.make_learner` likewise) and run on
the live (e.g. `wrappers.Drift`) env. It keeps adapting only while its schedules let it: held
at a floor through its config (a constant `lr`, or `anneal_lr` down to `min_lr`; PPO's
`ent_coef`; DQN's constant epsilon), or restarted at a known change by `restart_schedules`.
`track_reward` reports the reward the deployed policy itself earned, update by update.
"""

import jax.numpy as jnp

from ecomrl_jax.learners.loop import Learner


def restart_schedules(fresh, deployed):
    """`deployed` (a PPO/A2C or DQN runner state) continuing under the schedules of `fresh`, a
    new learner's `init` on the deployed weights: the optimiser state (lr annealing, Adam's
    moments) and the update count (DQN's epsilon schedule, and its `learning_starts`, which a
    restart config sets to 0) start again; the envs, their episode statistics, the PRNG key and
    a replay buffer carry on."""
    carried = {name: getattr(deployed, name) for name in deployed._fields
               if name not in ("train_state", "loop")}
    loop = deployed.loop._replace(update_step=fresh.loop.update_step)
    return fresh._replace(loop=loop, **carried)


def track_reward(learner: Learner) -> Learner:
    """`learner` whose metrics add "step_reward": the mean reward per env step of each update
    (all envs), finished and unfinished episodes alike, from the episode statistics' running
    totals before and after the update plus the returns of the episodes it finished."""

    def update(runner):
        before = jnp.sum(runner.loop.env_state.running["return"])
        runner, metrics = learner.update(runner)
        after = jnp.sum(runner.loop.env_state.running["return"])
        finished = metrics["episode_return"] * metrics["episodes_finished"]
        return runner, {**metrics,
                        "step_reward": (after - before + finished) / learner.steps_per_update}

    return learner._replace(update=update)
