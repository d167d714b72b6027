"""The learner contract: `init` a runner state, `update` it once; `train` scans the updates.

Every learner module builds a `Learner`; `make_train` turns it into the one-`lax.scan`
`train(key) -> (final_state, metrics)` of the design contract, and the CLI runs it in
chunks (`run_updates`) so that long runs checkpoint and resume between chunks.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

EPSILON_SCHEDULES = ("constant", "linear", "exponential")


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


def epsilon_schedule(schedule: str, start, end, progress) -> jax.Array:
    """Exploration rate at `progress` in [0, 1] of its decay (clipped): constant `start`, or
    `start` to `end` by arithmetic ("linear") or geometric ("exponential") interpolation."""
    progress = jnp.clip(progress, 0.0, 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "exponential":
        return start * (end / start) ** progress
    return jnp.full_like(progress, start)
