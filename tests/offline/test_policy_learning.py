"""Offline policy learning: a policy learned from simulator logs beats the behaviour policy in the
simulator itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.offline import reward_models
from ecomrl_jax.offline.collect import collect, softmax_policy, true_value
from ecomrl_jax.offline.data import LoggedBandit
from ecomrl_jax.offline.policy_learning import PolicyLearner, learn

NUM_CANDIDATES = 5
ITEM_FEATURES = 11  # ShopperRec's candidate columns: embedding (8), log price, appeal, quality


def appeal(context):
    """ShopperRec's candidates' appeal column: a popularity-like score a shop could log under."""
    return context[:NUM_CANDIDATES * ITEM_FEATURES].reshape(NUM_CANDIDATES, ITEM_FEATURES)[:, 9]


@pytest.fixture(scope="module")
def setup():
    env, params = ecomrl_jax.make("ShopperRec-v0", num_items=100, num_candidates=NUM_CANDIDATES,
                                  num_shoppers=100)
    behavior = softmax_policy(appeal, 2.0)
    log = collect(env, params, behavior, jax.random.key(0), 4000)
    return env, params, behavior, log, true_value(env, params, behavior, jax.random.key(1), 2000)


@pytest.mark.parametrize("objective", ["ipw", "dr"])
def test_learned_policy_beats_the_behaviour_in_the_simulator(setup, objective):
    env, params, behavior, log, behavior_value = setup
    q_hat = None
    if objective == "dr":
        model = reward_models.RewardModel(link="identity", num_steps=100)
        q_hat = reward_models.fit_predict(model, log, jax.random.key(2))
    config = PolicyLearner(objective=objective, hidden=(), num_steps=300, learning_rate=1e-2,
                           item_features=ITEM_FEATURES)
    policy = learn(config, log, jax.random.key(3), q_hat)
    value, low, _ = true_value(env, params, policy.probs, jax.random.key(1), 2000)
    assert low > behavior_value[2] + 0.02, (value, behavior_value)


def test_action_dist_of_both_slate_forms_sums_to_one():
    n, num_actions, len_list = 60, 4, 2
    k_context, k_action, k_reward = jax.random.split(jax.random.key(0), 3)
    log = LoggedBandit(context=jax.random.normal(k_context, (n, 3)),
                       action=jax.random.randint(k_action, (n,), 0, num_actions),
                       position=jnp.tile(jnp.arange(len_list), n // len_list),
                       reward=jax.random.bernoulli(k_reward, 0.3, (n,)).astype(jnp.float32),
                       propensity=jnp.full(n, 1 / num_actions), num_actions=num_actions,
                       len_list=len_list)
    for form in ("plackett-luce", "per-position"):
        policy = learn(PolicyLearner(objective="ipw", slate=form, num_steps=5, hidden=(8,)), log,
                       jax.random.key(1))
        dist = policy.action_dist(log.context)
        assert dist.shape == (n, num_actions, len_list)
        np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="per position"):
        policy.probs(log.context[0])


def test_bad_config_is_refused(setup):
    log = setup[3]
    with pytest.raises(ValueError, match="objective"):
        learn(PolicyLearner(objective="dm"), log, jax.random.key(0))
    with pytest.raises(ValueError, match="q_hat"):
        learn(PolicyLearner(objective="dr"), log, jax.random.key(0))
    with pytest.raises(ValueError, match="slate"):
        learn(PolicyLearner(slate="cascade"), log, jax.random.key(0))
    with pytest.raises(ValueError, match="num_steps"):
        learn(PolicyLearner(num_steps=0), log, jax.random.key(0))
