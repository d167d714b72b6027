"""PacingResidual (ecomrl_jax/envs/ads/pacing_residual.py): AdBidding with the action a factor
on linear pacing's multiplier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.ads.pacing_residual import DEFAULT_FACTORS, PacingResidual
from ecomrl_jax.envs.ads.policies import linear_pacing
from tests.helpers import assert_identical

SIZES = dict(num_auctions=20, num_steps=12, daily_budget=1.0)


@pytest.fixture(scope="module")
def cont():
    return ecomrl_jax.make("AdBidding-v1", continuous=True, **SIZES)


def test_factor_one_is_linear_pacing(cont):
    env, params = cont
    residual = PacingResidual(env)
    one = DEFAULT_FACTORS.index(1.0)
    pacing = linear_pacing(env, params)

    def rollout(use_residual):
        def body(carry, key):
            obs, state = carry
            k_act, k_step = jax.random.split(key)
            if use_residual:
                out = residual.step(k_step, state, jnp.int32(one), params)
            else:
                out = env.step(k_step, state, pacing(k_act, obs, state, params), params)
            return (out[0], out[1]), (out[2], out[5]["spend"], out[5]["invalid_actions"])

        start = env.reset(jax.random.key(0), params)
        return jax.lax.scan(body, start, jax.random.split(jax.random.key(1), 30))[1]

    ours, rule = jax.jit(rollout, static_argnums=0)(True), jax.jit(rollout, static_argnums=0)(False)
    assert float(ours[1].sum()) > 0  # it bids and wins
    # the rule's continuous action is clipped at max_multiplier and counted there; the wrapper
    # clips first, so only reward and spend are compared
    assert_identical(ours[:2], rule[:2])
    assert float(ours[2].sum()) == 0.0


def test_action_scales_the_bid_and_bad_index_sits_out(cont):
    env, params = cont
    residual = PacingResidual(env, factors=(0.5, 2.0))
    _, state = env.reset(jax.random.key(2), params)
    state = state.replace(time=jnp.int32(6), budget_left=jnp.float32(0.6))
    pace = float(np.exp(10.0 * (0.5 - 0.4)))
    for action, expected, invalid in [(0, 0.5 * pace, 0.0), (1, min(2.0 * pace, 2.0), 0.0),
                                      (2, 0.0, 1.0), (-1, 0.0, 1.0)]:
        m, bad = residual.multiplier(state, jnp.int32(action), params)
        np.testing.assert_allclose(m, expected, rtol=1e-6)
        assert float(bad) == invalid
    out = residual.step(jax.random.key(3), state, jnp.int32(5), params)
    assert float(out[5]["invalid_actions"]) == 1.0 and float(out[5]["impressions_won"]) == 0.0
    space = residual.action_space(params)
    assert isinstance(space, spaces.Discrete) and space.n == 2
    assert residual.num_actions == 2 and residual.observation_space(params).shape == (6,)


def test_bad_arguments_raise(cont):
    env, _ = cont
    discrete, _ = ecomrl_jax.make("AdBidding-v1", **SIZES)
    with pytest.raises(ValueError, match="continuous=True"):
        PacingResidual(discrete)
    for factors in ((), (1.0, -0.5), (np.nan,)):
        with pytest.raises(ValueError, match="factors"):
            PacingResidual(env, factors=factors)
    with pytest.raises(ValueError, match="base"):
        PacingResidual(env, base=0.0)
    assert PacingResidual(env) == PacingResidual(env)  # compares by arguments: one compile
