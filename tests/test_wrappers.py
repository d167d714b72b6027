"""Wrappers (ecomrl_jax/wrappers.py): episode statistics, flattening, normalisation, reward
scaling, 5-tuple."""

import gymnax
import jax
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.evaluation import evaluate
from ecomrl_jax.wrappers import (EpisodeStatistics, FlattenObservation, LegacyStepWrapper,
                                 NormalizeObservation, ScaleReward, business_metric_names)

NUM_ENVS, NUM_STEPS, CARTPOLE_STEPS = 6, 24, 100
# Short episodes that end both ways: patience runs out (terminated) or the horizon (truncated).
SHORT = dict(num_items=50, num_candidates=4, history_len=3, embed_dim=4, num_shoppers=20,
             max_steps_in_episode=7, patience_step_cost=0.17)


@pytest.fixture(scope="module")
def shopper():
    return ecomrl_jax.make("ShopperRec-v0", **SHORT)


@pytest.fixture(scope="module")
def cartpole():
    return gymnax.make("CartPole-v1")


def rollout(env, params, rng, num_envs=NUM_ENVS, num_steps=NUM_STEPS, axis_name=None):
    """Uniform random actions, with PureJaxRL's key schedule, through a 6-value-step env.

    Returns the reset observations, the final state and the stacked
    `(obs, reward, terminated, truncated, info)`. The wrappers consume no randomness, so
    any wrapping of the same env sees the same trajectory for the same `rng`.
    """
    num_actions = env.num_actions

    def run(rng):
        rng, _rng = jax.random.split(rng)
        obsv, env_state = jax.vmap(env.reset, in_axes=(0, None), axis_name=axis_name)(
            jax.random.split(_rng, num_envs), params)

        def env_step(runner_state, unused):
            env_state, rng = runner_state
            rng, _rng = jax.random.split(rng)
            action = jax.random.randint(_rng, (num_envs,), 0, num_actions)
            rng, _rng = jax.random.split(rng)
            obsv, env_state, *out = jax.vmap(env.step, in_axes=(0, 0, 0, None),
                                             axis_name=axis_name)(
                jax.random.split(_rng, num_envs), env_state, action, params)
            return (env_state, rng), (obsv, *out)

        (env_state, _), steps = jax.lax.scan(env_step, (env_state, rng), None, num_steps)
        return obsv, env_state, steps

    return jax.device_get(jax.jit(run)(rng))


@pytest.fixture(scope="module")
def raw_run(shopper):
    env, params = shopper
    return rollout(env, params, jax.random.key(3))


@pytest.fixture(scope="module")
def legacy_run(shopper):
    """PureJaxRL's `_env_step`, verbatim in shape, on the fully wrapped env (random policy)."""
    env, env_params = shopper
    env = LegacyStepWrapper(FlattenObservation(EpisodeStatistics(env)))
    num_envs = NUM_ENVS

    def run(rng):
        rng, _rng = jax.random.split(rng)
        reset_rng = jax.random.split(_rng, num_envs)
        obsv, env_state = jax.vmap(env.reset, in_axes=(0, None))(reset_rng, env_params)

        def _env_step(runner_state, unused):
            env_state, last_obs, rng = runner_state
            rng, _rng = jax.random.split(rng)
            action = jax.random.randint(_rng, (num_envs,), 0, env.num_actions)
            rng, _rng = jax.random.split(rng)
            rng_step = jax.random.split(_rng, num_envs)
            obsv, env_state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                rng_step, env_state, action, env_params)
            runner_state = (env_state, obsv, rng)
            return runner_state, (obsv, reward, done, info)

        _, traj = jax.lax.scan(_env_step, (env_state, obsv, rng), None, NUM_STEPS)
        return obsv, traj

    return env, jax.device_get(jax.jit(run)(jax.random.key(3)))


def check_episode_totals(reward, info, terminated, truncated, names):
    """Compare EpisodeStatistics' info against a manual per-episode accumulation (one env)."""
    done = terminated | truncated
    np.testing.assert_array_equal(info["episode_done"], done)
    per_step = {"return": reward, "length": np.ones_like(reward),
                **{k: info[k] for k in names if k not in ("return", "length")}}
    running = {k: 0.0 for k in names}
    last = {k: 0.0 for k in names}
    for t in range(len(reward)):
        running = {k: running[k] + float(per_step[k][t]) for k in names}
        if done[t]:
            last, running = running, {k: 0.0 for k in names}
        for k in names:
            np.testing.assert_allclose(info["episode"][k][t], last[k], rtol=1e-5, atol=1e-5)


def test_episode_statistics_match_manual_accumulation_under_vmap(legacy_run):
    _, (_, (_, reward, done, info)) = legacy_run
    names = sorted(info["episode"])
    assert names == ["clicks", "invalid_actions", "length", "purchases", "return", "revenue"]
    lengths = info["episode"]["length"][info["episode_done"]]
    assert (lengths == lengths.max()).any() and (lengths < lengths.max()).any(), \
        "episodes should end both ways: out of patience and at the session's end"
    assert reward.sum() > 0 and info["purchases"].sum() > 0
    for i in range(NUM_ENVS):
        row = jax.tree.map(lambda x: x[:, i], info)
        check_episode_totals(reward[:, i], row, row["terminated"], row["truncated"], names)


def test_episode_statistics_single_env(cartpole):
    env, params = cartpole
    env = EpisodeStatistics(env)

    def run(key):
        _, state = env.reset(key, params)

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            action = env.action_space(params).sample(k_act)
            _, state, reward, terminated, truncated, info = env.step(k_step, state, action, params)
            return state, (reward, terminated, truncated, info)

        return jax.lax.scan(body, state, jax.random.split(key, CARTPOLE_STEPS))[1]

    reward, terminated, truncated, info = jax.device_get(jax.jit(run)(jax.random.key(8)))
    assert terminated.sum() >= 2  # random CartPole episodes last ~20 steps
    check_episode_totals(reward, info, terminated, truncated, sorted(info["episode"]))


def test_flatten_observation_is_sorted_key_concatenation(shopper, raw_run, legacy_run):
    env, params = shopper
    space = FlattenObservation(env).observation_space(params)
    assert isinstance(space, spaces.Box)
    # sorted keys: candidates (4 x 7), history (3 x 8), time (1)
    assert space.shape == (4 * 7 + 3 * 8 + 1,)
    assert float(space.low[-1]) == 0.0 and float(space.high[-1]) == 1.0
    assert np.isinf(space.high[0])

    wrapped, (flat_obs0, (flat_obs, _, done, flat_info)) = legacy_run
    assert wrapped.observation_space(params).shape == space.shape
    obs0, _, (obs, _, _, _, info) = raw_run

    def manual(o):
        batch = o["time"].shape[:-1]
        return np.concatenate([o["candidates"].reshape(*batch, -1),
                               o["history"].reshape(*batch, -1), o["time"]], axis=-1)

    assert flat_obs0.shape == (NUM_ENVS, *space.shape) and flat_obs0.dtype == np.float32
    np.testing.assert_array_equal(flat_obs0, manual(obs0))
    np.testing.assert_array_equal(flat_obs, manual(obs))
    np.testing.assert_array_equal(flat_info["final_observation"], manual(info["final_observation"]))
    # at an auto-reset the final observation is the pre-reset one, not the returned obs
    assert done.any()
    assert not np.allclose(flat_info["final_observation"][done], flat_obs[done])
    assert space.contains(flat_obs0[0])


def normalized(x, mean, var):
    return np.clip((x - mean) / np.sqrt(var + 1e-8), -10.0, 10.0)


def test_normalize_with_axis_name_shares_batch_statistics(shopper, raw_run):
    env, params = shopper
    norm_obs0, state, (norm_obs, *_, norm_info) = rollout(
        NormalizeObservation(env, axis_name="envs"), params, jax.random.key(3), axis_name="envs")
    raw_obs0, _, (raw_obs, *_, raw_info) = raw_run

    for name in ("candidates", "history", "time"):
        seen = np.concatenate([raw_obs0[name][None], raw_obs[name]]).astype(np.float64)
        seen = seen.reshape(-1, *seen.shape[2:])  # every observation of every env
        mean, var = state.mean[name], state.var[name]
        np.testing.assert_array_equal(mean, np.broadcast_to(mean[0], mean.shape))  # all envs share
        np.testing.assert_array_equal(var, np.broadcast_to(var[0], var.shape))
        np.testing.assert_allclose(mean[0], seen.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(var[0], seen.var(0), rtol=1e-3, atol=1e-5)
        # the last step is normalised with the final statistics, its final observation too
        np.testing.assert_allclose(norm_obs[name][-1], normalized(raw_obs[name][-1], mean, var),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(norm_info["final_observation"][name][-1],
                                   normalized(raw_info["final_observation"][name][-1], mean, var),
                                   rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(state.count, 1e-4 + (NUM_STEPS + 1) * NUM_ENVS, rtol=1e-6)
    # history starts all-zero and time at 0 in every env: constant features stay finite
    for leaf in jax.tree.leaves((norm_obs0, norm_obs, norm_info["final_observation"])):
        assert np.all(np.isfinite(leaf)) and np.all(np.abs(leaf) <= 10.0)
    assert 0.5 < np.std(norm_obs["candidates"]) < 1.5  # actually standardised


def test_normalize_without_axis_name_keeps_per_env_statistics(cartpole):
    env, params = cartpole
    key = jax.random.key(3)
    _, state, (norm_obs, *_) = rollout(NormalizeObservation(env), params, key,
                                       num_steps=CARTPOLE_STEPS)
    raw_obs0, _, (raw_obs, *_) = rollout(env, params, key, num_steps=CARTPOLE_STEPS)
    seen = np.concatenate([raw_obs0[None], raw_obs]).astype(np.float64)  # (steps + 1, envs, 4)
    np.testing.assert_allclose(state.mean, seen.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.var, seen.var(0), rtol=1e-3, atol=1e-5)
    assert not np.allclose(state.mean[0], state.mean[1])
    np.testing.assert_allclose(state.count, 1e-4 + CARTPOLE_STEPS + 1, rtol=1e-6)
    np.testing.assert_allclose(norm_obs[-1], normalized(raw_obs[-1], state.mean, state.var),
                               rtol=1e-4, atol=1e-4)


def test_normalize_with_unbound_axis_name_is_a_clear_error(shopper):
    env, params = shopper
    with pytest.raises(ValueError, match="axis_name='envs'"):
        NormalizeObservation(env, axis_name="envs").reset(jax.random.key(0), params)


def test_scale_reward_changes_only_the_reward():
    env, params = ecomrl_jax.make("DynamicPricing-v0")
    raw = rollout(env, params, jax.random.key(4))
    scaled = rollout(ScaleReward(env, scale=50.0, shift=10.0), params, jax.random.key(4))
    np.testing.assert_allclose(scaled[2][1], (raw[2][1] - 10.0) / 50.0, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves((raw[0], raw[1], raw[2][0], raw[2][2:])),
                    jax.tree.leaves((scaled[0], scaled[1], scaled[2][0], scaled[2][2:]))):
        np.testing.assert_array_equal(a, b)  # observations, states, dones and info (revenue)
    for bad in (dict(scale=0.0), dict(scale=-1.0), dict(scale=np.inf),
                dict(scale=1.0, shift=np.nan)):
        with pytest.raises(ValueError, match="ScaleReward"):
            ScaleReward(env, **bad)


def test_legacy_step_gives_done_for_purejaxrl_loop(shopper, legacy_run):
    _, params = shopper
    wrapped, (_, (obs, reward, done, info)) = legacy_run
    obs_dim = wrapped.observation_space(params).shape[0]
    assert obs.shape == (NUM_STEPS, NUM_ENVS, obs_dim)
    assert reward.shape == done.shape == (NUM_STEPS, NUM_ENVS) and done.dtype == np.bool_
    np.testing.assert_array_equal(done, info["terminated"] | info["truncated"])
    np.testing.assert_array_equal(done, info["episode_done"])
    assert done.any() and not done.all()


def test_wrappers_compose_on_gymnax_cartpole(cartpole):
    env, params = cartpole
    wrapped = LegacyStepWrapper(NormalizeObservation(FlattenObservation(EpisodeStatistics(env)),
                                                     axis_name="envs"))
    space = wrapped.observation_space(params)
    assert isinstance(space, spaces.Box) and space.shape == (4,)
    assert wrapped.num_actions == 2  # proxied to CartPole

    def run(key):
        obs, state = jax.vmap(wrapped.reset, in_axes=(0, None), axis_name="envs")(
            jax.random.split(key, NUM_ENVS), params)

        def body(state, k):
            k_act, k_step = jax.random.split(k)
            action = jax.random.randint(k_act, (NUM_ENVS,), 0, 2)
            obs, state, reward, done, info = jax.vmap(
                wrapped.step, in_axes=(0, 0, 0, None), axis_name="envs")(
                    jax.random.split(k_step, NUM_ENVS), state, action, params)
            return state, (obs, reward, done, info)

        return jax.lax.scan(body, state, jax.random.split(key, CARTPOLE_STEPS))

    state, (obs, _, done, info) = jax.device_get(jax.jit(run)(jax.random.key(6)))
    assert obs.shape == (CARTPOLE_STEPS, NUM_ENVS, 4) and np.all(np.isfinite(obs))
    assert done.sum() >= NUM_ENVS
    np.testing.assert_array_equal(done, info["terminated"] | info["truncated"])
    lengths = info["episode"]["length"][done]
    np.testing.assert_array_equal(info["episode"]["return"][done], lengths)  # reward 1 per step
    assert lengths.min() >= 1
    np.testing.assert_array_equal(state.mean, np.broadcast_to(state.mean[0], state.mean.shape))
    np.testing.assert_allclose(state.count, 1e-4 + (CARTPOLE_STEPS + 1) * NUM_ENVS, rtol=1e-6)


def test_business_metrics_of_a_wrapped_env_leave_out_gymnax_keys_and_the_episode_dict():
    info = {"clicks": jax.numpy.float32(1.0), "revenue": 2.0, "discount": 1.0, "terminated": True,
            "episode": {"return": 1.0}, "final_observation": np.zeros(3), "per_item": np.zeros(3)}
    assert business_metric_names(info) == ["clicks", "revenue"]


def test_evaluate_runs_on_an_episode_statistics_wrapped_env(shopper):
    env, params = shopper
    policy = jax.tree_util.Partial(lambda key, obs, state, params: jax.numpy.int32(0))
    episodes = evaluate(EpisodeStatistics(env), params, policy, jax.random.key(0), 3)
    assert set(episodes) == {"return", "length", "clicks", "purchases", "revenue", "invalid_actions"}


def test_wrappers_compare_by_inner_env_and_arguments(shopper):
    """Wrappers made alike are equal and hash equal, so a jitted wrapper method (the wrapper is
    its static `self`) compiles once for both."""
    env, params = shopper
    other = ecomrl_jax.make("ShopperRec-v0", **SHORT)[0]
    a, b = EpisodeStatistics(FlattenObservation(env)), EpisodeStatistics(FlattenObservation(other))
    assert a == b and hash(a) == hash(b)
    assert ScaleReward(env, 2.0) == ScaleReward(other, scale=2.0)
    assert ScaleReward(env, 2.0) != ScaleReward(env, 3.0)
    assert NormalizeObservation(env) != NormalizeObservation(env, axis_name="envs")
    assert EpisodeStatistics(env) != LegacyStepWrapper(env)
    a.reset(jax.random.key(0), params)
    compiled = EpisodeStatistics.reset._cache_size()
    b.reset(jax.random.key(1), params)
    assert EpisodeStatistics.reset._cache_size() == compiled
