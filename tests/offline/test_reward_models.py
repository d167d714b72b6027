"""Reward models: logistic regression and the MLP recover a known click model per position;
cross-fitting never predicts a row with a model that saw it; bad settings are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.offline import LoggedBandit, load_obd
from ecomrl_jax.offline.reward_models import RewardModel, check_rewards, fit_predict

N, NUM_ACTIONS, LEN_LIST, DIM = 4000, 6, 2, 3


def logistic_log(key, link="logistic"):
    """Uniform-random log whose click logit is linear in context, item features and position;
    returns it and the true q (n, A, L)."""
    k_x, k_items, k_a, k_k, k_r, k_beta = jax.random.split(key, 6)
    context = jax.random.normal(k_x, (N, DIM))
    items = jax.random.normal(k_items, (NUM_ACTIONS, 2))
    beta, gamma = jax.random.normal(k_beta, (DIM,)), jnp.array([1.0, -0.5])
    logit = (context @ beta)[:, None, None] + (items @ gamma)[None, :, None] + jnp.array([-1.0, -2.0])
    q_true = jax.nn.sigmoid(logit) if link == "logistic" else 2.0 + logit
    action = jax.random.randint(k_a, (N,), 0, NUM_ACTIONS)
    position = jax.random.randint(k_k, (N,), 0, LEN_LIST)
    mean = q_true[jnp.arange(N), action, position]
    reward = (jax.random.bernoulli(k_r, mean).astype(jnp.float32) if link == "logistic"
              else mean + 0.3 * jax.random.normal(k_r, (N,)))
    data = LoggedBandit(context=context, action=action, position=position, reward=reward,
                        propensity=jnp.full((N,), 1 / NUM_ACTIONS), action_context=items,
                        num_actions=NUM_ACTIONS, len_list=LEN_LIST)
    return data, q_true


@pytest.fixture(scope="module")
def log():
    return logistic_log(jax.random.key(0))


@pytest.mark.parametrize("model, tolerance", [
    (RewardModel(), 0.025),
    (RewardModel(hidden=(16,), num_steps=300, learning_rate=0.01, l2=1e-3), 0.04),  # more variance on a linear truth
], ids=["logistic_regression", "mlp"])
def test_recovers_a_logistic_click_model(log, model, tolerance):
    data, q_true = log
    q_hat = jax.jit(fit_predict, static_argnums=0)(model, data, jax.random.key(1))
    assert q_hat.shape == (N, NUM_ACTIONS, LEN_LIST)
    assert float(q_hat.min()) > 0 and float(q_hat.max()) < 1
    assert float(jnp.mean(jnp.abs(q_hat - q_true))) < tolerance
    assert np.corrcoef(np.ravel(q_hat), np.ravel(q_true))[0, 1] > 0.95


def test_identity_link_fits_continuous_rewards():
    data, q_true = logistic_log(jax.random.key(2), link="identity")
    q_hat = fit_predict(RewardModel(link="identity", num_steps=200), data, jax.random.key(1))
    assert float(jnp.mean(jnp.abs(q_hat - q_true))) < 0.05


def test_cross_fitting_predicts_each_row_without_its_own_reward(log):
    """Flipping one row's reward leaves its own cross-fitted prediction bit-identical (its fold's
    models never saw it) while the other folds' models move; fitted on all rows, it moves too."""
    data, _ = log
    changed = data.replace(reward=data.reward.at[0].set(1.0 - data.reward[0]))
    fit = jax.jit(fit_predict, static_argnums=0)
    crossed, one_fold = RewardModel(num_folds=3, num_steps=100), RewardModel(num_folds=1, num_steps=100)
    key = jax.random.key(3)
    a, b = fit(crossed, data, key), fit(crossed, changed, key)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a, b)  # the other folds' models trained on row 0
    assert not np.array_equal(fit(one_fold, data, key)[0], fit(one_fold, changed, key)[0])


def test_bad_settings_are_refused(log):
    data, _ = log
    with pytest.raises(ValueError, match="RewardModel.num_folds must be an int >= 1"):
        check_rewards(RewardModel(num_folds=0), data)
    with pytest.raises(ValueError, match="link must be one of"):
        check_rewards(RewardModel(link="probit"), data)
    with pytest.raises(ValueError, match=r"fits rewards in \[0, 1\], got range \[0, 2\]"):
        check_rewards(RewardModel(), data.replace(reward=2 * data.reward))
    with pytest.raises(ValueError, match=r"no logged rows at positions \[1\]"):
        check_rewards(RewardModel(), data.replace(position=jnp.zeros_like(data.position)))


@pytest.mark.slow
def test_cross_fitted_predictions_are_calibrated_on_obd():
    """On OBD's rare clicks (0.4%) the mean out-of-fold prediction at the logged item and position
    matches the click rate (the output bias starts at the logit of the mean reward)."""
    data = load_obd("random")
    q_hat = fit_predict(RewardModel(num_folds=3, num_steps=30), data, jax.random.key(0))
    logged = q_hat[jnp.arange(data.n_rows), data.action, data.position]
    assert abs(float(logged.mean()) / float(data.reward.mean()) - 1) < 0.05
