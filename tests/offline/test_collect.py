"""collect / true_value: exact propensities, logs that agree with the simulator's true value, and
an unbiased IPS on them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.offline.collect import (action_dist, collect, epsilon_greedy, position_marginals,
                                        softmax_policy, true_value, uniform_policy)
from ecomrl_jax.offline.data import validate
from ecomrl_jax.wrappers import flatten

ENVS = {
    "shopper": ("ShopperRec-v0", dict(num_items=50, num_candidates=5, num_shoppers=50)),
    "shopper_slate": ("ShopperRec-v0", dict(num_items=50, num_candidates=5, num_shoppers=50,
                                             slate_size=2)),
    "pricing": ("DynamicPricing-v0", dict(num_prices=6)),
    "crm": ("CouponCRM-v0", dict(num_customers=100)),
}


def linear_policy(env, params, num_actions, seed, scale):
    """softmax of a random linear score of the context."""
    obs, _ = env.reset(jax.random.key(0), params)
    weights = scale * jax.random.normal(jax.random.key(seed), (flatten(obs).shape[0], num_actions))
    return softmax_policy(lambda x: x @ weights)


SINGLE_ITEM = [name for name, (_, kwargs) in ENVS.items() if "slate_size" not in kwargs]


@functools.cache
def _logged(name):
    env_id, kwargs = ENVS[name]
    env, params = ecomrl_jax.make(env_id, **kwargs)
    num_actions = env.num_actions
    behavior = linear_policy(env, params, num_actions, 1, 0.3)
    truth = true_value(env, params, behavior, jax.random.key(3), 2000)
    return env, params, behavior, truth, collect(env, params, behavior, jax.random.key(2), 4000)


@pytest.fixture(scope="module", params=list(ENVS))
def logged(request):
    return _logged(request.param)


@pytest.fixture(scope="module", params=SINGLE_ITEM)
def single_item_logged(request):
    """Single-item logs only: position-wise IPS assumes positions do not interact, and
    ShopperRec's logit choice makes a slate's positions compete (see experiments/ope_accuracy.py)."""
    return _logged(request.param)


def z_score(log_values, truth):
    """Difference of a log mean and a true value in standard errors of both."""
    se_log = np.std(log_values) / np.sqrt(len(log_values))
    mean, low, high = truth
    return (np.mean(log_values) - mean) / np.hypot(se_log, (high - low) / (2 * 1.96))


def test_log_is_valid_and_propensities_are_the_policy_probabilities(logged):
    env, params, behavior, truth, log = logged
    validate(log)
    assert log.num_actions == env.num_actions
    decisions = log.n_rows // log.len_list
    assert log.n_rows == 4000 * log.len_list
    np.testing.assert_array_equal(log.position, np.tile(np.arange(log.len_list), decisions))
    dist = action_dist(behavior, log.context, log.len_list)
    np.testing.assert_allclose(log.propensity, dist[np.arange(log.n_rows), log.action, log.position],
                               rtol=1e-5)
    if log.len_list == 1:
        probs = jax.vmap(behavior)(log.context)
        np.testing.assert_allclose(log.propensity, probs[np.arange(log.n_rows), log.action], rtol=1e-5)
    else:  # the slate shows distinct items
        slates = np.asarray(log.action).reshape(decisions, log.len_list)
        assert (slates[:, 0] != slates[:, 1]).all()


def test_log_mean_reward_matches_true_value_of_the_behaviour(logged):
    env, params, behavior, truth, log = logged
    assert abs(z_score(log.reward, truth)) < 3.5


def test_ips_on_the_log_is_unbiased_for_another_policy(single_item_logged):
    env, params, behavior, _, log = single_item_logged
    target = linear_policy(env, params, env.num_actions, 7, 0.3)
    weight = action_dist(target, log.context, 1)[np.arange(log.n_rows), log.action, 0] / log.propensity
    truth = true_value(env, params, target, jax.random.key(4), 2000)
    assert abs(z_score(weight * log.reward, truth)) < 3.5
    assert np.mean(np.abs(weight - 1.0)) > 0.2  # a policy unlike the behaviour


def test_slate_marginals_match_sampled_slates():
    probs = jnp.array([0.4, 0.3, 0.15, 0.1, 0.05])
    marginals = position_marginals(probs, 3)
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(marginals[:, 0], probs, rtol=1e-6)
    keys = jax.random.split(jax.random.key(0), 20000)
    slates = jax.vmap(lambda k: jax.lax.top_k(jnp.log(probs) + jax.random.gumbel(k, (5,)), 3)[1])(keys)
    counts = np.stack([np.bincount(np.asarray(slates[:, j]), minlength=5) for j in range(3)], 1)
    se = np.sqrt(marginals * (1 - marginals) / len(keys))
    assert np.all(np.abs(counts / len(keys) - marginals) < 4 * se + 1e-9)


def test_epsilon_greedy_and_uniform_probabilities():
    policy = epsilon_greedy(lambda x: x, 0.2)
    np.testing.assert_allclose(policy(jnp.array([0.0, 3.0, 1.0, 2.0])), [0.05, 0.85, 0.05, 0.05])
    np.testing.assert_allclose(uniform_policy(4)(jnp.zeros(3)), 0.25)
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_greedy(lambda x: x, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        softmax_policy(lambda x: x, 0.0)


def test_bad_input_is_refused():
    env, params = ecomrl_jax.make("Inventory-v0")
    with pytest.raises(ValueError, match="support ShopperRec-v0"):
        collect(env, params, uniform_policy(3), jax.random.key(0), 10)
    env, params = ecomrl_jax.make("DynamicPricing-v0", continuous=True)
    with pytest.raises(ValueError, match="discrete prices"):
        true_value(env, params, uniform_policy(3), jax.random.key(0), 10)
    env, params = ecomrl_jax.make("DynamicPricing-v0", initial_stock=10.0)
    with pytest.raises(ValueError, match="unlimited stock"):
        collect(env, params, uniform_policy(12), jax.random.key(0), 10)
    env, params = ecomrl_jax.make("CouponCRM-v0", num_customers=10)
    with pytest.raises(ValueError, match="positive int"):
        collect(env, params, uniform_policy(6), jax.random.key(0), 0)


def test_slate_probabilities_of_a_sharp_policy_stay_a_distribution():
    """Float32 1 - (placed mass) cancels when one item holds nearly all the mass; the unplaced
    mass summed directly keeps every slate probability in [0, 1] and the total at 1."""
    probs = jax.nn.softmax(jnp.array([30.0, 0.0, -1.0, 2.0, 1.0]))
    marginals = position_marginals(probs, 3)
    assert float(marginals.max()) <= 1.0 + 1e-6
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0, rtol=1e-5)
