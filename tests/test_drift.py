"""Drift of env params over time (ecomrl_jax/wrappers.py: Drift, DriftSchedule, drift_preset)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomrl_jax
from ecomrl_jax.wrappers import Drift, DriftParams, DriftSchedule, drift_preset

STEPS = 12


def run(env, params, key, num_steps=STEPS, action=3):
    """A fixed action each step from reset; returns the final state and the stacked step outputs."""
    obs, state = env.reset(key, params)

    def body(state, k):
        obs, state, reward, terminated, truncated, info = env.step(k, state, action, params)
        return state, (reward, info)

    return jax.lax.scan(body, state, jax.random.split(key, num_steps))


@pytest.mark.parametrize("kind, start, length, expected", [
    ("step", 4.0, 1.0, [0, 0, 0, 0, 1, 1, 1]),
    ("linear", 2.0, 4.0, [0, 0, 0, 0.25, 0.5, 0.75, 1]),
    ("periodic", 1.0, 4.0, [0.5, 0, 0.5, 1, 0.5, 0, 0.5]),
])
def test_schedule_weights(kind, start, length, expected):
    weight = DriftSchedule(start=start, length=length, kind=kind).weight(jnp.arange(7))
    np.testing.assert_allclose(weight, expected, atol=1e-6)


def test_pricing_demand_follows_the_step_schedule_exactly():
    """With deterministic demand, each period's demand is the expected demand under the params
    of that period: the base's before the change, exactly the target's from it on."""
    inner, base = ecomrl_jax.make("DynamicPricing-v0", stochastic_demand=False)
    env = Drift(inner)
    params = drift_preset(inner, "demand_shift", DriftSchedule(start=5.0), base)
    env.validate_params(params)
    _, (_, info) = run(env, params, jax.random.key(0))
    price = inner.price_grid(base)[3]
    _, state = inner.reset(jax.random.key(0), base)  # competitor effect is 0: demand is stateless
    before = inner.expected_demand(price, state, params.base)[0]
    after = inner.expected_demand(price, state, params.target)[0]
    assert after < before
    np.testing.assert_array_equal(info["demand"], [before] * 5 + [after] * (STEPS - 5))


def test_params_at_blends_floats_and_switches_other_leaves():
    inner, base = ecomrl_jax.make("Inventory-v0")
    target = base.replace(demand_mean=8.0, backorders=True, demand_dist=1)
    params = DriftParams(base, target, DriftSchedule(start=2.0, length=4.0, kind="linear"))
    at = [Drift.params_at(t, params) for t in (2, 3, 4, 6)]
    np.testing.assert_allclose([p.demand_mean for p in at], [4.0, 5.0, 6.0, 8.0])
    assert [bool(p.backorders) for p in at] == [False, False, True, True]
    assert [int(p.demand_dist) for p in at] == [0, 0, 1, 1]
    # an unchanged inf (unlimited stock) stays inf, not inf - inf = nan
    pricing, pricing_params = ecomrl_jax.make("DynamicPricing-v0")
    mid = Drift.params_at(1, drift_preset(pricing, "competitor_entry",
                                          DriftSchedule(length=2.0, kind="linear")))
    assert np.isinf(mid.initial_stock)
    assert 0.0 < mid.competitor_effect < 1.5


def test_clock_survives_episode_resets():
    """The drift runs on deployment time, not episode time: a 4-step episode auto-resets, the
    clock does not, and the regret reflects the arm means of the current period."""
    inner = ecomrl_jax.make("BernoulliBandit-v0", num_arms=2, max_steps_in_episode=4)[0]
    base = inner.default_params.replace(means=jnp.array([0.2, 0.6]), max_steps_in_episode=4)
    params = DriftParams(base, base.replace(means=jnp.array([0.9, 0.6])), DriftSchedule(start=6.0))
    state, (_, info) = run(Drift(inner), params, jax.random.key(1), action=1)
    assert int(state.clock) == STEPS and int(state.env_state.time) == STEPS % 4
    np.testing.assert_allclose(info["regret"], [0.0] * 6 + [0.3] * (STEPS - 6), atol=1e-6)


@pytest.mark.parametrize("env_id, preset", [
    ("DynamicPricing-v0", "competitor_entry"),
    ("ShopperRec-v0", "interest_shift"),
    ("ShopperRec-v0", "new_items"),
    ("Inventory-v0", "demand_jump"),
])
def test_presets_jitted_rollout_equals_a_loop_over_the_scheduled_params(env_id, preset):
    """The wrapper's jitted rollout equals a Python loop that steps the inner env with the params
    of each period (jit == no jit, and the params follow the schedule)."""
    kwargs = dict(num_items=40, num_shoppers=16, embed_dim=4, num_categories=4) \
        if env_id == "ShopperRec-v0" else {}
    inner, base = ecomrl_jax.make(env_id, **kwargs)
    env = Drift(inner)
    params = drift_preset(inner, preset, DriftSchedule(start=1.0, length=2.0, kind="linear"), base)
    env.validate_params(params)
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(params.base), jax.tree.leaves(params.target)))
    key, num_steps = jax.random.key(2), 4
    final, (rewards, info) = jax.jit(run, static_argnums=(0, 3))(env, params, key, num_steps, 1)
    _, state = inner.reset(key, params.base)
    for t, k in enumerate(jax.random.split(key, num_steps)):
        _, state, reward, *_, step_info = inner.step(k, state, 1, Drift.params_at(t, params))
        np.testing.assert_allclose(rewards[t], reward, rtol=1e-5, atol=1e-6)
        for x, y in zip(jax.tree.leaves(info), jax.tree.leaves(step_info)):
            np.testing.assert_allclose(x[t], y, rtol=1e-5, atol=1e-6)
    for x, y in zip(jax.tree.leaves(final.env_state), jax.tree.leaves(state)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert int(final.clock) == num_steps


def test_one_program_vmaps_over_change_times():
    inner, base = ecomrl_jax.make("DynamicPricing-v0", stochastic_demand=False)
    env = Drift(inner)
    params = drift_preset(inner, "demand_shift", DriftSchedule(), base)
    starts = jnp.array([0.0, 4.0, 100.0])
    batched = jax.vmap(lambda s: params.replace(schedule=DriftSchedule(start=s)))(starts)
    demand = jax.vmap(lambda p: run(env, p, jax.random.key(0), 8)[1][1]["demand"])(batched)
    assert np.all(demand[0] == demand[0, 0]) and np.all(demand[2] == demand[2, 0])
    np.testing.assert_array_equal(demand[1], np.r_[demand[2, :4], demand[0, 4:]])


def test_bad_drift_params_are_refused():
    inner, base = ecomrl_jax.make("Inventory-v0")
    env = Drift(inner)
    with pytest.raises(ValueError, match="kind must be one of"):
        env.validate_params(DriftParams(base, base, DriftSchedule(kind="sudden")))
    with pytest.raises(ValueError, match="length must be > 0"):
        env.validate_params(DriftParams(base, base, DriftSchedule(length=0.0)))
    with pytest.raises(ValueError, match="params.target: .*demand_mean"):
        env.validate_params(DriftParams(base, base.replace(demand_mean=-1.0)))
    with pytest.raises(ValueError, match="no drift preset 'flood'; valid: \\['demand_jump'\\]"):
        drift_preset(inner, "flood", DriftSchedule())
