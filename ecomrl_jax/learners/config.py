"""Config rules, sizes, schedules and the optimiser shared by the learners, and the config fields
DQN and SlateQ share (`ReplayConfig`).

Each config class keeps its own rules table (`ecomrl_jax.rules`) next to its definition and
validates with `check_config`; the structural checks (choices, bools, a run of at least one
update) are the small helpers below, so every learner words its errors the same way.
"""

import jax
import jax.numpy as jnp
import optax
from flax import struct

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


@struct.dataclass
class ReplayConfig(UpdateCount):
    """The fields and rules DQN and SlateQ share, with DQN's defaults (ShopperRec-v0 on a 2-core
    CPU); each learner's config adds its own fields and may change a default.

    Epsilon: "constant" keeps `epsilon_start`; "linear" and "exponential" go from
    `epsilon_start` to `epsilon_end` over the first `epsilon_decay_fraction` of
    `total_timesteps` (arithmetic or geometric interpolation), then stay at `epsilon_end`.
    Target network: every `target_update_interval` gradient steps it moves to
    `tau * online + (1 - tau) * target`; tau = 1 is a hard copy, tau < 1 Polyak averaging.
    Replay ratio: `gradient_steps` gradient steps on `batch_size` samples per
    `num_envs * train_frequency` env steps, once `learning_starts` env steps are done.
    A subclass sets `window`, the consecutive steps one replay sample reads.
    """

    lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 1.0
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float = 0.25
    max_grad_norm: float = 10.0
    num_envs: int = struct.field(pytree_node=False, default=32)
    total_timesteps: int = struct.field(pytree_node=False, default=200_000)
    buffer_size: int = struct.field(pytree_node=False, default=100_000)  # transitions, all envs
    batch_size: int = struct.field(pytree_node=False, default=128)
    learning_starts: int = struct.field(pytree_node=False, default=5_000)  # env steps, all envs
    train_frequency: int = struct.field(pytree_node=False, default=2)  # steps per env per update
    gradient_steps: int = struct.field(pytree_node=False, default=1)  # per update
    target_update_interval: int = struct.field(pytree_node=False, default=250)  # gradient steps
    epsilon_schedule: str = struct.field(pytree_node=False, default="linear")
    hidden_size: int = struct.field(pytree_node=False, default=32)
    anneal_lr: bool = struct.field(pytree_node=False, default=True)

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

    def check_replay(self, table: dict[str, rules.Rule]) -> None:
        """The shared checks of a replay config, its field rules `table` (`REPLAY_RULES` and the
        learner's own) included: ValueError naming the first invalid field."""
        check_choice(self, "epsilon_schedule", EPSILON_SCHEDULES)
        check_bools(self, "anneal_lr")
        check_config(self, epsilon_rules(self, table))
        check_one_update(self, self.steps_per_update, "num_envs * train_frequency")
        if self.buffer_rows < self.window:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold at least one sample's "
                             f"window = {self.window} steps of all num_envs ({self.num_envs}) envs")


REPLAY_RULES = {
    **{name: rules.POSITIVE_INT for name in (
        "num_envs", "total_timesteps", "buffer_size", "batch_size", "train_frequency",
        "gradient_steps", "target_update_interval", "hidden_size")},
    "learning_starts": rules.NON_NEGATIVE_INT,
    "lr": rules.POSITIVE, "gamma": rules.DISCOUNT, "tau": rules.DISCOUNT,
    "epsilon_start": rules.UNIT_INTERVAL, "epsilon_end": rules.UNIT_INTERVAL,
    "epsilon_decay_fraction": rules.DISCOUNT, "max_grad_norm": rules.POSITIVE}


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
