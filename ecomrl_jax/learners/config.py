"""Config rules, sizes, schedules and the optimiser shared by the learners.

Each config class keeps its own rules table (`ecomrl_jax.rules`) next to its definition and
validates with `check_config`; the structural checks (choices, bools, a run of at least one
update) are the small helpers below, so every learner words its errors the same way.
"""

import jax
import jax.numpy as jnp
import optax

from ecomrl_jax import rules
from ecomrl_jax.learners.networks import NETWORKS

EPSILON_SCHEDULES = ("constant", "linear", "exponential")
# Adam's eps for every gradient learner: 1e-5 (PPO's customary value, Andrychowicz et al. 2021)
# rather than optax's 1e-8, so a parameter whose gradients have been ~0 for a while does not
# take a huge normalised step when they return; it was 1e-5 for PPO/A2C/REINFORCE and 1e-8 for
# DQN and pre-training before they shared this factory.
ADAM_EPS = 1e-5
EXPONENTIAL_EPSILON = rules.Rule(rules.DISCOUNT.ok, "in (0, 1] for an exponential schedule")


class UpdateCount:
    """`num_updates` of a config with `total_timesteps` and a `steps_per_update` property."""

    @property
    def num_updates(self) -> int:
        """Updates in a full run (total_timesteps rounded down to whole updates)."""
        return self.total_timesteps // self.steps_per_update


class RolloutSizes(UpdateCount):
    """`batch_size` and `num_updates` of a config with `num_envs`, `num_steps`, `total_timesteps`."""

    @property
    def batch_size(self) -> int:
        """Env steps per update (all envs together)."""
        return self.num_envs * self.num_steps

    steps_per_update = batch_size


class ReplaySizes(UpdateCount):
    """Sizes of a replay learner's config (DQN, SlateQ) with `num_envs`, `train_frequency`,
    `buffer_size`, `learning_starts`, `gradient_steps`, `total_timesteps` and `window`, the
    consecutive steps one sample reads."""

    @property
    def steps_per_update(self) -> int:
        """Env steps per update (all envs together)."""
        return self.num_envs * self.train_frequency

    @property
    def buffer_rows(self) -> int:
        """Buffer capacity in rows of `num_envs` transitions."""
        return self.buffer_size // self.num_envs

    @property
    def num_gradient_steps(self) -> int:
        """Gradient steps in a full run: `gradient_steps` per update from the first update after
        which `learning_starts` env steps are done and the buffer holds a window."""
        first = max(-(-self.learning_starts // self.steps_per_update),
                    -(-self.window // self.train_frequency), 1)
        return self.gradient_steps * max(0, self.num_updates - first + 1)


def check_config(config, table: dict[str, rules.Rule]) -> None:
    """ValueError naming the first field of `config` that breaks its rule in `table`; a field
    `network` (where the config has one) must be in `NETWORKS`. Traced values are skipped
    (`rules.check_value`), so a stacked (vmapped) grid of configs validates too."""
    if hasattr(config, "network"):
        check_choice(config, "network", NETWORKS)
    rules.check(config, table)


def epsilon_rules(config, table: dict[str, rules.Rule], start: str = "epsilon_start",
                  end: str = "epsilon_end") -> dict[str, rules.Rule]:
    """`table` with the epsilon schedule's fields `start` and `end` held to (0, 1] where
    `config.epsilon_schedule` is "exponential": its geometric interpolation divides by `start`
    and takes a power of `end / start`, so a 0 there gives NaN or a stuck 0."""
    if config.epsilon_schedule != "exponential":
        return table
    return {**table, start: EXPONENTIAL_EPSILON, end: EXPONENTIAL_EPSILON}


def check_choice(config, name: str, choices) -> None:
    """ValueError unless `config.<name>` is one of `choices`."""
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{type(config).__name__}.{name} must be one of {list(choices)}, "
                         f"got {value!r}")


def check_bools(config, *names: str) -> None:
    """ValueError unless each `config.<name>` is a bool."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ValueError(f"{type(config).__name__}.{name} must be a bool, got {value!r}")


def check_one_update(config, steps_per_update: int, what: str) -> None:
    """ValueError unless `total_timesteps` covers one update of `steps_per_update` env steps
    (`what` says how that is computed)."""
    if config.total_timesteps < steps_per_update:
        raise ValueError(f"{type(config).__name__}.total_timesteps ({config.total_timesteps}) is "
                         f"less than one update ({what} = {steps_per_update})")


def check_min_lr(config) -> None:
    """ValueError unless `config.min_lr` <= `config.lr` (where both are concrete)."""
    traced = any(isinstance(x, jax.core.Tracer) for x in (config.lr, config.min_lr))
    if not traced and config.min_lr > config.lr:
        raise ValueError(f"{type(config).__name__}.min_lr ({config.min_lr}) must be <= lr "
                         f"({config.lr}): it is the floor the learning rate anneals to")


def epsilon_schedule(schedule: str, start, end, progress) -> jnp.ndarray:
    """Exploration rate at `progress` in [0, 1] of its decay (clipped): constant `start`, or
    `start` to `end` by arithmetic ("linear") or geometric ("exponential") interpolation."""
    progress = jnp.clip(progress, 0.0, 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "exponential":
        return start * (end / start) ** progress
    return jnp.full_like(progress, start)


def make_optimizer(lr, max_grad_norm, anneal_lr: bool = False, num_updates: int = 1,
                   steps_per_update: int = 1, min_lr=0.0):
    """Adam (eps `ADAM_EPS`) after global-norm clipping; with `anneal_lr` the learning rate
    decays linearly to `min_lr` over `num_updates` updates of `steps_per_update` gradient steps
    each, then stays there (a floor > 0 keeps a deployed policy learning; see `continual`).
    Flattened: one vector for clipping and Adam instead of one op per parameter leaf (same
    arithmetic, noticeably faster to compile)."""

    def annealed_lr(count):
        left = jnp.maximum(0.0, 1.0 - (count // steps_per_update) / num_updates)
        return min_lr + (lr - min_lr) * left

    return optax.flatten(optax.chain(optax.clip_by_global_norm(max_grad_norm),
                                     optax.adam(annealed_lr if anneal_lr else lr, eps=ADAM_EPS)))
