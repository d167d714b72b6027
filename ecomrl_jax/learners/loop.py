"""The learner contract and the one env loop every learner runs.

A learner module builds a `Learner`: `init` a runner state, `update` it once; `train_fn`
turns it into the one-`lax.scan` `train(key) -> (final_state, metrics)` of the design
contract, and the CLI runs it in chunks (`run_updates`) so long runs checkpoint and resume.

`make_env_loop` is the env side of every learner (PPO, A2C, REINFORCE, DQN, tabular):
`num_envs` vectorised auto-resetting envs under `EpisodeStatistics`; `collect` steps them
`num_steps` times with the learner's `act`/`observe` callbacks and hands each step's
`EnvStep` (with `terminated`, `truncated` and the pre-reset final observation, for the
truncation rule of `targets`, and the env's `info`) to `observe`; `finish` turns an update's
finished episodes into metrics (mean totals, carried over when none finished).

Data parallelism (`make_mesh`, `shard_envs`, `compile_updates`): traced under `jax.set_mesh(mesh)`
of a mesh with an `ENVS` axis, the env loop splits its env batch over that axis (a sharding
constraint on every env-batched array, `num_envs` divisible by its size). The learner's code is
unchanged: XLA partitions the one global program (GSPMD), so losses and gradients that average
over the batch become per-device partial sums plus an all-reduce, and the run computes the same
maths as on one device; only the summation order of those reductions differs.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from ecomrl_jax.wrappers import EpisodeStatistics


class Learner(NamedTuple):
    init: Callable[[jax.Array], Any]  # key -> runner state (a pytree)
    update: Callable[[Any], tuple[Any, dict]]  # runner state -> (runner state, metrics)
    num_updates: int  # updates in a full run
    steps_per_update: int  # env steps consumed by one update (all envs together)


def run_updates(learner: Learner, runner_state: Any, num_updates: int) -> tuple[Any, dict]:
    """Apply `num_updates` updates in one `lax.scan`; metrics stacked along axis 0."""
    return jax.lax.scan(lambda s, _: learner.update(s), runner_state, None, length=num_updates)


def train_fn(learner: Learner) -> Callable[[jax.Array], tuple[Any, dict]]:
    """`train(key) -> (final_state, metrics)`: the whole run as one scan; vmap it over keys."""

    def train(key: jax.Array):
        return run_updates(learner, learner.init(key), learner.num_updates)

    return train


ENVS = "envs"  # the mesh axis a learner's env batch is split over
RUNS = "runs"  # the mesh axis vmapped runs (seeds, sweep points) are split over instead


def make_mesh(num_devices: int | None = None, axis: str = ENVS) -> Mesh:
    """A 1-D mesh named `axis` over the first `num_devices` devices (default: all). Its axis is
    `Auto`: XLA partitions the program (GSPMD)."""
    devices = jax.devices()
    num_devices = len(devices) if num_devices is None else num_devices
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"the number of devices must be in [1, {len(devices)}] (the devices jax "
                         f"sees: {devices[0].platform} x {len(devices)}), got {num_devices}")
    return Mesh(np.array(devices[:num_devices]), (axis,))


def shard_envs(tree, num_envs: int):
    """`tree` (leading axis `num_envs`) constrained to be split over the `ENVS` axis of the mesh
    it is traced under (`jax.set_mesh`); unchanged without one. Under `vmap` over seeds the
    seed axis stays whole on each device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or ENVS not in mesh.axis_names:
        return tree
    if num_envs % mesh.shape[ENVS]:
        raise ValueError(f"num_envs ({num_envs}) must be divisible by the number of devices it is "
                         f"split over ({mesh.shape[ENVS]})")
    return jax.lax.with_sharding_constraint(tree, PartitionSpec(ENVS))


def compile_updates(learner: Learner, state: Any, num_updates: int, mesh: Mesh):
    """`run_updates(learner, ., num_updates)` vmapped over the leading (seed) axis of `state`,
    traced under `mesh` and compiled for `state`'s shardings; the state it returns keeps them,
    so its output feeds the next call."""
    shardings = jax.tree.map(lambda x: x.sharding, state)

    def run(state):
        state, metrics = jax.vmap(functools.partial(run_updates, learner,
                                                    num_updates=num_updates))(state)
        return jax.lax.with_sharding_constraint(state, shardings), metrics

    with jax.set_mesh(mesh):
        return jax.jit(run).lower(state).compile()


class LoopState(NamedTuple):
    env_state: Any  # batched EpisodeStatistics state
    obs: Any  # batched observation to act on next
    key: jax.Array
    update_step: jax.Array  # updates done so far (int32)
    episode_metrics: dict  # last reported episode means, carried when no episode finishes


class EnvStep(NamedTuple):
    """One step of every env, as `observe` sees it (leading axis num_envs)."""
    obs: Any  # observation the action was taken in
    reward: jax.Array
    terminated: jax.Array  # the MDP ended: no bootstrap
    truncated: jax.Array  # a time limit ended the episode: bootstrap from `final_obs`
    next_obs: Any  # observation to act on next (a reset one where the episode ended)
    final_obs: Any  # the step's true next observation (pre-reset where the episode ended)
    info: dict  # the env's info (e.g. which slot was clicked, for SlateQ)

    @property
    def done(self) -> jax.Array:
        """The episode ended (either way): traces are cut here."""
        return self.terminated | self.truncated


class Episodes(NamedTuple):
    totals: dict  # EpisodeStatistics totals per step and env, valid where `done`
    done: jax.Array  # (num_steps, num_envs) an episode finished at this step


class EnvLoop(NamedTuple):
    init: Callable  # key -> LoopState
    collect: Callable  # (act, observe, agent, LoopState, num_steps, xs) -> (agent, LoopState, outs, Episodes)
    finish: Callable  # (LoopState, Episodes) -> (LoopState, metrics)


def metric_name(key: str) -> str:
    """EpisodeStatistics total -> metric name: `episode_return`, `episode_length`, `clicks`, ..."""
    return f"episode_{key}" if key in ("return", "length") else key


def make_env_loop(env, env_params, num_envs: int) -> EnvLoop:
    """The env loop of `num_envs` auto-resetting copies of `env` (see the module docstring).

    `collect(act, observe, agent, loop, num_steps, xs=None)` scans `num_steps` steps; per step
    `act(agent, key, obs, x) -> (action, agent, record)` picks the batched action and
    `observe(agent, record, EnvStep, x) -> (agent, out)` learns from it; the `out`s come back
    stacked (num_steps, ...). `finish(loop, episodes)` counts the update and returns its
    episode metrics with `episodes_finished` and `env_steps` (int32, all envs, so far)."""
    env = EpisodeStatistics(env)
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key) -> LoopState:
        key, k_env = jax.random.split(key)
        obs, env_state = shard_envs(
            reset(shard_envs(jax.random.split(k_env, num_envs), num_envs), env_params), num_envs)
        episode_metrics = {metric_name(k): jnp.zeros((), jnp.float32) for k in env_state.last}
        return LoopState(env_state, obs, key, jnp.int32(0), episode_metrics)

    def collect(act, observe, agent, loop: LoopState, num_steps: int, xs=None):
        def body(carry, x):
            agent, env_state, obs, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            action, agent, record = act(agent, k_act, obs, x)
            next_obs, env_state, reward, terminated, truncated, info = step(
                shard_envs(jax.random.split(k_env, num_envs), num_envs), env_state, action,
                env_params)
            next_obs, env_state = shard_envs((next_obs, env_state), num_envs)
            agent, out = observe(agent, record, EnvStep(obs, reward, terminated, truncated,
                                                        next_obs, info["final_observation"], info), x)
            return (agent, env_state, next_obs, key), (out, info["episode"], info["episode_done"])

        (agent, env_state, obs, key), (outs, totals, done) = jax.lax.scan(
            body, (agent, loop.env_state, loop.obs, loop.key), xs, length=num_steps)
        return agent, loop._replace(env_state=env_state, obs=obs, key=key), outs, Episodes(totals, done)

    def finish(loop: LoopState, episodes: Episodes):
        finished = jnp.sum(episodes.done)
        episode_metrics = {
            metric_name(k): jnp.where(
                finished > 0, jnp.sum(jnp.where(episodes.done, v, 0.0)) / jnp.maximum(finished, 1),
                loop.episode_metrics[metric_name(k)])
            for k, v in episodes.totals.items()}
        update_step = loop.update_step + 1
        steps_per_update = episodes.done.size
        metrics = {**episode_metrics, "episodes_finished": finished.astype(jnp.int32),
                   "env_steps": update_step * steps_per_update}
        return loop._replace(update_step=update_step, episode_metrics=episode_metrics), metrics

    return EnvLoop(init, collect, finish)
