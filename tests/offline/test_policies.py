"""Evaluation policies: uniform, ZOZOTOWN's Bernoulli TS by simulation, any policy_fn by simulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.offline.policies import (bts_action_dist, bts_slate, simulate_action_dist,
                                          uniform_action_dist, zozotown_prior)


def test_zozotown_prior_covers_obds_campaigns():
    for campaign, items in (("all", 80), ("men", 34), ("women", 46)):
        alpha, beta = zozotown_prior(campaign)
        assert alpha.shape == beta.shape == (items,) and float(alpha.min()) >= 1 and float(beta.min()) >= 1
    with pytest.raises(ValueError, match=r"campaign must be one of \['all', 'men', 'women'\]"):
        zozotown_prior("kids")


def test_bts_slates_hold_distinct_items_and_favour_high_means():
    alpha, beta = zozotown_prior("all")
    assert len(set(np.asarray(bts_slate(jax.random.key(0), alpha, beta, 3)).tolist())) == 3
    dist = jax.jit(bts_action_dist, static_argnums=(3, 4, 5))(jax.random.key(1), alpha, beta, 3, 4000, 2000)
    assert dist.shape == (80, 3)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0, rtol=1e-6)  # one item per position
    assert float(dist.sum(axis=1).max()) <= 1.0 + 1e-6  # an item fills at most one position
    prior_mean = alpha / (alpha + beta)
    assert int(jnp.argmax(dist[:, 0])) in set(np.argsort(-np.asarray(prior_mean))[:5].tolist())
    with pytest.raises(ValueError, match="multiple of chunk"):
        bts_action_dist(jax.random.key(1), alpha, beta, 3, 3000, 2000)


def test_simulated_distribution_of_a_softmax_policy_matches_its_probabilities():
    weights = jnp.array([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, -1.0]])
    context = jax.random.normal(jax.random.key(0), (6, 2))

    def policy_fn(key, obs, env_state, env_params):
        return jax.random.categorical(key, obs @ weights)

    dist = simulate_action_dist(policy_fn, jax.random.key(1), context, num_actions=4, num_samples=4000)
    assert dist.shape == (6, 4, 1)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(dist[:, :, 0], jax.nn.softmax(context @ weights), atol=0.03)


def test_simulated_distribution_of_a_deterministic_slate_policy_is_one_hot():
    context = jax.random.normal(jax.random.key(0), (5, 7))

    def top3(key, obs, env_state, env_params):
        return jax.lax.top_k(obs, 3)[1]

    dist = simulate_action_dist(top3, jax.random.key(1), context, num_actions=7, len_list=3, num_samples=8)
    expected = jax.nn.one_hot(jax.lax.top_k(context, 3)[1], 7).transpose(0, 2, 1)
    np.testing.assert_array_equal(dist, expected)
    with pytest.raises(ValueError, match="returns 3 item.*expected len_list=2"):
        simulate_action_dist(top3, jax.random.key(1), context, num_actions=7, len_list=2, num_samples=8)


def test_uniform_action_dist():
    dist = uniform_action_dist(4, 5, 3)
    assert dist.shape == (4, 5, 3) and dist.dtype == jnp.float32
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-6)
