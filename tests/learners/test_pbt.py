"""Population-based training (ecomrl_jax/learners/pbt.py): settings refused with clear errors,
truncation selection on hand-made fitness, exploration within bounds, fitness from finished
episodes, a jitted run with PPO and DQN, and a population that improves over its worst start."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.learners import dqn, pbt, ppo

PPO_TINY = ppo.PPOConfig(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 4, update_epochs=1,
                         num_minibatches=2, hidden_size=8)
DQN_TINY = dqn.DQNConfig(num_envs=4, train_frequency=2, total_timesteps=4 * 2 * 12,
                         buffer_size=4 * 8, batch_size=8, learning_starts=16, n_step=2,
                         target_update_interval=2, hidden_size=8)
EXPLORE = (("lr", 1e-4, 1e-2), ("ent_coef", 0.0, 0.05))


@pytest.fixture(scope="module")
def env():
    return ecomrl_jax.make("ShopperRec-v0", max_steps_in_episode=10)


@pytest.mark.parametrize("settings, message", [
    (dict(population=1), "PBTConfig.population must be an int >= 2"),
    (dict(truncation=0.6), r"PBTConfig.truncation must be in \(0, 0.5\]"),
    (dict(truncation=0.0), r"PBTConfig.truncation must be in \(0, 0.5\]"),
    (dict(population=4, truncation=0.2), r"truncation \* population must be >= 1"),
    (dict(resample_prob=1.5), r"resample_prob must be in \[0, 1\]"),
    (dict(perturb_factors=()), "at least one factor"),
    (dict(perturb_factors=(0.8, -1.0)), "perturb_factors must be > 0"),
    (dict(ready_every=5), r"ready_every \(5\) exceeds the learner's num_updates \(4\)"),
    (dict(explore=()), "must name at least one"),
    (dict(explore=(("num_envs", 4, 8),)),
     r"cannot explore 'num_envs': the PPOConfig fields that can vary are \['lr', 'min_lr', 'gamma'"),
    (dict(explore=(("nope", 0.0, 1.0),)), "cannot explore 'nope'"),
    (dict(explore=(("lr", 1e-2, 1e-4),)), "bounds of 'lr' must have low < high"),
    (dict(explore=(("lr", 0.0, 1e-2),)), "bounds of 'lr': PPOConfig.lr must be > 0"),
    (dict(explore=(("lr", 1e-4, 1e-2), ("lr", 1e-3, 1e-1))), "names a field twice"),
    (dict(explore=(("lr", 1e-4),)), r"entries are \(field, low, high\)"),
])
def test_bad_settings_are_refused(env, settings, message):
    with pytest.raises(ValueError, match=message):
        pbt.make_train(pbt.PBTConfig(**{"ready_every": 2, **settings}), ppo, PPO_TINY, *env)


def test_bottom_members_copy_members_drawn_from_the_top():
    settings = pbt.PBTConfig(population=6, truncation=1 / 3)
    fitness = jnp.array([5.0, 1.0, jnp.nan, 9.0, 3.0, 7.0])  # NaN ranks lowest
    select = jax.jit(lambda key: pbt.select_parents(key, settings, fitness))
    parents = np.stack([select(jax.random.key(i)) for i in range(20)])
    np.testing.assert_array_equal(parents[:, [0, 3, 4, 5]], np.tile([0, 3, 4, 5], (20, 1)))
    assert set(parents[:, 1]) == set(parents[:, 2]) == {3, 5}  # both donors drawn


def stacked_population(settings, lrs, ent_coefs):
    """A population of PPO configs with the given explored values and member i's state i."""
    size = settings.population
    configs = jax.tree.map(lambda x: jnp.full((size,), x), PPO_TINY).replace(
        lr=jnp.array(lrs, jnp.float32), ent_coef=jnp.array(ent_coefs, jnp.float32),
        gamma=jnp.arange(size, dtype=jnp.float32))
    return pbt.Population(configs, {"weights": jnp.arange(size * 3.0).reshape(size, 3)})


def test_copies_take_their_parents_state_and_perturbed_values_within_bounds():
    settings = pbt.PBTConfig(population=4, truncation=0.5, perturb_factors=(0.1, 10.0),
                             resample_prob=0.3, explore=EXPLORE)
    population = stacked_population(settings, [5e-4, 5e-3, 2e-3, 1e-3], [0.004, 0.01, 0.0, 0.02])
    parent = jnp.array([0, 1, 1, 0])
    perturb = jax.jit(lambda key: pbt.copy_and_perturb(key, settings, population, parent))
    for i in range(10):
        configs, states = perturb(jax.random.key(i))
        np.testing.assert_array_equal(states["weights"], population.states["weights"][parent])
        np.testing.assert_array_equal(configs.gamma, [0.0, 1.0, 1.0, 0.0])  # not explored: copied
        for (name, low, high) in EXPLORE:
            values, before = np.asarray(getattr(configs, name)), getattr(population.configs, name)
            assert np.all((low <= values) & (values <= high))
            np.testing.assert_array_equal(values[:2], before[:2])  # kept their own
            assert np.all(values[2:] != before[parent[2:]])  # every copy moved
            assert values.dtype == np.float32


@pytest.mark.parametrize("module, config", [(ppo, PPO_TINY), pytest.param(dqn, DQN_TINY, marks=pytest.mark.slow)],
                         ids=["ppo", "dqn"])
def test_a_jitted_run_records_fitness_lineage_and_hyperparameters(env, module, config):
    explore = (("lr", 1e-4, 1e-2),)
    settings = pbt.PBTConfig(population=4, ready_every=2, truncation=0.5, explore=explore)
    population, metrics = jax.jit(pbt.make_train(settings, module, config, *env))(
        jax.random.key(0))
    generations = config.num_updates // 2
    assert metrics["fitness"].shape == metrics["parent"].shape == (generations, 4)
    assert np.all(np.isfinite(metrics["fitness"]))
    np.testing.assert_array_equal(metrics["env_steps"],
                                  np.arange(1, generations + 1) * 2 * config.steps_per_update * 4)
    lr, parent = np.asarray(metrics["hyperparams"]["lr"]), np.asarray(metrics["parent"])
    assert np.all((1e-4 <= lr) & (lr <= 1e-2))
    np.testing.assert_array_equal(parent[-1], np.arange(4))  # no selection after the last one
    for g in range(generations - 1):
        kept = parent[g] == np.arange(4)
        assert kept.sum() == 2 and set(parent[g][~kept]) <= set(np.argsort(metrics["fitness"][g])[2:])
        np.testing.assert_array_equal(lr[g + 1][kept], lr[g][kept])
    np.testing.assert_array_equal(population.configs.lr, lr[-1])
    weights = module.network_params(population.states)
    assert all(x.shape[0] == 4 and np.all(np.isfinite(x)) for x in jax.tree.leaves(weights))


@pytest.mark.slow
def test_population_improves_over_its_worst_start():
    env, params = ecomrl_jax.make("ShopperRec-v0", max_steps_in_episode=10)
    config = PPO_TINY.replace(total_timesteps=8 * 16 * 60)
    settings = pbt.PBTConfig(population=6, ready_every=6, truncation=1 / 3,
                             explore=(("lr", 1e-5, 3e-2),))
    _, metrics = jax.jit(pbt.make_train(settings, ppo, config, env, params))(jax.random.key(0))
    fitness = np.asarray(metrics["fitness"])
    assert fitness[-1].min() > fitness[0].min() and fitness[-1].max() > fitness[0].max()


def test_fitness_is_the_mean_return_of_the_episodes_finished_in_the_generation():
    metrics = {"episode_return": jnp.array([0.0, 0.0, 6.0, 3.0]),  # 0: none finished yet
               "episodes_finished": jnp.array([0, 0, 1, 2])}
    assert float(jax.jit(pbt.generation_fitness)(metrics)) == pytest.approx(4.0)
    carried = {"episode_return": jnp.array([5.0, 5.0]), "episodes_finished": jnp.array([0, 0])}
    assert float(pbt.generation_fitness(carried)) == 5.0
