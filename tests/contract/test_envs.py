"""The contract every registered env meets (DESIGN §3), parametrised over
`ecomrl_jax.list_envs()`: a newly registered env gets these tests without writing one.

Each env compiles one rollout program: random actions, jitted and vmapped over a batch of
params (the defaults with keys 0, 1, 0, then every accepted bad-param variant), cached by env
(envs compare by value, so separately made envs share the cache entry). Each env's invalid-action
rule is its `out_of_range_action` (see `ecomrl_jax.spaces.check_action`); its params rules table
is its `param_rules`.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import environment, spaces

import ecomrl_jax
from ecomrl_jax import rules
from ecomrl_jax.envs._base import HorizonEndsEpisode
from ecomrl_jax.wrappers import business_metric_names

ENV_IDS = ecomrl_jax.list_envs()
MAX_STEPS = 200  # rollouts run two default episodes, or this many steps if fewer
NUM_DEFAULT_ROWS = 3  # rows of the batch with default params (keys 0, 1, 0)
EAGER_STEPS = 3  # steps replayed op by op without jit
BAD_FLOATS = (math.nan, math.inf, -1.0, 0.0, 1e9)
# Other constructor settings whose action space differs from the registered default.
ACTION_VARIANTS = [
    ("DynamicPricing-v0", {"continuous": True}), ("Inventory-v0", {"continuous": True}),
    ("AdBidding-v1", {"continuous": True}), ("ShopperRec-v0", {"slate_size": 3}),
    ("InterestEvolution-v0", {"slate_size": 1}),
]


def _step(env, step, params, carry, key):
    """One random action from the action space, one public (auto-resetting) `step`."""
    obs, state = carry
    k_action, k_step = jax.random.split(key)
    action = env.action_space(params).sample(k_action)
    obs, state, reward, terminated, truncated, info = step(k_step, state, action, params)
    return (obs, state), dict(obs=obs, action=action, reward=reward, terminated=terminated,
                              truncated=truncated, info=info)


def _episode(env, params, key, num_steps, eager_steps=0):
    """(reset observation, per-step records) of `num_steps` random steps; with `eager_steps`,
    only the first that many, by a Python loop over gymnax's `reset` and `step` functions
    unjitted (op by op)."""
    k_reset, k_steps = jax.random.split(key)
    keys = jax.random.split(k_steps, num_steps)
    if not eager_steps:
        obs, state = env.reset(k_reset, params)
        return obs, jax.lax.scan(functools.partial(_step, env, env.step, params), (obs, state),
                                 keys)[1]
    reset, step = (functools.partial(getattr(type(env), name).__wrapped__, env)
                   for name in ("reset", "step"))
    obs, state = reset(k_reset, params)
    carry, records = (obs, state), []
    for k in keys[:eager_steps]:
        carry, record = _step(env, step, params, carry, k)
        records.append(record)
    return obs, jax.tree.map(lambda *xs: jnp.stack(xs), *records)


@functools.cache
def _batched_episodes(env, num_steps):
    """`(params batch, keys) -> episodes`, jitted once per env configuration."""
    return jax.jit(jax.vmap(functools.partial(_episode, env, num_steps=num_steps)))


def _float_fields(params) -> list[str]:
    return [name for name, value in vars(params).items()
            if np.issubdtype(np.asarray(value).dtype, np.floating)]


@functools.cache
def _sweep(env_id):
    """Every float param (scalar, or every entry of an array) set to each of BAD_FLOATS:
    `(refused, accepted)`, `refused` a list of (field, value, message) that `make` refused
    with a ValueError, `accepted` a list of (field, value, params)."""
    _, default = ecomrl_jax.make(env_id)
    refused, accepted = [], []
    for field in _float_fields(default):
        for value in BAD_FLOATS:
            old = getattr(default, field)
            bad = np.full_like(np.asarray(old), value) if np.ndim(old) else value
            try:
                accepted.append((field, value, ecomrl_jax.make(env_id, **{field: bad})[1]))
            except ValueError as error:
                refused.append((field, value, str(error)))
    return refused, accepted


@functools.cache
def _rollouts(env_id):
    """`(env, params, batch, keys, (reset obs, records))`: rows 0..2 default params with keys
    0, 1, 0, then one row per accepted bad-param variant with key 0."""
    env, params = ecomrl_jax.make(env_id)
    variants = [p for _, _, p in _sweep(env_id)[1]]
    rows = [params] * NUM_DEFAULT_ROWS + variants
    batch = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *rows)
    key0, key1 = jax.random.split(jax.random.key(0))
    keys = jnp.stack([key0, key1] + [key0] * (len(rows) - 2))
    out = _batched_episodes(env, _num_steps(params))(batch, keys)
    return env, params, batch, keys, jax.tree.map(np.asarray, out)


def _num_steps(params) -> int:
    return min(MAX_STEPS, 2 * int(params.max_steps_in_episode))


def _row(tree, i, steps=slice(None)):
    obs0, records = tree
    return jax.tree.map(lambda x: x[i], obs0), jax.tree.map(lambda x: x[i, steps], records)


def _space_leaves(space):
    if isinstance(space, spaces.Dict):
        return [leaf for k in sorted(space.spaces) for leaf in _space_leaves(space.spaces[k])]
    return [space]


def _assert_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- rollouts


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observations_actions_rewards_and_flags_follow_the_spaces(env_id):
    env, params, _, _, out = _rollouts(env_id)
    obs_space, num_steps = env.observation_space(params), _num_steps(params)
    for i in range(NUM_DEFAULT_ROWS):
        obs0, records = _row(out, i)
        for obs, lead in ((obs0, ()), (records["obs"], (num_steps,))):
            leaves = jax.tree.leaves(obs)
            assert len(leaves) == len(_space_leaves(obs_space))
            for x, leaf in zip(leaves, _space_leaves(obs_space)):
                assert x.shape == lead + tuple(leaf.shape), env_id
                assert x.dtype == np.dtype(leaf.dtype), env_id
        for x, leaf in zip(jax.tree.leaves((obs0, records["obs"])), 2 * _space_leaves(obs_space)):
            assert np.all(jax.vmap(leaf.contains)(x.reshape(-1, *leaf.shape))), env_id
        assert np.all(jax.vmap(env.action_space(params).contains)(records["action"]))
        assert records["reward"].shape == (num_steps,) and records["reward"].dtype == np.float32
        for flag in ("terminated", "truncated"):
            assert records[flag].shape == (num_steps,) and records[flag].dtype == np.bool_
        if num_steps > params.max_steps_in_episode:
            assert np.any(records["truncated"] | records["terminated"])
        info = records["info"]
        assert business_metric_names(jax.tree.map(lambda x: x[0], info)), env_id
        np.testing.assert_array_equal(info["invalid_actions"], 0.0)  # sampled actions are valid


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vmapped_jitted_rollout_equals_an_eager_loop(env_id):
    """Rows of the jitted, vmapped rollout equal unbatched episodes run op by op without jit
    (vmap == loop and jit == no-jit), default params and a bad-param variant alike."""
    env, params, batch, keys, out = _rollouts(env_id)
    for i in (0, len(keys) - 1):
        row_params = jax.tree.map(lambda x: x[i], batch)
        eager = _episode(env, row_params, keys[i], _num_steps(params), EAGER_STEPS)
        _assert_close(eager, _row(out, i, slice(EAGER_STEPS)))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_key_same_trajectory_other_key_differs(env_id):
    """Rows 0 and 2 of the batch (same params, same key) are bit-identical; row 1 (another
    key) is not."""
    *_, out = _rollouts(env_id)
    for x in jax.tree.leaves(out):
        np.testing.assert_array_equal(x[0], x[2])
    assert not all(np.array_equal(x[0], x[1]) for x in jax.tree.leaves(out))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_bad_float_params_are_refused_or_give_finite_rollouts(env_id):
    """Every float param set to NaN, inf, -1, 0 or 1e9: `make` raises a ValueError naming the
    field, or every observation, reward and info entry of the rollout stays finite."""
    refused, accepted = _sweep(env_id)
    for field, value, message in refused:
        assert re.search(rf"\b{field}\b", message), (field, value, message)
    _, params, _, _, out = _rollouts(env_id)
    for row, (field, value, _) in enumerate(accepted, start=NUM_DEFAULT_ROWS):
        obs0, records = _row(out, row)
        for name, leaf in [("reset obs", obs0), ("obs", records["obs"]),
                           ("reward", records["reward"]),
                           *[(f"info[{k!r}]", v) for k, v in records["info"].items()]]:
            for x in jax.tree.leaves(leaf):
                if np.issubdtype(x.dtype, np.inexact):
                    assert np.all(np.isfinite(x)), f"{env_id} {field}={value}: {name} not finite"
    assert {f for f, v, _ in refused if math.isnan(v)} == set(_float_fields(params))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_last_step_terminates_where_the_horizon_ends_the_problem_else_truncates(env_id):
    """At `max_steps_in_episode` a `HorizonEndsEpisode` env reports `terminated` (never
    `truncated`), so learners do not bootstrap past its end; any other env `truncated`."""
    env, params = ecomrl_jax.make(env_id)
    key = jax.random.key(0)
    _, state = env.reset(key, params)
    state = state.replace(time=params.max_steps_in_episode - 1)
    action = env.action_space(params).sample(key)
    *_, terminated, truncated, info = env.step(key, state, action, params)
    assert (bool(info["terminated"]), bool(info["truncated"])) == (bool(terminated), bool(truncated))
    if isinstance(env, HorizonEndsEpisode):
        assert bool(terminated) and not bool(truncated)
    else:
        assert bool(truncated)


# --------------------------------------------------------------------------- params and make


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rules_cover_every_param_field(env_id):
    env, params = ecomrl_jax.make(env_id)
    assert rules.unruled_fields(type(params), env.param_rules) == []
    for field, rule in env.param_rules.items():  # the defaults obey the rules
        rules.check_value(getattr(params, field), rule, f"{env_id} default {field}")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_rejects_unknown_kwargs(env_id):
    with pytest.raises(ValueError, match=r"unknown arguments \['no_such_arg'\]"):
        ecomrl_jax.make(env_id, no_such_arg=1)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_envs_made_alike_are_equal_and_share_compiled_code(env_id):
    (a, params), (b, _) = ecomrl_jax.make(env_id), ecomrl_jax.make(env_id)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != object() and a != type("Other", (type(a),), {})()
    key = jax.random.key(0)
    a.reset(key, params)
    compiled = environment.Environment.reset._cache_size()
    b.reset(key, params)  # gymnax's reset (and step) are jitted with the env static
    assert environment.Environment.reset._cache_size() == compiled

    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def reset_obs(env, key):
        traces.append(env)
        return env.reset(key, params)[0]

    reset_obs(a, key), reset_obs(b, key)
    assert len(traces) == 1


def test_envs_made_differently_are_unequal():
    assert ecomrl_jax.make("ShopperRec-v0")[0] != ecomrl_jax.make("ShopperRec-v0", num_items=50)[0]
    assert ecomrl_jax.make("ShopperRec-v0", num_items=np.int64(50))[0] == \
        ecomrl_jax.make("ShopperRec-v0", num_items=50)[0]
    assert ecomrl_jax.make("SupplyChain-v1", lead_times=[1, 2])[0] == \
        ecomrl_jax.make("SupplyChain-v1", lead_times=(1, 2))[0]


# --------------------------------------------------------------------------- actions


def _bad_actions(space, valid):
    """`[(bad action, the action it must act as under "clip")]`: entry 0 of a valid action
    replaced by out-of-range (and, for a Box, non-finite) values."""
    flat = np.array(valid).reshape(-1)

    def with_first(value):
        a = flat.copy()
        a[0] = value
        return jnp.asarray(a.reshape(np.shape(valid)), valid.dtype)

    if isinstance(space, spaces.Box):
        low = float(np.broadcast_to(space.low, space.shape).reshape(-1)[0])
        high = float(np.broadcast_to(space.high, space.shape).reshape(-1)[0])
        return [(with_first(v), with_first(c)) for v, c in
                ((math.nan, low), (math.inf, high), (-math.inf, low), (high + 1, high),
                 (low - 1, low))]
    return [(with_first(v), with_first(c)) for v, c in
            ((-1, 0), (space.n, space.n - 1), (space.n + 7, space.n - 1))]


@pytest.mark.parametrize("env_id, kwargs", [(e, {}) for e in ENV_IDS] + ACTION_VARIANTS)
def test_out_of_range_and_non_finite_actions_follow_the_documented_rule(env_id, kwargs):
    """See `ecomrl_jax.spaces.check_action`: an out-of-range index acts as the nearest valid
    one ("clip") or as doing nothing whatever its value ("ignore"), per the env's
    `out_of_range_action`; a Box action is clipped, NaN acting as the low end. Either way
    the step is finite and `info["invalid_actions"]` counts it."""
    env, params = ecomrl_jax.make(env_id, **kwargs)
    assert env.out_of_range_action in ("clip", "ignore")
    key = jax.random.key(1)
    _, state = env.reset(key, params)
    space = env.action_space(params)
    valid = space.sample(jax.random.key(2))
    if isinstance(space, spaces.Box):
        middle = (np.asarray(space.low) + np.asarray(space.high)) / 2
        valid = jnp.asarray(np.broadcast_to(middle, space.shape), jnp.float32)
    step, steps = env.step, []  # gymnax jits it, once per env configuration
    for bad, clipped in _bad_actions(space, valid):
        out = step(key, state, bad, params)
        assert float(out[-1]["invalid_actions"]) >= 1, (bad, out[-1]["invalid_actions"])
        for x in jax.tree.leaves((out[0], out[2], out[5])):  # obs, reward, info
            assert np.all(np.isfinite(np.asarray(x, np.float64))), bad
        if env.out_of_range_action == "clip" or isinstance(space, spaces.Box):
            expected = step(key, state, clipped, params)
            _assert_close(out[:5], expected[:5])
        steps.append(out)
    if env.out_of_range_action == "ignore" and not isinstance(space, spaces.Box):
        for out in steps[1:]:
            _assert_close(out, steps[0])
    if not isinstance(space, spaces.Box):
        with pytest.raises(TypeError, match="integers"):
            step(key, state, valid.astype(jnp.float32), params)
    with pytest.raises(ValueError, match="shape"):
        step(key, state, jnp.stack([valid, valid]), params)
