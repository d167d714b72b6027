"""Population-based training (PBT, Jaderberg et al. 2017) around any learner, in one jit.

A population of `population` members (a learner config and runner state each, stacked and
vmapped) trains in generations of `ready_every` updates. After each generation but the last,
truncation selection: the `truncation` fraction of members with the lowest fitness (the mean
return of the episodes that finished during the generation) copy the weights, optimiser state, env state and
hyperparameters of members drawn uniformly from the same fraction at the top (exploit), then
multiply each explored hyperparameter by a factor drawn from `perturb_factors`, or with
probability `resample_prob` draw it afresh, clipped to its bounds (explore). Initial values are
drawn from the bounds: log-uniformly where the lower bound is > 0 (scale parameters such as `lr`),
else uniformly. Every PRNG key in a member's state is folded with the member's index after each
generation, so a copy does not replay its parent's samples.

    pbt = PBTConfig(population=8, ready_every=10, explore=(("lr", 1e-4, 1e-2), ("ent_coef", 0.0, 0.05)))
    population, metrics = jax.jit(make_train(pbt, ppo, ppo.PPOConfig(...), env, params))(key)

The run is `config.num_updates // ready_every` generations (a remainder of updates is not run),
each member consuming `config.steps_per_update` env steps per update: `population` times a single
run's budget in all. Only traced config fields (`sweep.traced_fields`) can be explored.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from ecomrl_jax import rules
from ecomrl_jax.learners.loop import run_updates
from ecomrl_jax.sweep import check_traced


@struct.dataclass
class PBTConfig:
    """PBT's own settings; `explore` lists (field, low, high) of the hyperparameters it moves."""

    population: int = struct.field(pytree_node=False, default=8)
    ready_every: int = struct.field(pytree_node=False, default=10)  # updates per generation
    truncation: float = struct.field(pytree_node=False, default=0.25)  # bottom / top fraction
    perturb_factors: tuple = struct.field(pytree_node=False, default=(0.8, 1.25))
    resample_prob: float = struct.field(pytree_node=False, default=0.0)
    explore: tuple = struct.field(pytree_node=False, default=(("lr", 1e-4, 1e-2),))

    @property
    def num_replaced(self) -> int:
        """Members that copy another member after each generation."""
        return int(self.truncation * self.population)

    @property
    def names(self) -> list[str]:
        """The explored config fields, in order."""
        return [name for name, _, _ in self.explore]

    def validate(self, config) -> None:
        """ValueError naming what is wrong with these settings for the learner `config`."""
        rules.check(self, PBT_RULES)
        if self.num_replaced < 1:
            raise ValueError(f"PBTConfig.truncation * population must be >= 1 (one member "
                             f"replaced per generation), got {self.truncation:g} * "
                             f"{self.population}")
        if not self.perturb_factors:
            raise ValueError("PBTConfig.perturb_factors must list at least one factor")
        rules.check_value(self.perturb_factors, rules.POSITIVE, "PBTConfig.perturb_factors")
        if config.num_updates < self.ready_every:
            raise ValueError(f"PBTConfig.ready_every ({self.ready_every}) exceeds the learner's "
                             f"num_updates ({config.num_updates}): not one generation")
        if not self.explore:
            raise ValueError("PBTConfig.explore must name at least one (field, low, high)")
        for entry in self.explore:
            if len(entry) != 3:
                raise ValueError(f"PBTConfig.explore entries are (field, low, high), got {entry!r}")
            name, low, high = entry
            check_traced(name, type(config), "explore")
            if not low < high:
                raise ValueError(f"PBTConfig.explore bounds of {name!r} must have low < high, "
                                 f"got ({low!r}, {high!r})")
            for bound in (low, high):  # the learner's own rule for the field
                try:
                    config.replace(**{name: bound}).validate()
                except ValueError as error:
                    raise ValueError(f"PBTConfig.explore bounds of {name!r}: {error}") from None
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"PBTConfig.explore names a field twice: {self.names}")


PBT_RULES = {"population": rules.int_at_least(2), "ready_every": rules.POSITIVE_INT,
             "truncation": rules.in_range(0, 0.5, low_open=True),
             "resample_prob": rules.UNIT_INTERVAL}


class Population(NamedTuple):
    configs: Any  # learner configs, traced fields stacked (population, ...)
    states: Any  # runner states stacked (population, ...)


def sample_values(key, pbt: PBTConfig, shape) -> dict:
    """field -> values of `shape` drawn from its bounds: log-uniform where low > 0, else uniform."""
    values = {}
    for k, (name, low, high) in zip(jax.random.split(key, len(pbt.explore)), pbt.explore):
        u = jax.random.uniform(k, shape)
        values[name] = (jnp.exp(math.log(low) + u * (math.log(high) - math.log(low))) if low > 0
                        else low + u * (high - low)).astype(jnp.float32)
    return values


def select_parents(key, pbt: PBTConfig, fitness) -> jax.Array:
    """(population,) the member each member copies: itself, or for the `num_replaced` lowest
    fitnesses a member drawn uniformly from the `num_replaced` highest. NaN ranks lowest."""
    size, n = pbt.population, pbt.num_replaced
    order = jnp.argsort(jnp.where(jnp.isnan(fitness), -jnp.inf, fitness))  # ascending
    donors = order[size - n:][jax.random.randint(key, (n,), 0, n)]
    return jnp.arange(size).at[order[:n]].set(donors)


def copy_and_perturb(key, pbt: PBTConfig, population: Population, parent) -> Population:
    """Member i takes member `parent[i]`'s config and state; where that is another member, each
    explored hyperparameter is multiplied by a factor from `perturb_factors` (or, with
    probability `resample_prob`, drawn afresh) and clipped to its bounds."""
    size = pbt.population
    copied = parent != jnp.arange(size)
    configs, states = jax.tree.map(lambda x: x[parent], population)
    k_factor, k_resample, k_values = jax.random.split(key, 3)
    factors = jnp.asarray(pbt.perturb_factors, jnp.float32)
    fresh = sample_values(k_values, pbt, (size,))
    changes = {}
    for (name, low, high), k_f, k_r in zip(pbt.explore, jax.random.split(k_factor, len(pbt.explore)),
                                           jax.random.split(k_resample, len(pbt.explore))):
        value = getattr(configs, name)
        perturbed = jnp.where(jax.random.uniform(k_r, (size,)) < pbt.resample_prob, fresh[name],
                              value * jax.random.choice(k_f, factors, (size,)))
        changes[name] = jnp.where(copied, jnp.clip(perturbed, low, high), value).astype(value.dtype)
    return Population(configs.replace(**changes), states)


def generation_fitness(metrics: dict) -> jax.Array:
    """A member's fitness from its generation's per-update metrics: the mean return of the
    episodes that finished in it (each update's mean weighted by its `episodes_finished`), or the
    last reported return where none did (an update with no finished episode carries its last)."""
    finished = metrics["episodes_finished"].astype(jnp.float32)
    total = jnp.sum(finished)
    return jnp.where(total > 0, jnp.sum(metrics["episode_return"] * finished) / jnp.maximum(total, 1),
                     metrics["episode_return"][-1])


def fold_keys(states, index):
    """`states` with every typed PRNG key folded with `index`."""
    def fold(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(x, index)
        return x
    return jax.tree.map(fold, states)


def make_train(pbt: PBTConfig, module, config, env, env_params):
    """`train(key) -> (final Population, metrics)`: the whole PBT run as one `lax.scan` over
    generations. `module` is a learner module (`learners.LEARNERS[...].module`), `config` its
    config, whose explored fields are overwritten by each member's values. Metrics, stacked over
    generations: `fitness` (G, population), `parent` (G, population) (the member each copied
    after the generation: the lineage), `hyperparams` {field: (G, population)} (the values each
    member trained the generation with) and `env_steps` (G,), all members together."""
    pbt.validate(config)
    num_generations = config.num_updates // pbt.ready_every
    steps_per_update = module.make_learner(config, env, env_params).steps_per_update
    members = jnp.arange(pbt.population)

    def learner(member_config):
        return module.make_learner(member_config, env, env_params)

    def generation(carry, inputs):
        population, key = carry
        g, last = inputs
        key, k_select, k_perturb = jax.random.split(key, 3)
        states, metrics = jax.vmap(lambda c, s: run_updates(learner(c), s, pbt.ready_every))(
            *population)
        fitness = jax.vmap(generation_fitness)(metrics)
        hyperparams = {name: getattr(population.configs, name) for name in pbt.names}
        parent = jnp.where(last, members, select_parents(k_select, pbt, fitness))
        configs, states = copy_and_perturb(k_perturb, pbt, population._replace(states=states),
                                           parent)
        population = Population(configs, jax.vmap(fold_keys)(states, members))
        env_steps = (g + 1) * pbt.ready_every * steps_per_update * pbt.population
        return (population, key), {"fitness": fitness, "parent": parent,
                                   "hyperparams": hyperparams, "env_steps": env_steps}

    def train(key):
        k_values, k_init, k_run = jax.random.split(key, 3)
        values = sample_values(k_values, pbt, (pbt.population,))
        configs = jax.tree.map(lambda x: jnp.full((pbt.population,), x), config).replace(**values)
        states = jax.vmap(lambda c, k: learner(c).init(k))(
            configs, jax.random.split(k_init, pbt.population))
        generations = jnp.arange(num_generations)
        (population, _), metrics = jax.lax.scan(
            generation, (Population(configs, states), k_run),
            (generations, generations == num_generations - 1))
        return population, metrics

    return train
