"""Pre-training on logged trajectories (ecomrl_jax/learners/pretrain.py; ShopperRec logs from
ecomrl_jax/envs/recommendation/logs.py) and the transformer torso of PPO and A2C, including RL
fine-tuning from pre-trained params.

The behaviour-cloning accuracy check trains longer and is marked slow.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.learners import a2c, ppo, pretrain
from ecomrl_jax.envs.recommendation import logs as shopper_logs
from ecomrl_jax.envs.recommendation.policies import myopic_oracle
from ecomrl_jax.learners.actor_critic import make_network

TINY_PPO = dict(num_envs=8, num_steps=8, total_timesteps=8 * 8 * 2, update_epochs=1,
                num_minibatches=2, network="transformer-tiny")


@pytest.fixture(scope="module")
def rec():
    return ecomrl_jax.make("ShopperRec-v0")


def _logs(env, params, key, epsilon, num_envs, num_steps):
    policy = shopper_logs.epsilon_policy(myopic_oracle(env, params), env, params, epsilon)
    return jax.jit(lambda k: shopper_logs.collect_logs(env, params, policy, k, num_envs, num_steps))(key)


@pytest.fixture(scope="module")
def logs(rec):
    return _logs(*rec, jax.random.key(0), 0.3, 16, 32)


@pytest.fixture(scope="module")
def short_pretrain(rec, logs):
    """Pre-trained tiny transformer params (2 epochs of 512 logged steps) and their metrics."""
    config = pretrain.PretrainConfig(batch_size=64, num_epochs=2, lr=3e-3)
    fn = pretrain.make_pretrain(config, *rec)
    return jax.jit(fn)(jax.random.key(1), logs)


def test_logs_shapes_and_clicked_slot_is_the_shown_one(logs):
    assert logs.obs["candidates"].shape == (512, 10, 11) and logs.action.shape == (512,)
    assert logs.action.dtype == logs.click_slot.dtype == jnp.int32
    clicked = np.asarray(logs.clicked) > 0
    assert 0.2 < clicked.mean() < 0.95
    click_slot, action = np.asarray(logs.click_slot), np.asarray(logs.action)
    np.testing.assert_array_equal(click_slot[clicked], action[clicked])
    assert np.all(np.asarray(logs.click_slot)[~clicked] == 0)


def test_slate_logs_click_slot_lies_in_the_shown_slate():
    env, params = ecomrl_jax.make("ShopperRec-v0", slate_size=3)
    logs = _logs(env, params, jax.random.key(2), 0.5, 8, 16)
    assert logs.action.shape == (128, 3)
    clicked = np.asarray(logs.clicked) > 0
    assert clicked.any()
    shown = np.asarray(logs.action)[clicked] == np.asarray(logs.click_slot)[clicked][:, None]
    assert np.all(shown.sum(axis=1) >= 1)
    assert len(np.unique(np.argmax(shown, axis=1))) > 1  # not always the first position


def test_epsilon_policy_mixes_random_and_oracle_actions(rec):
    env, params = rec
    obs, state = env.reset(jax.random.key(0), params)
    oracle = myopic_oracle(env, params)
    best = int(oracle(jax.random.key(0), obs, state, params))
    keys = jax.random.split(jax.random.key(1), 1000)
    share_best = jax.jit(lambda eps: jnp.mean(jax.vmap(lambda k: shopper_logs.epsilon_policy(
        oracle, env, params, eps)(k, obs, state, params))(keys) == best))
    for epsilon, expected in ((0.0, 1.0), (0.3, 0.73), (1.0, 0.1)):
        assert abs(float(share_best(epsilon)) - expected) < 0.05, epsilon


def test_collect_logs_refuses_other_envs():
    env, params = ecomrl_jax.make("ToyRec-v0")
    with pytest.raises(ValueError, match="needs an unwrapped ShopperRec env"):
        shopper_logs.collect_logs(env, params, lambda *a: 0, jax.random.key(0), 2, 2)


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size must be an int >= 1"),
    (dict(network="default"), "network must be a transformer"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(click_coef=-1.0), "click_coef must be >= 0"),
])
def test_invalid_pretrain_config_is_refused(rec, overrides, message):
    with pytest.raises(ValueError, match=message):
        pretrain.make_pretrain(pretrain.PretrainConfig(**overrides), *rec)


def test_pretraining_reduces_losses_and_returns_network_params(rec, short_pretrain):
    env, params = rec
    network_params, metrics = short_pretrain
    assert set(metrics) == {"loss_bc", "loss_click", "accuracy"}
    assert all(v.shape == (16,) and np.all(np.isfinite(v)) for v in metrics.values())
    assert np.mean(metrics["loss_bc"][-4:]) < np.mean(metrics["loss_bc"][:4]) - 0.05
    assert np.mean(metrics["loss_click"][-4:]) < np.mean(metrics["loss_click"][:4])
    net, _ = make_network(env, params, 32, "test", "transformer-tiny")
    expected = jax.eval_shape(net.init, jax.random.key(0), jax.tree.map(lambda x: x[0], _obs(rec)))
    assert jax.tree.structure(network_params) == jax.tree.structure(expected)


def _obs(rec):
    env, params = rec
    return jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(3), 8), params)[0]


def test_ppo_starts_from_pretrained_params(rec, short_pretrain):
    env, params = rec
    network_params, _ = short_pretrain
    config = ppo.PPOConfig(**TINY_PPO)
    learner = ppo.make_learner(config, env, params, init_network_params=network_params)
    state = learner.init(jax.random.key(0))
    for a, b in zip(jax.tree.leaves(ppo.network_params(state)), jax.tree.leaves(network_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    net, _ = make_network(env, params, config.hidden_size, "test", config.network)
    policy = ppo.make_policy(config, env, ppo.network_params(state), deterministic=True)
    obs = jax.tree.map(lambda x: x[0], _obs(rec))
    greedy = int(jnp.argmax(net.apply(network_params, obs)[0]))
    assert int(policy(jax.random.key(0), obs, None, params)) == greedy


def test_a2c_starts_from_pretrained_params(rec, short_pretrain):
    network_params, _ = short_pretrain
    config = a2c.A2CConfig(num_envs=4, num_steps=4, total_timesteps=16, network="transformer-tiny")
    state = a2c.make_learner(config, *rec, init_network_params=network_params).init(jax.random.key(0))
    for a, b in zip(jax.tree.leaves(a2c.network_params(state)), jax.tree.leaves(network_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mismatched_init_params_are_refused(rec, short_pretrain):
    network_params, _ = short_pretrain
    config = ppo.PPOConfig(**{**TINY_PPO, "network": "transformer-small"})
    with pytest.raises(ValueError, match="initial network params do not fit"):
        ppo.make_learner(config, *rec, init_network_params=network_params).init(jax.random.key(0))


def test_unknown_network_is_refused(rec):
    with pytest.raises(ValueError, match="network must be one of"):
        ppo.make_learner(ppo.PPOConfig(**{**TINY_PPO, "network": "transformer-huge"}), *rec)


@pytest.mark.slow
def test_ppo_with_transformer_runs_under_jit_and_vmap(rec, short_pretrain):
    """Two seeds vmapped, fine-tuned from pre-trained params: finite throughout, and the first
    update's policy is the pre-trained one, sharper than a fresh network's near-uniform one
    (entropy log 10, its logits head starts near 0)."""
    network_params, _ = short_pretrain
    config = ppo.PPOConfig(**TINY_PPO)
    keys = jax.random.split(jax.random.key(0), 2)
    train = jax.vmap(ppo.make_train(config, *rec, init_network_params=network_params))
    state, metrics = jax.jit(train)(keys)
    assert metrics["entropy"].shape == (2, config.num_updates)
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(ppo.network_params(state)))
    assert np.all(metrics["entropy"][:, 0] < np.log(10) - 0.05)


@pytest.mark.slow
def test_behaviour_cloning_agrees_with_the_oracle_on_held_out_logs(rec):
    env, params = rec
    train_logs = _logs(env, params, jax.random.key(10), 0.3, 64, 128)
    held_out = _logs(env, params, jax.random.key(11), 0.0, 32, 64)
    config = pretrain.PretrainConfig(batch_size=256, num_epochs=8, lr=3e-3)
    network_params, metrics = jax.jit(pretrain.make_pretrain(config, env, params))(
        jax.random.key(1), train_logs)
    assert np.mean(metrics["loss_bc"][-8:]) < np.mean(metrics["loss_bc"][:8]) - 0.2
    net, _ = make_network(env, params, config.hidden_size, "test", config.network)
    logits, _ = jax.jit(net.apply)(network_params, held_out.obs)
    agreement = float(jnp.mean(jnp.argmax(logits, axis=-1) == held_out.action))
    assert agreement > 0.35  # chance: 1 / 10 candidates
