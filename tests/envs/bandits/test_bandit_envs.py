"""Invariants of the bandit envs (ecomrl_jax/envs/bandits/bandit_envs.py); see docs/envs/bandits.md.

Rollouts batch with `lax.map` (cheap to compile) and are built once per env case;
`vmap` is tested on its own.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.bandits.bandit_envs import (BanditEnv, BernoulliBandit, ContextualLinearBandit,
                                     GaussianBandit, PricingBandit)
from ecomrl_jax.evaluation import evaluate

HORIZON = 20  # max_steps_in_episode of every rollout, so truncation happens
NUM_ENVS, NUM_STEPS = 32, 50
NUM_DRAWS = 4000  # reward draws per arm when checking the reward model
CASES = {
    "bernoulli": ("BernoulliBandit-v0", {}),
    "gaussian": ("GaussianBandit-v0", {}),
    "contextual": ("ContextualLinearBandit-v0", {}),
    "contextual_shared": ("ContextualLinearBandit-v0", {"shared_context": True}),
    "pricing": ("PricingBandit-v0", {}),
}
ROLLOUT_CASES = ("bernoulli", "gaussian", "contextual", "pricing")  # shared contexts: _draws only
INFO_KEYS = {"regret", "optimal_arm_chosen", "invalid_actions"}


@functools.cache
def _make(case):
    env_id, kwargs = CASES[case]
    return ecomrl_jax.make(env_id, max_steps_in_episode=HORIZON, **kwargs)


@functools.cache
def _rollout_fn(case):
    """Jitted `(key, actions) -> records`: from NUM_ENVS resets, NUM_STEPS public `env.step`
    calls each playing `actions` (NUM_ENVS, NUM_STEPS); records hold the state before each
    step, the action, the outputs and the env's expected rewards."""
    env, params = _make(case)

    def episode(key, actions):
        k_reset, k_steps = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def body(carry, x):
            obs, state = carry
            k, action = x
            expected = env.expected_rewards(state, params)
            nobs, nstate, reward, term, trunc, info = env.step(k, state, action, params)
            info = {k: v for k, v in info.items() if k != "final_observation"}
            record = dict(obs=obs, state=state, action=action, expected=expected, next_obs=nobs,
                          next_state=nstate, reward=reward, terminated=term, truncated=trunc,
                          info=info)
            return (nobs, nstate), record

        return jax.lax.scan(body, (obs, state), (jax.random.split(k_steps, NUM_STEPS), actions))[1]

    run = jax.jit(lambda key, actions: jax.lax.map(
        lambda x: episode(*x), (jax.random.split(key, NUM_ENVS), actions)))
    return lambda key, actions: jax.tree.map(np.asarray, run(key, actions))


@functools.cache
def _rollout(case):
    """Uniformly random arms from NUM_ENVS resets."""
    actions = np.random.default_rng(0).integers(0, 10, (NUM_ENVS, NUM_STEPS), dtype=np.int32)
    return _rollout_fn(case)(jax.random.key(0), actions)


@functools.cache
def _draws(case):
    """NUM_DRAWS rewards and infos from one fixed state, for each action in
    `0, ..., num_arms - 1, -1, num_arms + 2` (the last two out of range); one key per draw."""
    env, params = _make(case)
    _, state = env.reset(jax.random.key(3), params)
    arms = jnp.append(jnp.arange(env.num_arms, dtype=jnp.int32), jnp.int32([-1, env.num_arms + 2]))

    def draw(key):
        return jax.vmap(lambda a: env.step_env(key, state, a, params))(arms)

    out = jax.jit(lambda k: jax.lax.map(draw, jax.random.split(k, NUM_DRAWS)))(jax.random.key(4))
    return state, jax.tree.map(np.asarray, out)


# --------------------------------------------------------------------------- spaces, shapes


@pytest.mark.parametrize("case", ROLLOUT_CASES)
def test_shapes_dtypes_and_spaces(case):
    env, params = _make(case)
    r = _rollout(case)
    space = env.observation_space(params)
    assert isinstance(space, spaces.Box) and space.dtype == jnp.float32
    for obs in (r["obs"], r["next_obs"]):
        assert obs.shape == (NUM_ENVS, NUM_STEPS) + space.shape and obs.dtype == np.float32
        assert np.all(np.isfinite(obs)) and bool(space.contains(jnp.asarray(obs[0, 0])))
    assert r["reward"].shape == (NUM_ENVS, NUM_STEPS) and r["reward"].dtype == np.float32
    assert np.all(np.isfinite(r["reward"]))
    expected_keys = INFO_KEYS | ({"purchases", "revenue"} if case == "pricing" else set())
    assert set(r["info"]) == expected_keys | {"terminated", "truncated"}
    for key in expected_keys:
        assert r["info"][key].shape == (NUM_ENVS, NUM_STEPS) and r["info"][key].dtype == np.float32
    action_space = env.action_space(params)
    assert isinstance(action_space, spaces.Discrete) and action_space.n == env.num_arms
    assert env.num_actions == env.num_arms == 10
    np.testing.assert_array_equal(r["state"].contexts, r["obs"])  # the state holds the observation


def test_observation_layout():
    for case in ("bernoulli", "gaussian", "pricing"):
        env, _ = _make(case)
        assert not env.is_contextual and env.context_dim == 1
        np.testing.assert_array_equal(_rollout(case)["obs"], 1.0)  # constant [1.0]
    per_arm, _ = _make("contextual")
    shared, _ = _make("contextual_shared")
    assert per_arm.observation_space().shape == (per_arm.num_arms * per_arm.context_dim,)
    assert shared.observation_space().shape == (shared.context_dim,)
    r = _rollout("contextual")
    obs = r["obs"][0, 0]  # arm a's context is obs[5a:5a + 5]
    np.testing.assert_array_equal(per_arm.arm_contexts(jnp.asarray(obs)), obs.reshape(10, 5))
    state, (obs, *_) = _draws("contextual_shared")
    np.testing.assert_array_equal(shared.arm_contexts(jnp.asarray(obs[0, 0])),
                                  obs[0, 0][None].repeat(10, 0))
    assert state.contexts.shape == (shared.context_dim,)
    assert not np.array_equal(obs[0, 0], obs[1, 0])  # redrawn every round


# --------------------------------------------------------------------------- bookkeeping


@pytest.mark.parametrize("case", ROLLOUT_CASES)
def test_regret_bookkeeping(case):
    r = _rollout(case)
    expected, action, info = r["expected"], r["action"], r["info"]
    chosen = np.take_along_axis(expected, action[..., None], -1)[..., 0]
    np.testing.assert_allclose(info["regret"], expected.max(-1) - chosen, rtol=1e-6, atol=1e-6)
    assert np.all(info["regret"] >= 0)
    np.testing.assert_array_equal(info["optimal_arm_chosen"], (action == expected.argmax(-1)))
    assert 0 < info["optimal_arm_chosen"].mean() < 0.5  # random arms: both outcomes occur
    np.testing.assert_array_equal(info["invalid_actions"], 0.0)


@pytest.mark.parametrize("case", ROLLOUT_CASES)
def test_truncation_auto_reset_and_contexts(case):
    env, params = _make(case)
    r = _rollout(case)
    time = r["state"].time
    np.testing.assert_array_equal(r["truncated"], time + 1 >= HORIZON)
    assert r["truncated"].any() and not r["terminated"].any()
    np.testing.assert_array_equal(r["next_state"].time, np.where(r["truncated"], 0, time + 1))
    contexts, nxt = r["state"].contexts, r["next_state"].contexts
    if env.is_contextual:  # fresh contexts every round, with std context_scale
        assert not np.any(np.all(contexts == nxt, axis=-1))
        assert abs(contexts.std() - params.context_scale) < 0.05
    else:
        np.testing.assert_array_equal(contexts, 1.0)


@pytest.mark.parametrize("case", CASES)
def test_rewards_match_the_model_on_average(case):
    env, params = _make(case)
    state, (_, _, reward, _, info) = _draws(case)
    reward, info = reward[:, :env.num_arms], {k: v[:, :env.num_arms] for k, v in info.items()}
    expected = np.asarray(env.expected_rewards(state, params))
    mean, se = reward.mean(0), reward.std(0) / np.sqrt(NUM_DRAWS)
    assert np.all(np.abs(mean - expected) < 5 * se + 1e-6), (mean, expected)
    regret = expected.max() - expected
    np.testing.assert_allclose(info["regret"], np.broadcast_to(regret, info["regret"].shape),
                               rtol=1e-6, atol=1e-6)
    if case == "bernoulli":
        assert set(np.unique(reward)) == {0.0, 1.0}
        np.testing.assert_allclose(expected, np.linspace(0.1, 0.7, 10), rtol=1e-6)
    if case == "gaussian":
        np.testing.assert_allclose(reward.std(0), params.stds, rtol=0.05)
    if case.startswith("contextual"):
        resid = reward - expected
        assert abs(resid.std() - params.noise_std) < 0.02
        contexts = env.arm_contexts(state.contexts)
        np.testing.assert_allclose(expected, np.sum(params.theta * contexts, -1), rtol=1e-5)
    if case == "pricing":
        prices = np.asarray(params.prices)
        bought = info["purchases"]
        assert set(np.unique(bought)) == {0.0, 1.0}
        np.testing.assert_array_equal(info["revenue"], reward)
        np.testing.assert_allclose(reward, bought * prices, rtol=1e-6)
        p_buy = 1 / (1 + np.exp(-(params.wtp_mean - prices) / params.wtp_scale))
        np.testing.assert_allclose(env.purchase_prob(params), p_buy, rtol=1e-5)
        assert np.all(np.abs(bought.mean(0) - p_buy) < 5 * np.sqrt(p_buy * (1 - p_buy) / NUM_DRAWS))
        assert np.all(np.diff(p_buy) < 0)  # demand falls with price
        assert int(np.argmax(expected)) == 3  # default: best price 4 of 1..10


def test_reward_range_bounds_every_reward():
    for case in ("bernoulli", "pricing"):
        env, params = _make(case)
        low, high = env.reward_range(params)
        reward = _draws(case)[1][2]
        assert reward.shape == (NUM_DRAWS, env.num_arms + 2)
        assert np.all((reward >= low) & (reward <= high)) and reward.max() == high
    for case in ("gaussian", "contextual"):
        env, params = _make(case)
        assert env.reward_range(params) is None


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize("case", ["bernoulli", "contextual", "pricing"])
def test_out_of_range_arm_is_clipped_and_counted(case):
    """Action -1 plays arm 0 and action num_arms + 2 plays the last arm (same key, same reward)."""
    env, params = _make(case)
    _, (_, _, reward, _, info) = _draws(case)
    k = env.num_arms
    for bad, arm in ((k, 0), (k + 1, k - 1)):  # columns of actions -1 and num_arms + 2
        np.testing.assert_array_equal(reward[:, bad], reward[:, arm])
        np.testing.assert_array_equal(info["regret"][:, bad], info["regret"][:, arm])
        np.testing.assert_array_equal(info["invalid_actions"][:, bad], 1.0)
    np.testing.assert_array_equal(info["invalid_actions"][:, :k], 0.0)


@pytest.mark.parametrize("action", [1.0, jnp.float32(2.0), jnp.bool_(True)])
def test_non_integer_action_raises_type_error(action):
    env, params = _make("bernoulli")
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(TypeError, match="integers"):
        env.step(jax.random.key(1), state, action, params)


@pytest.mark.parametrize("action", [jnp.array([1], jnp.int32), jnp.zeros((2, 2), jnp.int32)])
def test_wrong_action_shape_raises_value_error(action):
    env, params = _make("pricing")
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match=r"shape \(\)"):
        env.step(jax.random.key(1), state, action, params)


# --------------------------------------------------------------------------- jit / vmap / keys


def test_vmap_over_make_params_gives_valid_random_instances():
    keys = jax.random.split(jax.random.key(1), 4)
    for case in ROLLOUT_CASES:
        env, _ = _make(case)
        make_batch = jax.jit(jax.vmap(env.make_params))
        batch = make_batch(keys)
        members = [jax.tree.map(lambda x: x[i], batch) for i in range(4)]
        for member in members:
            env.validate_params(member)
        differ = [not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(members[0]),
                                                           jax.tree.leaves(members[1]))]
        assert any(differ)  # different keys, different instances
        again = make_batch(keys)  # same keys, same instances
        for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(batch), strict=True):
            np.testing.assert_array_equal(x, y)


def test_evaluate_sums_regret_and_oracle_has_none():
    env, params = _make("pricing")

    def by_expected_reward(sign, key, obs, state, env_params):
        return jnp.argmax(sign * env.expected_rewards(state, env_params)).astype(jnp.int32)

    oracle = jax.tree_util.Partial(by_expected_reward, jnp.float32(1.0))
    worst = jax.tree_util.Partial(by_expected_reward, jnp.float32(-1.0))  # same compiled program
    best = evaluate(env, params, oracle, jax.random.key(0), 4)
    bad = evaluate(env, params, worst, jax.random.key(0), 4)
    expected = np.asarray(env.expected_rewards(None, params))
    np.testing.assert_array_equal(best["regret"], 0.0)
    np.testing.assert_array_equal(best["optimal_arm_chosen"], HORIZON)
    worst_gap = expected.max() - expected.min()
    np.testing.assert_allclose(bad["regret"], HORIZON * worst_gap, rtol=1e-5)
    np.testing.assert_array_equal(best["revenue"], best["return"])
    assert best["return"].mean() > bad["return"].mean()


# --------------------------------------------------------------------------- params, registry


def test_registered_ids_and_defaults_are_valid():
    assert {"BernoulliBandit-v0", "GaussianBandit-v0", "ContextualLinearBandit-v0",
            "PricingBandit-v0"} <= set(ecomrl_jax.list_envs())
    for env_id, cls in (("BernoulliBandit-v0", BernoulliBandit),
                        ("GaussianBandit-v0", GaussianBandit),
                        ("ContextualLinearBandit-v0", ContextualLinearBandit),
                        ("PricingBandit-v0", PricingBandit)):
        env, params = ecomrl_jax.make(env_id, num_arms=5)
        assert isinstance(env, cls) and isinstance(env, BanditEnv) and env.name == env_id
        assert env.num_arms == 5 and params.max_steps_in_episode == 1000
        env.validate_params(params)
    env, params = ecomrl_jax.make("ContextualLinearBandit-v0", context_dim=3, noise_std=0.1)
    assert params.theta.shape == (10, 3) and params.noise_std == 0.1


@pytest.mark.parametrize("env_id, overrides, field", [
    ("BernoulliBandit-v0", dict(means=jnp.full(10, 1.5)), r"params\.means must be in \[0, 1\]"),
    ("BernoulliBandit-v0", dict(means=jnp.full(4, 0.5)),
     r"params\.means must have shape \(10,\).*got shape \(4,\)"),
    ("BernoulliBandit-v0", dict(means=[0.5] * 10), r"params\.means must be an array"),
    ("BernoulliBandit-v0", dict(max_steps_in_episode=0), r"params\.max_steps_in_episode must be an int >= 1"),
    ("BernoulliBandit-v0", dict(max_steps_in_episode=10.0), r"params\.max_steps_in_episode"),
    ("GaussianBandit-v0", dict(stds=jnp.zeros(10)), r"params\.stds must be > 0"),
    ("GaussianBandit-v0", dict(means=jnp.full(10, jnp.nan)), r"params\.means must be finite"),
    ("ContextualLinearBandit-v0", dict(noise_std=-1.0),
     r"params\.noise_std must be >= 0"),
    ("ContextualLinearBandit-v0", dict(context_scale=float("inf")), r"params\.context_scale"),
    ("ContextualLinearBandit-v0", dict(theta=jnp.zeros((10, 4))), r"params\.theta must have shape"),
    ("PricingBandit-v0", dict(prices=jnp.zeros(10)), r"params\.prices must be > 0"),
    ("PricingBandit-v0", dict(wtp_scale=0.0), r"params\.wtp_scale must be > 0"),
    ("PricingBandit-v0", dict(wtp_mean=float("nan")), r"params\.wtp_mean must be finite"),
])
def test_bad_params_raise_naming_the_field(env_id, overrides, field):
    with pytest.raises(ValueError, match=field):
        ecomrl_jax.make(env_id, **overrides)


@pytest.mark.parametrize("cls, kwargs, match", [
    (BernoulliBandit, dict(num_arms=1), "num_arms must be an int >= 2"),
    (PricingBandit, dict(num_arms=3.0), "num_arms"),
    (ContextualLinearBandit, dict(context_dim=0), "context_dim must be an int >= 1"),
    (ContextualLinearBandit, dict(shared_context=1), "shared_context must be a bool"),
])
def test_constructor_rejects_bad_sizes(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_make_params_rejects_unknown_overrides():
    env, _ = _make("pricing")
    with pytest.raises(ValueError, match="unknown overrides"):
        env.make_params(jax.random.key(0), price_elasticity=1.0)
    params = env.make_params(jax.random.key(0), max_steps_in_episode=5)
    assert params.max_steps_in_episode == 5
