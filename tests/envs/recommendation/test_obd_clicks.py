"""OBDClicks-v0: the click model, its fit, and its out-of-sample check against OBD's BTS log."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.envs.recommendation.obd_clicks import FitConfig, OBDClicks
from ecomrl_jax.evaluation import confidence_interval
from ecomrl_jax.offline import LoggedBandit, load_obd
from ecomrl_jax.offline.policies import bts_action_dist, zozotown_prior


def sim_click_rate(env, params, action_dist):
    """Exact click rate per shown position of a context-free policy with position-wise
    distribution `action_dist` (num_items, slate_size), over the simulator's users."""
    probs = jax.vmap(lambda x: env.click_probs(x, params))(params.user_context)
    return float(jnp.einsum("ukl,kl->", probs, action_dist)) / (params.user_context.shape[0] * env.slate_size)


def binomial_interval(clicks):
    """95% Wilson interval of a click rate."""
    n, p, z = clicks.size, clicks.mean(), 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.slow  # simulating BTS's action distribution takes ~45 s on a 2-core CPU
def test_fitted_simulator_matches_the_logged_click_rates_of_random_and_bts():
    env, params = ecomrl_jax.make("OBDClicks-v0")
    alpha, beta = zozotown_prior("all")
    policies = {"random": jnp.full((80, 3), 1 / 80),
                "bts": bts_action_dist(jax.random.key(0), alpha, beta, 3)}
    for behavior, dist in policies.items():
        low, high = binomial_interval(np.asarray(load_obd(behavior).reward))
        assert low <= sim_click_rate(env, params, dist) <= high, behavior


@pytest.mark.slow
def test_fit_recovers_a_known_click_model():
    env = OBDClicks(num_items=4, slate_size=2, context_dim=3, num_users=20_000)
    k_ctx, k_act, k_click = jax.random.split(jax.random.key(0), 3)
    context = jax.random.bernoulli(k_ctx, 0.5, (20_000, 3)).astype(jnp.float32)
    true = env.fit_params(LoggedBandit(context=context, action=jnp.zeros(20_000, jnp.int32),
                                       position=jnp.zeros(20_000, jnp.int32),
                                       reward=jnp.full(20_000, 0.5), propensity=jnp.ones(20_000),
                                       num_actions=4, len_list=2), FitConfig(num_steps=1))
    true = true.replace(bias=-1.0, item_logit=jnp.array([0.5, 0.0, -0.5, 1.0]),
                        position_logit=jnp.array([0.3, -0.3]), context_weight=jnp.array([0.5, -0.5, 0.0]),
                        item_position_logit=jnp.zeros((4, 2)))
    action = jax.random.randint(k_act, (20_000,), 0, 4)
    position = jnp.arange(20_000) % 2
    p = jax.vmap(lambda x, a, k: env.click_probs(x, true)[a, k])(context, action, position)
    log = LoggedBandit(context=context, action=action, position=position,
                       reward=jax.random.bernoulli(k_click, p).astype(jnp.float32),
                       propensity=jnp.full(20_000, 0.25), num_actions=4, len_list=2)
    fitted = env.fit_params(log, FitConfig(l2=0.0, num_steps=500))
    recovered = jax.vmap(lambda x: env.click_probs(x, fitted))(context[:200])
    expected = jax.vmap(lambda x: env.click_probs(x, true))(context[:200])
    np.testing.assert_allclose(recovered, expected, atol=0.03)


def test_clicks_follow_the_model_and_invalid_slots_show_nothing():
    env, params = ecomrl_jax.make("OBDClicks-v0", max_steps_in_episode=5)
    params = params.replace(bias=jnp.float32(0.0))  # click rates near 1/2, so counts are informative
    _, state = env.reset(jax.random.key(0), params)
    slate = jnp.array([3, 7, 7])  # the repeated slot shows nothing
    keys = jax.random.split(jax.random.key(1), 4000)
    out = jax.vmap(lambda k: env.step_env(k, state, slate, params))(keys)
    info = out[4]
    np.testing.assert_array_equal(info["invalid_actions"], 1.0)
    expected = env.click_probs(params.user_context[state.user], params)[slate[:2], jnp.arange(2)].sum()
    mean, low, high = confidence_interval(np.asarray(info["clicks"]))
    assert low - 0.01 <= float(expected) <= high + 0.01


def test_fit_refuses_a_log_of_other_sizes():
    env = OBDClicks()
    with pytest.raises(ValueError, match="cannot fit"):
        env.fit_params(load_obd("bts"))  # 22 context columns, not 20
