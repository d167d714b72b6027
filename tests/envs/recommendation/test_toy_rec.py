"""Invariants of ToyRec-v0 (ecomrl_jax/envs/recommendation/toy_rec.py); see docs/envs/toy_rec.md.

Compiling takes seconds on a busy CPU, so tests share a few jitted programs built once per
module (fixtures below).
"""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.recommendation.toy_rec import BOUGHT, CLICKED, NEW, EnvState, ToyRec
from tests.helpers import to_numpy

NUM_ENVS, NUM_STEPS = 256, 40  # shape of the public-step rollout
MC_KEYS = 4000  # Monte Carlo check: draws per (state, action) pair
SMALL = dict(num_users=3, num_items=4)  # 243 states: the dense model stays cheap to test


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def toy():
    return ecomrl_jax.make("ToyRec-v0")


@pytest.fixture(scope="module")
def run_rollout(toy):
    """Jitted `(params, key, actions) -> records`: NUM_ENVS envs reset and take NUM_STEPS public
    `env.step` calls with the given actions (auto-reset included). Records hold, per step, the
    state before (`state`), after the step and any reset (`next`), the action, observation,
    reward, flags, info and info["final_observation"] (`final`)."""
    env = toy[0]

    def episode(params, key, actions):
        k_reset, k_steps = jax.random.split(key)
        _, state = env.reset(k_reset, params)

        def body(state, x):
            k, action = x
            obs, nxt, reward, terminated, truncated, info = env.step(k, state, action, params)
            record = dict(state=state, next=nxt, action=action, obs=obs, reward=reward,
                          terminated=terminated, truncated=truncated,
                          final=info.pop("final_observation"), info=info)
            return nxt, record

        return jax.lax.scan(body, state, (jax.random.split(k_steps, NUM_STEPS), actions))[1]

    run = jax.jit(jax.vmap(episode, in_axes=(None, 0, 0)))
    return lambda params, key, actions: to_numpy(run(params, jax.random.split(key, NUM_ENVS), actions))


@pytest.fixture(scope="module")
def rollout(toy, run_rollout):
    """Uniform random actions, one in ten out of range."""
    env, params = toy
    actions = jax.random.randint(jax.random.key(0), (NUM_ENVS, NUM_STEPS), -1, env.num_items + 1)
    actions = jnp.where(jax.random.uniform(jax.random.key(1), actions.shape) < 0.9,
                        jnp.clip(actions, 0, env.num_items - 1), actions)
    return run_rollout(params, jax.random.key(2), actions)


@pytest.fixture(scope="module")
def small():
    return ecomrl_jax.make("ToyRec-v0", **SMALL)


@pytest.fixture(scope="module")
def model(small):
    """`(P, R, (next_state, prob))` of the small env, computed in one jit."""
    env, params = small
    return to_numpy(jax.jit(lambda p: (env.transition_matrix(p), env.reward_matrix(p),
                                  env.successors(p)))(params))


def _live(r):
    return ~(r["terminated"] | r["truncated"])


# --------------------------------------------------------------------------- spaces, indices


def test_spaces_sizes_and_registration(toy):
    env, params = toy
    assert env.name == "ToyRec-v0" and env.num_users == 10 and env.num_items == 5
    assert env.num_states == 10 * 3 ** 5 == 2430 and env.num_actions == 5
    assert isinstance(env.observation_space(params), spaces.Discrete)
    assert env.observation_space(params).n == env.num_states
    assert env.action_space(params).n == 5
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == () and obs.dtype == jnp.int32
    assert isinstance(state, EnvState) and state.status.dtype == jnp.int32
    g_env, g_params = gymnax.make("ToyRec-v0")
    assert isinstance(g_env, ToyRec) and g_params.click_prob.shape == (10, 5)


def test_state_index_round_trips_over_all_states(toy):
    env, _ = toy
    index = jnp.arange(env.num_states)
    user, status = env.decode_index(index)
    assert user.min() == 0 and user.max() == env.num_users - 1
    assert status.shape == (env.num_states, env.num_items) and set(np.unique(status)) == {0, 1, 2}
    states = EnvState(time=jnp.zeros_like(index), user=user, status=status)
    np.testing.assert_array_equal(jax.vmap(env.state_index)(states), index)


def test_one_hot_observation_encodes_the_same_state(toy, rollout):
    env, params = ecomrl_jax.make("ToyRec-v0", obs_type="one_hot")
    space = env.observation_space(params)
    assert isinstance(space, spaces.Box) and space.shape == (10 + 3 * 5,)
    states = _index(rollout["next"], (slice(0, 8), slice(None)))
    obs = np.asarray(jax.vmap(jax.vmap(env.get_obs))(states))
    assert obs.dtype == np.float32 and bool(space.contains(obs[0, 0]))
    np.testing.assert_array_equal(obs[..., :10].argmax(-1), states.user)
    np.testing.assert_array_equal(obs[..., 10:].reshape(8, NUM_STEPS, 5, 3).argmax(-1),
                                  states.status)
    np.testing.assert_array_equal(obs.sum(-1), 1 + env.num_items)


# --------------------------------------------------------------------------- step invariants


def test_observation_is_the_state_index(toy, rollout):
    env, _ = toy
    r = rollout
    index = jax.vmap(jax.vmap(env.state_index))
    np.testing.assert_array_equal(r["obs"], index(r["next"]))
    live = _live(r)
    np.testing.assert_array_equal(r["final"][live], r["obs"][live])
    assert np.all((r["obs"] >= 0) & (r["obs"] < env.num_states))


def test_status_moves_only_for_the_recommended_item_and_never_back(toy, rollout):
    env, _ = toy
    r = rollout
    before, after = r["state"].status, r["next"].status
    live = _live(r)
    changed = before != after
    assert np.all(changed.sum(-1)[live] <= 1)
    rows = np.nonzero(changed.any(-1) & live)
    assert np.all(np.argmax(changed[rows], -1) == r["action"][rows])
    assert np.all(after[live] >= before[live])


def test_outcomes_reward_and_info(toy, rollout):
    env, _ = toy
    r = rollout
    info, live = r["info"], _live(r)
    assert set(info) == {"clicks", "purchases", "invalid_actions", "terminated", "truncated"}
    assert r["reward"].dtype == np.float32
    np.testing.assert_array_equal(r["reward"], info["purchases"])  # a purchase pays 1
    assert np.all(info["purchases"] <= info["clicks"])
    valid = (r["action"] >= 0) & (r["action"] < env.num_items)
    np.testing.assert_array_equal(info["invalid_actions"], (~valid).astype(np.float32))
    item = np.clip(r["action"], 0, env.num_items - 1)
    before = np.take_along_axis(r["state"].status, item[..., None], -1)[..., 0]
    after = np.take_along_axis(r["next"].status, item[..., None], -1)[..., 0]
    assert np.all(info["clicks"][~valid] == 0) and np.all(info["clicks"][before == BOUGHT] == 0)
    bought, click_only = info["purchases"] == 1, (info["clicks"] == 1) & (info["purchases"] == 0)
    np.testing.assert_array_equal(after[bought & live], BOUGHT)
    np.testing.assert_array_equal(after[click_only & live], CLICKED)
    no_click = (info["clicks"] == 0) & live
    np.testing.assert_array_equal(after[no_click], before[no_click])
    np.testing.assert_array_equal(r["next"].status[no_click], r["state"].status[no_click])
    # every kind of event happens in the rollout
    for mask in (bought, click_only, no_click, ~valid, (before == CLICKED) & bought):
        assert mask.sum() > 20


def test_ends_and_auto_reset(toy, rollout):
    env, params = toy
    r = rollout
    final_status = np.asarray(env.decode_index(r["final"])[1])
    np.testing.assert_array_equal(r["terminated"], np.all(final_status == BOUGHT, -1))
    np.testing.assert_array_equal(r["truncated"],
                                  r["state"].time + 1 >= params.max_steps_in_episode)
    assert r["terminated"].sum() > 10 and r["truncated"].sum() > 10
    ended = ~_live(r)
    np.testing.assert_array_equal(r["next"].time[ended], 0)
    np.testing.assert_array_equal(r["next"].status[ended], NEW)
    np.testing.assert_array_equal(r["next"].user[_live(r)], r["state"].user[_live(r)])


def test_reset_distribution(toy, rollout):
    env, _ = toy
    fresh = rollout["state"].time == 0
    assert fresh.sum() > 500
    np.testing.assert_array_equal(rollout["state"].status[fresh], NEW)
    users = rollout["state"].user[fresh]
    k, expected = env.num_users, users.size / env.num_users
    chi2 = ((np.bincount(users, minlength=k) - expected) ** 2 / expected).sum()
    assert abs(chi2 - (k - 1)) < 5 * np.sqrt(2 * (k - 1)), chi2  # uniform over users


# --------------------------------------------------------------------------- known model


def test_transition_and_reward_matrices_are_a_valid_model(small, model):
    env, params = small
    P, R, (next_state, prob) = model
    S, A = env.num_states, env.num_actions
    assert S == 3 * 3 ** 4 and P.shape == (S, A, S) and P.dtype == np.float32 and R.shape == (S, A)
    assert np.all(P >= 0) and np.all(R >= 0) and np.all(R <= 1)
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-6)
    assert np.all((P > 0).sum(-1) <= 3)  # no click, click only, purchase
    assert next_state.shape == prob.shape == (S, A, 3) and np.all(prob >= 0)  # sparse form of P
    np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-6)
    user, status = map(np.asarray, env.decode_index(np.arange(S)))
    terminal = np.all(status == BOUGHT, -1)
    assert terminal.sum() == env.num_users
    np.testing.assert_array_equal(P[terminal][:, :, terminal].sum(-1), 1.0)  # absorbing
    np.testing.assert_array_equal(R[terminal], 0.0)
    # R is the probability of moving to the state where the recommended item is bought
    place = 3 ** np.arange(env.num_items)
    to_bought = np.arange(S)[:, None] + (BOUGHT - status) * place
    p_buy = np.take_along_axis(P, to_bought[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.where(status == BOUGHT, 0.0, p_buy), R, atol=1e-6)
    # closed form for first recommendations: P(buy) = click_prob * purchase_prob
    starts = np.arange(env.num_users) * 3 ** env.num_items
    np.testing.assert_allclose(R[starts], params.click_prob * params.purchase_prob, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(env.initial_state_distribution(params))[starts], 1 / 3)
    # a second look converts better: P(buy | clicked before) > P(buy | new)
    once = starts[:, None] + place[None, :]  # item i clicked, nothing else
    boosted = R[once, np.arange(env.num_items)[None, :]]
    assert np.all(boosted > R[starts])


def test_default_model_rows_sum_to_one(toy):
    env, params = toy
    next_state, prob = to_numpy(jax.jit(env.successors)(params))
    assert next_state.shape == (2430, 5, 3) and next_state.min() >= 0 and next_state.max() < 2430
    np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-6)
    assert np.all(prob >= 0) and np.all(prob <= 1)


def test_transition_matrix_matches_sampled_steps(small, model):
    """Monte Carlo: from every (state, action) pair, MC_KEYS public `env.step` calls
    (info["final_observation"] is the pre-reset state index); the next-state frequencies
    match P within 5 standard errors (exactly 0 where P is 0) and the mean reward matches R."""
    env, params = small
    P, R, _ = model
    S, A = env.num_states, env.num_actions

    @jax.jit
    def sample(index, action, keys):
        user, status = env.decode_index(index)
        state = EnvState(time=jnp.int32(0), user=user, status=status)
        out = jax.vmap(lambda k: env.step(k, state, action, params))(keys)
        return out[5]["final_observation"], out[2]

    pair_s, pair_a = (x.ravel() for x in np.meshgrid(np.arange(S), np.arange(A), indexing="ij"))
    keys = jax.random.split(jax.random.key(5), MC_KEYS)
    next_states, rewards = map(np.asarray, jax.vmap(sample, in_axes=(0, 0, None))(
        jnp.asarray(pair_s, jnp.int32), jnp.asarray(pair_a, jnp.int32), keys))
    counts = np.zeros((S * A, S))
    np.add.at(counts, (np.arange(S * A)[:, None], next_states), 1.0)
    freq, p = counts / MC_KEYS, P[pair_s, pair_a]
    np.testing.assert_array_equal(freq[p == 0], 0.0)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / MC_KEYS) + 1e-3)
    r = R[pair_s, pair_a]
    assert np.all(np.abs(rewards.mean(1) - r) <= 5 * np.sqrt(r * (1 - r) / MC_KEYS) + 1e-3)
    # outcomes: a new item has 3 (no click, click, purchase), a clicked one 2, a bought one 1
    status = np.asarray(env.decode_index(pair_s)[1])[np.arange(S * A), pair_a]
    np.testing.assert_array_equal((p > 0).sum(-1), 3 - status)


# --------------------------------------------------------------------------- jit / vmap / keys


def test_jit_equals_no_jit_and_vmap_over_params_equals_loop(toy):
    """`vmap(step_env)` over keys, states, actions and params made by `vmap(make_params)`
    (domain randomisation) equals a loop of jitted `step_env` calls, which equals `step_env`
    run op by op."""
    env, _ = toy
    n = 4
    params = jax.jit(jax.vmap(env.make_params))(jax.random.split(jax.random.key(3), n))
    params = params.replace(revisit_boost=jnp.array([0.0, 0.3, 0.6, 1.0]))
    keys = jax.random.split(jax.random.key(4), n)
    states = EnvState(time=jnp.array([0, 3, 7, 19], jnp.int32), user=jnp.array([0, 9, 4, 2]),
                      status=jnp.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [2, 1, 0, 2, 1],
                                        [2, 2, 2, 2, 1]], jnp.int32))
    actions = jnp.array([3, 0, 4, 4], jnp.int32)
    batched = to_numpy(jax.jit(jax.vmap(env.step_env))(keys, states, actions, params))
    step_env = jax.jit(env.step_env)
    for i in range(n):
        args = (keys[i], _index(states, i), actions[i], _index(params, i))
        env.validate_params(args[3])
        alone = step_env(*args)
        for x, y in zip(jax.tree.leaves(alone), jax.tree.leaves(_index(batched, i)), strict=True):
            np.testing.assert_array_equal(np.asarray(x), y)
        if i in (1, 2):  # op by op is slow to dispatch, so two members
            for x, y in zip(jax.tree.leaves(env.step_env(*args)), jax.tree.leaves(alone),
                            strict=True):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.allclose(params.click_prob[0], params.click_prob[1])


def test_make_params_is_deterministic_and_in_range(toy):
    env, _ = toy
    a, b, c = (env.make_params(jax.random.key(k)) for k in (7, 7, 8))
    np.testing.assert_array_equal(a.click_prob, b.click_prob)
    assert not np.array_equal(a.click_prob, c.click_prob)
    assert 0.2 <= a.click_prob.min() and a.click_prob.max() <= 0.9
    assert 0.05 <= a.purchase_prob.min() and a.purchase_prob.max() <= 0.5
    np.testing.assert_array_equal(env.default_params.purchase_prob,
                                  env.make_params(jax.random.key(0)).purchase_prob)
    assert env.make_params(jax.random.key(7), revisit_boost=0.25).revisit_boost == 0.25
    with pytest.raises(ValueError, match="valid"):
        env.make_params(jax.random.key(7), click_prob=0.5)


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize("bad", [-1, 5, 99])
def test_out_of_range_action_recommends_nothing(toy, run_rollout, bad):
    env, params = toy
    r = run_rollout(params, jax.random.key(6), jnp.full((NUM_ENVS, NUM_STEPS), bad, jnp.int32))
    np.testing.assert_array_equal(r["info"]["invalid_actions"], 1.0)
    np.testing.assert_array_equal(r["info"]["clicks"], 0.0)
    np.testing.assert_array_equal(r["reward"], 0.0)
    np.testing.assert_array_equal(r["next"].status, NEW)
    assert not r["terminated"].any() and r["truncated"].sum() == NUM_ENVS * 2


def test_bad_action_type_and_shape_raise(toy):
    env, params = toy
    _, state = env.reset(jax.random.key(0), params)
    for action in (jnp.float32(1.0), 1.0, jnp.bool_(True)):
        with pytest.raises(TypeError, match="integer"):
            env.step(jax.random.key(1), state, action, params)
    for action in ([1], [[0, 1]]):
        with pytest.raises(ValueError, match=r"shape \(\)"):
            env.step(jax.random.key(1), state, jnp.array(action, jnp.int32), params)


BAD_PARAMS = [
    ("click_prob", lambda p: p.click_prob[:, :3]),
    ("click_prob", lambda p: p.click_prob.at[0, 0].set(1.5)),
    ("click_prob", lambda p: p.click_prob.at[0, 0].set(jnp.nan)),
    ("purchase_prob", lambda p: p.purchase_prob[None]),
    ("purchase_prob", lambda p: p.purchase_prob.at[2, 1].set(-0.1)),
    ("revisit_boost", lambda p: 1.5),
    ("revisit_boost", lambda p: float("nan")),
    ("max_steps_in_episode", lambda p: 0),
    ("max_steps_in_episode", lambda p: 10.5),
]


@pytest.mark.parametrize("field, make_bad", BAD_PARAMS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_PARAMS)])
def test_validate_params_rejects_and_names_field(toy, field, make_bad):
    env, params = toy
    env.validate_params(params)
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        env.validate_params(params.replace(**{field: make_bad(params)}))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_users=0), "num_users"),
    (dict(num_items=2.0), "num_items"),
    (dict(num_items=True), "num_items"),
    (dict(obs_type="pixels"), "obs_type"),
    (dict(num_items=30), "int32"),
    (dict(revisit_boost=-0.5), "revisit_boost"),
    (dict(max_steps_in_episode=0), "max_steps_in_episode"),
])
def test_make_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ecomrl_jax.make("ToyRec-v0", **kwargs)
