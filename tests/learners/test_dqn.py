"""DQN (ecomrl_jax/learners/dqn.py): target functions, replay buffer, epsilon schedules, config
validation, shapes, chunked resume with target updates, vmap over seeds and configs, slates, and learning.

As in test_ppo.py, tiny runs are shared between tests.
"""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.learners import dqn
from ecomrl_jax.envs.recommendation.policies import myopic_oracle, random_policy
from ecomrl_jax.learners.loop import run_updates
from ecomrl_jax.evaluation import evaluate
from ecomrl_jax.learners.networks import make_q_network
from tests.helpers import assert_identical, train_once

# 6 updates of 4 envs x 2 steps; learning starts after update 2; the 8-row buffer wraps.
TINY = dict(num_envs=4, train_frequency=2, total_timesteps=4 * 2 * 6, buffer_size=4 * 8,
            batch_size=8, learning_starts=16, n_step=2, target_update_interval=2, hidden_size=8)
# Sessions that always last exactly 6 steps, so episodes finish in updates 3 and 6.
FIXED_LENGTH = dict(max_steps_in_episode=6, patience_init=10.0)
EPISODE_METRICS = {"episode_return", "episode_length", "clicks", "purchases", "revenue",
                   "invalid_actions"}
LEARNER_METRICS = {"loss", "q_mean", "target_mean", "epsilon", "episodes_finished", "env_steps"}


@pytest.fixture(scope="module")
def rec():
    return ecomrl_jax.make("ShopperRec-v0")


@pytest.fixture(scope="module")
def fixed_length():
    return ecomrl_jax.make("ShopperRec-v0", **FIXED_LENGTH)


@pytest.fixture(scope="module")
def tiny_run(fixed_length):
    """One tiny run on fixed-length sessions; tests check its outputs."""
    return train_once(dqn, dqn.DQNConfig(**TINY), *fixed_length)


def test_epsilon_greedy_exploration():
    q = jnp.array([0.5, 2.0, -1.0, 1.0])
    @jax.jit
    def act(key, eps):
        keys = jax.random.split(key, 4000)
        return (jax.vmap(lambda k: dqn.explore(k, q, eps, 0))(keys),
                jax.vmap(lambda k: dqn.explore(k, q, eps, 2))(keys))

    single, slates = act(jax.random.key(0), 0.0)
    assert set(single.tolist()) == {1} and {tuple(s) for s in slates.tolist()} == {(1, 3)}
    single, slates = act(jax.random.key(0), 1.0)
    np.testing.assert_allclose(np.bincount(single, minlength=4) / 4000, 0.25, atol=0.03)
    assert np.all(slates[:, 0] != slates[:, 1])
    np.testing.assert_allclose(np.bincount(slates[:, 1], minlength=4) / 4000, 0.25, atol=0.03)
    single, _ = act(jax.random.key(0), 0.4)
    # greedy with probability 0.6 + 0.4 / 4
    np.testing.assert_allclose(np.mean(single == 1), 0.7, atol=0.03)


@pytest.mark.parametrize("schedule, steps, expected", [
    ("constant", 500, 1.0),
    ("linear", 0, 1.0), ("linear", 250, 0.55), ("linear", 500, 0.1), ("linear", 900, 0.1),
    ("exponential", 0, 1.0), ("exponential", 250, np.sqrt(0.1)), ("exponential", 900, 0.1),
])
def test_epsilon_schedules(schedule, steps, expected):
    config = dqn.DQNConfig(epsilon_schedule=schedule, epsilon_start=1.0, epsilon_end=0.1,
                           epsilon_decay_fraction=0.5, total_timesteps=1000)
    np.testing.assert_allclose(jax.jit(lambda s: dqn.epsilon(config, s))(jnp.int32(steps)),
                               expected, rtol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_envs=0), "num_envs must be an int >= 1"),
    (dict(batch_size=2.5), "batch_size must be an int >= 1"),
    (dict(n_step=0), "n_step must be an int >= 1"),
    (dict(learning_starts=-1), "learning_starts must be an int >= 0"),
    (dict(total_timesteps=7), "less than one update"),
    (dict(buffer_size=4), r"must hold at least one sample.s window = 2 steps"),
    (dict(dueling=1), "dueling must be a bool"),
    (dict(loss="l1"), "loss must be one of"),
    (dict(network="transformer-huge"), "network must be one of"),
    (dict(epsilon_schedule="cosine"), "epsilon_schedule must be one of"),
    (dict(gamma=0.0), r"gamma must be in \(0, 1\]"),
    (dict(tau=1.5), r"tau must be in \(0, 1\]"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(epsilon_start=1.2), r"epsilon_start must be in \[0, 1\]"),
    (dict(epsilon_schedule="exponential", epsilon_end=0.0), "exponential schedule"),
    (dict(epsilon_decay_fraction=0.0), r"epsilon_decay_fraction must be in \(0, 1\]"),
    (dict(max_grad_norm=-1.0), "max_grad_norm must be > 0"),
    (dict(huber_delta=0.0), "huber_delta must be > 0"),
])
def test_invalid_config_is_refused(rec, overrides, message):
    config = dqn.DQNConfig(**{**TINY, **overrides})
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):
        dqn.make_learner(config, *rec)


def test_stacked_config_grid_is_validated():
    configs = [dqn.DQNConfig(lr=lr, **TINY) for lr in (1e-3, -1e-3)]
    with pytest.raises(ValueError, match="lr must be > 0"):
        dqn.validate_config(jax.tree.map(lambda *x: jnp.stack(x), *configs))


def test_continuous_actions_are_refused():
    env, params = gymnax.make("Pendulum-v1")
    with pytest.raises(ValueError, match="needs a Discrete or Slate action space"):
        dqn.make_learner(dqn.DQNConfig(**TINY), env, params)


def test_metrics_shapes_dtypes_and_finite(tiny_run):
    config, (state, metrics) = tiny_run
    assert set(metrics) == EPISODE_METRICS | LEARNER_METRICS
    for name, value in metrics.items():
        assert value.shape == (config.num_updates,), name
        assert np.all(np.isfinite(value)), name
        expected = jnp.int32 if name in ("episodes_finished", "env_steps") else jnp.float32
        assert value.dtype == expected, name
    np.testing.assert_array_equal(metrics["env_steps"], 8 * np.arange(1, 7))
    # no gradient step before learning_starts (16 env steps), one per update after it
    assert np.all(metrics["loss"][:1] == 0.0) and np.all(metrics["loss"][1:] > 0.0)
    assert int(state.train_state.grad_steps) == config.num_gradient_steps == 5
    assert int(state.loop.update_step) == 6
    # epsilon decays linearly over the first quarter of the 48 steps, from 1 to 0.05
    np.testing.assert_allclose(metrics["epsilon"][:3], [1.0, 1.0 - 0.95 * 8 / 12, 0.05], rtol=1e-5)
    assert int(state.buffer.size) == 8 and int(state.buffer.position) == 12 % 8
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(dqn.network_params(state)))


def test_episode_metrics_average_finished_episodes_and_carry_when_none_finish(tiny_run):
    _, (_, metrics) = tiny_run
    np.testing.assert_array_equal(metrics["episodes_finished"], [0, 0, 4, 0, 0, 4])
    np.testing.assert_array_equal(metrics["episode_length"], [0, 0, 6, 6, 6, 6])
    for name in EPISODE_METRICS:
        assert metrics[name][0] == 0.0 and metrics[name][3] == metrics[name][2], name
    assert 0.0 < metrics["clicks"][2] <= 6.0




def test_chunked_resume_equals_one_shot(fixed_length, tiny_run):
    """The one-shot `train` (`loop.train_fn`, shared by every learner) equals chunked
    `run_updates`, and hard target updates land on the right gradient steps."""
    env, params = fixed_length
    config, (one_shot_state, one_shot_metrics) = tiny_run
    learner = dqn.make_learner(config, env, params)
    state = jax.jit(learner.init)(jax.random.key(0))
    three_updates = jax.jit(lambda s: run_updates(learner, s, 3))
    middle, first = three_updates(state)
    state, second = three_updates(middle)
    assert_identical(state, one_shot_state)
    assert_identical(jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, second),
                      one_shot_metrics)
    # Hard target updates every 2 gradient steps: after 2 (update 3) the target is the online
    # network; after 5 it is the copy made at step 4, neither the online net nor the old copy.
    assert int(middle.train_state.grad_steps) == 2 and int(state.train_state.grad_steps) == 5
    assert_identical(middle.train_state.target_params, middle.train_state.params)
    first_leaf = lambda tree: np.asarray(jax.tree.leaves(tree)[0])  # noqa: E731
    target = first_leaf(state.train_state.target_params)
    assert not np.array_equal(target, first_leaf(state.train_state.params))
    assert not np.array_equal(target, first_leaf(middle.train_state.target_params))


def test_vmap_over_seeds_on_a_box_observation_env():
    """`vmap(train)` over two seeds on CartPole: the MLP Q-network, plain DQN targets with
    1-step returns, Huber loss, constant learning rate and exponential epsilon."""
    env, params = gymnax.make("CartPole-v1")
    config = dqn.DQNConfig(**{**TINY, "n_step": 1, "double_dqn": False, "dueling": False,
                              "loss": "huber", "anneal_lr": False,
                              "epsilon_schedule": "exponential"})
    keys = jax.random.split(jax.random.key(1), 2)
    state, metrics = jax.jit(jax.vmap(dqn.make_train(config, env, params)))(keys)
    assert {"episode_return", "episode_length", "loss", "q_mean", "epsilon", "env_steps"} <= set(metrics)
    assert all(v.shape == (2, config.num_updates) for v in metrics.values())
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert metrics["episode_return"].dtype == jnp.float32 and metrics["env_steps"].dtype == jnp.int32
    assert state.loop.update_step.shape == (2,)
    assert not np.array_equal(metrics["loss"][0], metrics["loss"][1])


@pytest.mark.slow
def test_vmap_over_config_grid_on_slates_with_polyak_targets():
    """A grid of (lr, tau) vmaps with one compile on a 3-item slate env; Polyak averaging moves
    the target by tau toward the online network at every gradient step."""
    env, params = ecomrl_jax.make("ShopperRec-v0", slate_size=3)
    configs = [dqn.DQNConfig(lr=lr, tau=tau, **{**TINY, "target_update_interval": 1})
               for lr, tau in ((1e-4, 0.5), (1e-2, 0.1))]
    grid = jax.tree.map(lambda *x: jnp.stack(x), *configs)
    keys = jnp.stack([jax.random.key(0)] * 2)

    def run(config, key):
        """4 updates; also returns the train state before each of them."""
        learner = dqn.make_learner(config, env, params)

        def body(state, _):
            new_state, metrics = learner.update(state)
            return new_state, (metrics, state.train_state)

        return jax.lax.scan(body, learner.init(key), None, 4)

    state, (metrics, before) = jax.jit(jax.vmap(run))(grid, keys)
    assert all(v.shape == (2, 4) for v in metrics.values())
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert metrics["invalid_actions"].max() == 0.0
    slates = np.sort(state.buffer.data.action, axis=-1)  # (2 configs, 8 rows, 4 envs, 3)
    assert slates.shape == (2, 8, 4, 3) and np.all(slates[..., 1:] != slates[..., :-1])
    after = state.train_state
    for i, tau in enumerate((0.5, 0.1)):
        expected = jax.tree.map(lambda p, t: tau * p[i] + (1 - tau) * t[i, -1],
                                after.params, before.target_params)
        for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(after.target_params)):
            np.testing.assert_allclose(x, y[i], rtol=1e-5, atol=1e-6)
    # Same key, different lr: identical first rollout, different parameters after learning.
    np.testing.assert_array_equal(state.buffer.data.reward[0, :2], state.buffer.data.reward[1, :2])
    assert not np.array_equal(metrics["loss"][0, -1], metrics["loss"][1, -1])


def test_q_networks_shapes_and_permutation_equivariance(rec):
    """Plain and dueling Q-networks for ShopperRec's Dict and CartPole's Box observations."""
    env, params = rec
    cartpole, cartpole_params = gymnax.make("CartPole-v1")
    networks = [(make_q_network(env.observation_space(params), env.num_actions, 8, dueling),
                 make_q_network(cartpole.observation_space(cartpole_params), 2, 8, dueling))
                for dueling in (False, True)]
    perm = jnp.array([3, 1, 4, 0, 9, 2, 6, 5, 8, 7])

    def run(key):
        obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 5), params)
        permuted = {**obs, "candidates": obs["candidates"][:, perm]}
        box_obs = jax.random.normal(key, (5, 4))
        outputs = []
        for candidate_net, box_net in networks:
            net_params = candidate_net.init(key, obs)
            outputs.append((candidate_net.apply(net_params, obs),
                            candidate_net.apply(net_params, permuted),
                            box_net.apply(box_net.init(key, box_obs), box_obs)))
        return outputs

    for q, permuted_q, box_q in jax.jit(run)(jax.random.key(0)):
        assert q.shape == (5, env.num_candidates) and box_q.shape == (5, 2)
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(box_q))
        np.testing.assert_allclose(permuted_q, q[:, perm], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no Q-network for observation space"):
        make_q_network(gymnax.environments.spaces.Discrete(3), 3)


@pytest.mark.slow
def test_transformer_torso_trains_and_acts_greedily(fixed_length):
    """A tiny dueling DQN run with the history Transformer as torso: finite metrics, the
    torso's params under "torso", and the greedy policy is the argmax of its Q-values."""
    env, params = fixed_length
    config = dqn.DQNConfig(**TINY, network="transformer-tiny")
    network = make_q_network(env.observation_space(params), env.num_actions, dueling=True,
                             network="transformer-tiny")

    def run(key):
        state, metrics = dqn.make_train(config, env, params)(key)
        net = dqn.network_params(state)
        obs, env_state = env.reset(key, params)
        greedy = dqn.make_policy(config, env, net, deterministic=True)(key, obs, env_state, params)
        return net, metrics, greedy, jnp.argmax(network.apply(net, obs))

    net, metrics, greedy, best = jax.jit(run)(jax.random.key(0))
    assert set(net["params"]) == {"torso"}
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert float(metrics["loss"][-1]) > 0.0 and int(greedy) == int(best)


def test_policy_for_a_single_env(fixed_length, tiny_run):
    env, params = fixed_length
    config, (state, _) = tiny_run
    net = dqn.network_params(state)
    sample = dqn.make_policy(config, env, net)
    greedy = dqn.make_policy(config, env, net, deterministic=True)
    network = make_q_network(env.observation_space(params), env.num_actions, config.hidden_size,
                             config.dueling)

    @jax.jit
    def act(key):
        obs, env_state = env.reset(key, params)
        greedy_actions = [greedy(jax.random.key(i), obs, env_state, params) for i in range(2)]
        return sample(key, obs, env_state, params), greedy_actions, jnp.argmax(network.apply(net, obs))

    action, greedy_actions, best = act(jax.random.key(3))
    assert action.shape == () and action.dtype == jnp.int32 and 0 <= int(action) < env.num_candidates
    assert [int(a) for a in greedy_actions] == [int(best)] * 2
    other = dqn.make_policy(config, env, jax.tree.map(jnp.zeros_like, net))
    assert jax.tree.structure(other) == jax.tree.structure(sample)


@pytest.mark.slow
def test_default_config_beats_random_and_myopic_oracle(rec):
    """Default budget (200k env steps, under a minute on a 2-core CPU): greedy DQN (about 28),
    the myopic oracle (about 9.6) and random (about 7.4) on the same 1000 episodes."""
    env, params = rec
    config = dqn.DQNConfig()
    state, metrics = jax.jit(dqn.make_train(config, env, params))(jax.random.key(0))
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    policy = dqn.make_policy(config, env, dqn.network_params(state), deterministic=True)
    learned = evaluate(env, params, policy, jax.random.key(1), 1000)["return"].mean()
    oracle = evaluate(env, params, myopic_oracle(env, params), jax.random.key(1), 1000)["return"].mean()
    rand = evaluate(env, params, random_policy(env, params), jax.random.key(1), 1000)["return"].mean()
    assert learned > 2.0 * oracle > 2.0 * rand, f"DQN {learned:.2f}, oracle {oracle:.2f}, random {rand:.2f}"


@pytest.mark.slow
def test_solves_cartpole():
    """200k env steps (~20 s): the greedy policy balances for the full 500 steps (solved means
    a mean return of at least 475)."""
    env, params = gymnax.make("CartPole-v1")
    config = dqn.DQNConfig(num_envs=4, train_frequency=2, total_timesteps=200_000,
                           buffer_size=10_000, learning_starts=2_000, target_update_interval=100,
                           epsilon_decay_fraction=0.3, hidden_size=64)
    state, _ = jax.jit(dqn.make_train(config, env, params))(jax.random.key(0))
    policy = dqn.make_policy(config, env, dqn.network_params(state), deterministic=True)
    returns = evaluate(env, params, policy, jax.random.key(1), 100)["return"]
    assert returns.mean() >= 475.0, f"mean greedy return {returns.mean():.1f}"
