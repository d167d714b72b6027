"""Invariants of ShopperRec-v0 (ecomrl_jax/envs/recommendation/shopper_rec.py); see docs/envs/shopper_rec.md.

Compiling a program with this env takes seconds on CPU, so tests share a handful of jitted
programs built once per module (fixtures below) and batch with `lax.map` (a loop inside XLA:
same numbers as `vmap`, several times cheaper to compile); `vmap` is tested on its own.
"""

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.recommendation.shopper_rec import EnvState, ShopperRec, UserItemShopperRec
from ecomrl_jax.spaces import Slate
from tests.helpers import to_numpy

CARD = Path(__file__).resolve().parents[3] / "docs" / "envs" / "shopper_rec.md"
# Params that make terminations and truncations both frequent in short rollouts, and give
# every reward term a non-zero weight.
MIXED = dict(patience_init=0.5, max_steps_in_episode=15, click_weight=1.0,
             purchase_weight=0.5, revenue_weight=0.05)
NUM_ENVS, NUM_STEPS = 128, 60  # shape of every public-step rollout
NUM_KEYS = 10_000  # batch of every "same state, many keys" slate step


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def single():
    return ecomrl_jax.make("ShopperRec-v0", **MIXED)


@pytest.fixture(scope="module")
def slate():
    return ecomrl_jax.make("ShopperRec-v0", slate_size=3, **MIXED)


@pytest.fixture(scope="module")
def single_run(single):
    """Jitted `(params, keys, actions, column=-1) -> (first obs, records)`: for each env key,
    reset and take NUM_STEPS public `env.step` calls (auto-reset included). The policy plays
    the given actions, or, if `column >= 0`, the candidate with the largest value in that
    observation column (e.g. highest appeal).

    Records hold, per step, the state before (`state`), after the step and any auto-reset
    (`next`), the action, returned observation, reward, flags, info and
    info["final_observation"] (`final`)."""
    env = single[0]

    def episode(params, column, key, actions):
        k_reset, k_steps = jax.random.split(key)
        obs0, state = env.reset(k_reset, params)

        def body(carry, x):
            obs, state = carry
            k, action = x
            greedy = jnp.argmax(obs["candidates"][:, column]).astype(jnp.int32)
            action = jnp.where(column >= 0, greedy, action)
            obs, nxt, reward, term, trunc, info = env.step(k, state, action, params)
            info = dict(info)
            final = info.pop("final_observation")
            info.pop("terminated"), info.pop("truncated")
            return (obs, nxt), dict(state=state, action=action, next=nxt, obs=obs, final=final,
                                    reward=reward, terminated=term, truncated=trunc, info=info)

        keys = jax.random.split(k_steps, actions.shape[0])
        return obs0, jax.lax.scan(body, (obs0, state), (keys, actions))[1]

    run = jax.jit(lambda params, column, keys, actions: jax.lax.map(
        lambda x: episode(params, column, *x), (keys, actions)))

    def call(params, keys, actions, column=-1):
        actions = jnp.broadcast_to(jnp.asarray(actions, jnp.int32), (keys.shape[0], NUM_STEPS))
        return to_numpy(run(params, jnp.int32(column), keys, actions))

    return call


def _env_keys(seed):
    return jax.random.split(jax.random.key(seed), NUM_ENVS)


@pytest.fixture(scope="module")
def single_rollout(single, single_run):
    """Uniformly random actions, MIXED params."""
    env, params = single
    actions = jax.random.randint(jax.random.key(0), (NUM_ENVS, NUM_STEPS), 0, env.num_candidates)
    return single_run(params, _env_keys(1), actions)[1]


@pytest.fixture(scope="module")
def slate_map(slate):
    """Jitted `(keys, actions, state, params) -> step_env outputs` for each (key, action) pair
    from one fixed state: NUM_KEYS draws of the choice model."""
    env = slate[0]
    run = jax.jit(lambda keys, actions, state, params: jax.lax.map(
        lambda x: env.step_env(x[0], state, x[1], params), (keys, actions)))

    def call(keys, actions, state, params):
        actions = jnp.broadcast_to(jnp.asarray(actions, jnp.int32), (NUM_KEYS, env.slate_size))
        return to_numpy(run(keys, actions, state, params))

    return call


@functools.cache
def _slate_keys():
    """The NUM_KEYS keys every slate_map call uses (row i of an output used key i)."""
    return jax.random.split(jax.random.key(12), NUM_KEYS)


def _distinct_state(env, params, seed=0):
    """A reset state whose candidates are all distinct items (so the clicked slot is known)."""
    for s in range(seed, seed + 100):
        _, state = env.reset(jax.random.key(s), params)
        if len(set(np.asarray(state.candidates).tolist())) == env.num_candidates:
            return state
    raise AssertionError("no reset state with distinct candidates")


# --------------------------------------------------------------------------- observations


def _check_obs(env, params, obs, lead=()):
    space = env.observation_space(params)
    assert set(obs) == set(space.spaces)
    for name, sub in space.spaces.items():
        assert obs[name].shape == lead + sub.shape, name
        assert obs[name].dtype == sub.dtype, name
        assert np.all(np.isfinite(obs[name])), name
        assert bool(sub.contains(obs[name])), name


def test_observation_matches_space_and_is_finite(single, slate, single_run, slate_map,
                                                 single_rollout):
    env, params = single
    space = env.observation_space(params)
    assert set(space.spaces) == {"candidates", "history", "time"}
    assert space.spaces["candidates"].shape == (env.num_candidates, env.embed_dim + 3)
    assert space.spaces["history"].shape == (env.history_len, env.embed_dim + 4)
    obs0, rec = single_run(params, _env_keys(1), 0)
    _check_obs(env, params, obs0, (NUM_ENVS,))
    for r in (rec, single_rollout):
        assert (r["terminated"] | r["truncated"]).any() and r["info"]["clicks"].any()
        _check_obs(env, params, r["obs"], (NUM_ENVS, NUM_STEPS))
        _check_obs(env, params, r["final"], (NUM_ENVS, NUM_STEPS))
    env, params = slate
    obs, state = env.reset(jax.random.key(0), params)
    _check_obs(env, params, obs)
    obs, *_ = slate_map(_slate_keys(), [0, 1, 2], state, params)
    _check_obs(env, params, obs, (NUM_KEYS,))


def test_observation_columns(single, single_rollout):
    env, params = single
    d = env.embed_dim
    nxt, obs = single_rollout["next"], single_rollout["obs"]
    cand = nxt.candidates
    c = obs["candidates"]
    np.testing.assert_allclose(c[..., :d], np.asarray(params.item_embedding)[cand], rtol=1e-6)
    np.testing.assert_allclose(c[..., d], np.log(np.asarray(params.item_price)[cand]), rtol=1e-5)
    np.testing.assert_allclose(c[..., d + 1], np.asarray(params.item_appeal)[cand], rtol=1e-6)
    np.testing.assert_allclose(c[..., d + 2], np.asarray(params.item_quality)[cand], rtol=1e-6)
    h = obs["history"]
    valid = nxt.history_valid
    assert valid.sum() > 0 and (valid == 0).sum() > 0
    hist = nxt.history_items[valid == 1]
    np.testing.assert_allclose(h[valid == 1][:, :d], np.asarray(params.item_embedding)[hist],
                               rtol=1e-6)
    np.testing.assert_allclose(h[valid == 1][:, d], np.log(np.asarray(params.item_price))[hist],
                               rtol=1e-5)
    np.testing.assert_allclose(h[valid == 1][:, d + 1], np.asarray(params.item_quality)[hist],
                               rtol=1e-6)
    np.testing.assert_array_equal(h[..., d + 2], nxt.history_purchased)
    np.testing.assert_array_equal(h[..., d + 3], valid)  # last column: slot holds a click
    assert np.all(h[valid == 0] == 0.0)  # empty slots are all zeros
    np.testing.assert_allclose(obs["time"][..., 0], nxt.time / params.max_steps_in_episode)


# --------------------------------------------------------------------------- step invariants


def _clicked_item(r):
    return np.take_along_axis(r["state"].candidates, r["action"][..., None], -1)[..., 0]


def _live(r):
    """Steps that did not end the episode: `next` is the state the step produced."""
    return ~(r["terminated"] | r["truncated"])


def test_reward_is_weighted_sum_of_business_metrics(single, single_rollout):
    env, params = single
    r = single_rollout
    info = r["info"]
    assert set(info) == {"clicks", "purchases", "revenue", "invalid_actions", "slot_clicks"}
    np.testing.assert_array_equal(info["slot_clicks"].sum(-1), info["clicks"])
    assert np.all(np.isfinite(r["reward"]))
    assert r["reward"].dtype == np.float32
    assert np.all(np.isin(info["clicks"], [0.0, 1.0]))
    assert np.all(np.isin(info["purchases"], [0.0, 1.0]))
    assert np.all(info["purchases"] <= info["clicks"])
    assert info["clicks"].mean() > 0.05 and info["purchases"].sum() > 0  # both terms exercised
    expected = (params.click_weight * info["clicks"] + params.purchase_weight * info["purchases"]
                + params.revenue_weight * info["revenue"])
    np.testing.assert_allclose(r["reward"], expected, rtol=1e-6, atol=1e-6)
    # revenue is the price of the clicked item, only when it is bought
    price = np.asarray(params.item_price)[_clicked_item(r)]
    np.testing.assert_allclose(info["revenue"], info["purchases"] * price, rtol=1e-6)
    np.testing.assert_array_equal(info["invalid_actions"], 0.0)


def test_patience_bookkeeping_and_termination(single, single_rollout):
    env, params = single
    r = single_rollout
    state, nxt, clicks, live = r["state"], r["next"], r["info"]["clicks"], _live(r)
    quality = np.asarray(params.item_quality)[_clicked_item(r)]
    expected = (state.patience - params.patience_step_cost
                + clicks * params.quality_effect * (quality - params.quality_threshold))
    np.testing.assert_allclose(nxt.patience[live], expected[live], rtol=1e-5, atol=1e-6)
    # terminated exactly when the updated patience reaches 0 (1e-6: float32 rounding margin)
    # or the session's last step is done (HorizonEndsEpisode: never truncated)
    at_horizon = state.time + 1 >= params.max_steps_in_episode
    out_of_patience = r["terminated"] & ~at_horizon
    assert np.all(expected[out_of_patience] <= 1e-6)
    assert np.all(expected[~r["terminated"]] > -1e-6)
    assert np.all(state.patience > 0.0)  # a live state never has exhausted patience
    np.testing.assert_array_equal(nxt.time[live], state.time[live] + 1)
    assert not r["truncated"].any() and np.all(r["terminated"][at_horizon])
    assert np.all(state.time < params.max_steps_in_episode)
    assert out_of_patience.sum() > 10 and at_horizon.sum() > 10  # both endings exercised
    # a click on a good item restores patience, on a bad one drains it faster than no click
    good = live & (clicks == 1) & (quality > params.quality_threshold)
    bad = live & (clicks == 1) & (quality < params.quality_threshold)
    assert good.any() and bad.any()
    assert np.all(nxt.patience[good] > state.patience[good] - params.patience_step_cost)
    assert np.all(nxt.patience[bad] < state.patience[bad] - params.patience_step_cost)


def test_history_pushes_clicked_item_only_on_click(single_rollout):
    r = single_rollout
    state, nxt, live = r["state"], r["next"], _live(r)
    click = (r["info"]["clicks"] == 1.0) & live
    no_click = (r["info"]["clicks"] == 0.0) & live
    item = _clicked_item(r)
    assert click.any() and no_click.any()
    np.testing.assert_array_equal(nxt.history_items[click][:, 0], item[click])
    np.testing.assert_array_equal(nxt.history_items[click][:, 1:],
                                  state.history_items[click][:, :-1])
    np.testing.assert_array_equal(nxt.history_valid[click][:, 0], 1.0)
    np.testing.assert_array_equal(nxt.history_valid[click][:, 1:],
                                  state.history_valid[click][:, :-1])
    np.testing.assert_array_equal(nxt.history_purchased[click][:, 0],
                                  r["info"]["purchases"][click])
    for field in ("history_items", "history_purchased", "history_valid"):
        np.testing.assert_array_equal(getattr(nxt, field)[no_click],
                                      getattr(state, field)[no_click])


def test_interest_drifts_toward_clicked_item(single, single_rollout):
    env, params = single
    r = single_rollout
    state, nxt, live = r["state"], r["next"], _live(r)
    click = (r["info"]["clicks"] == 1.0) & live
    no_click = (r["info"]["clicks"] == 0.0) & live
    emb = np.asarray(params.item_embedding)[_clicked_item(r)]
    expected = state.interest + params.interest_drift * (emb - state.interest)
    np.testing.assert_allclose(nxt.interest[click], expected[click], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(nxt.interest[no_click], state.interest[no_click])
    before = np.linalg.norm(state.interest - emb, axis=-1)[click]
    after = np.linalg.norm(nxt.interest - emb, axis=-1)[click]
    assert np.all(after <= before + 1e-6) and np.mean(after < before) > 0.99
    assert np.all(np.isfinite(nxt.interest))


def test_candidates_in_range_and_redrawn_each_step(single, single_rollout):
    env, _ = single
    r = single_rollout
    assert np.all((r["next"].candidates >= 0) & (r["next"].candidates < env.num_items))
    same = np.all(r["state"].candidates == r["next"].candidates, axis=-1)
    assert not same.any()


def test_terminal_observation_is_returned_in_info(single, single_rollout):
    env, params = single
    r = single_rollout
    live = _live(r)
    for name in ("candidates", "history", "time"):  # no reset: both are the stepped obs
        np.testing.assert_array_equal(r["final"][name][live], r["obs"][name][live])
    ended = r["truncated"] & ~r["terminated"]
    np.testing.assert_allclose(r["final"]["time"][ended], 1.0)  # pre-reset time = max_steps
    np.testing.assert_array_equal(r["obs"]["time"][~live], 0.0)  # post-reset time


# --------------------------------------------------------------------------- choice model


def test_choice_and_purchase_frequencies_match_the_model(slate, slate_map):
    env, params = slate
    state = _distinct_state(env, params)
    action = jnp.array([4, 0, 7], jnp.int32)
    items = state.candidates[action]
    logits, affinity = env.click_logits(state.interest, items, params)
    logits = logits - params.position_bias * jnp.arange(env.slate_size)
    probs = np.asarray(jax.nn.softmax(jnp.append(logits, params.no_click_logit)))
    assert np.all((probs >= 0) & (probs <= 1)) and np.isclose(probs.sum(), 1.0, atol=1e-6)
    p_buy = np.asarray(env.purchase_prob(affinity, params.item_price[items], params))
    assert np.all((p_buy >= 0) & (p_buy <= 1))

    _, post, _, _, info = slate_map(_slate_keys(), action, state, params)
    n = NUM_KEYS
    clicked = info["clicks"] == 1.0
    first = post.history_items[:, 0]
    slot = clicked[:, None] & (first[:, None] == np.asarray(items)[None])
    assert np.all(slot.sum(1) == clicked)  # the clicked item is always one of the shown ones
    np.testing.assert_array_equal(info["slot_clicks"], slot)
    freq = np.append(slot.mean(0), 1.0 - clicked.mean())
    tol = 5 * np.sqrt(probs * (1 - probs) / n) + 1e-3
    assert np.all(np.abs(freq - probs) < tol), (freq, probs)
    bought = info["purchases"] == 1.0
    for j in range(env.slate_size):
        m = slot[:, j]
        se = np.sqrt(p_buy[j] * (1 - p_buy[j]) / m.sum())
        assert abs(bought[m].mean() - p_buy[j]) < 5 * se + 1e-3


def test_purchase_prob_is_a_probability_and_monotone(single):
    env, params = single
    affinity = jnp.linspace(-1.0, 1.0, 21)
    for price in (1e-3, 1.0, 20.0, 1e4):
        p = np.asarray(env.purchase_prob(affinity, jnp.float32(price), params))
        assert np.all((p >= 0) & (p <= 1)) and np.all(np.isfinite(p))
        assert np.all(np.diff(p) >= 0)  # rises with affinity
    prices = jnp.array([1.0, 10.0, 50.0, 200.0])
    p = np.asarray(env.purchase_prob(jnp.float32(0.5), prices, params))
    assert np.all(np.diff(p) < 0)  # falls with price


# --------------------------------------------------------------------------- reset, auto-reset


def test_reset_distribution(single, single_rollout):
    env, params = single
    state = single_rollout["state"]
    fresh = state.time == 0  # every state with time 0 came straight out of reset_env
    assert fresh.sum() > 500
    np.testing.assert_array_equal(state.patience[fresh], np.float32(params.patience_init))
    np.testing.assert_array_equal(state.history_valid[fresh], 0.0)
    np.testing.assert_array_equal(single_rollout["obs"]["history"][single_rollout["next"].time
                                                                  == 0], 0.0)
    pop = np.asarray(params.shopper_interest)
    dist = ((state.interest[fresh][:, None, :] - pop[None]) ** 2).sum(-1)
    assert np.all(dist.min(1) == 0.0)  # every shopper is a member of params.shopper_interest
    # shoppers uniform over the population, candidates uniform over the catalogue (at reset
    # and at every step): chi-square statistic within 5 sd of its mean
    cands = single_rollout["next"].candidates
    for draws, k in [(dist.argmin(1), env.num_shoppers), (cands.ravel(), env.num_items)]:
        expected = draws.size / k
        chi2 = ((np.bincount(draws, minlength=k) - expected) ** 2 / expected).sum()
        assert abs(chi2 - (k - 1)) < 5 * np.sqrt(2 * (k - 1)), chi2
    # drawn with replacement: P(some repeat among 10 of 1000) = 1 - prod(1 - i/1000) = 0.044
    sets = cands.reshape(-1, env.num_candidates)
    repeats = np.mean([len(set(c)) < env.num_candidates for c in sets])
    assert 0.03 < repeats < 0.06, repeats


def test_auto_reset_at_the_end_of_the_session(single, single_run):
    params = single[1].replace(patience_init=1e3, max_steps_in_episode=7)
    _, rec = single_run(params, _env_keys(4), 0)
    assert not rec["truncated"].any()  # the session's end terminates (HorizonEndsEpisode)
    expected = np.broadcast_to((np.arange(NUM_STEPS) + 1) % 7 == 0, rec["terminated"].shape)
    np.testing.assert_array_equal(rec["terminated"], expected)
    nxt = rec["next"]
    np.testing.assert_array_equal(nxt.time, np.broadcast_to((np.arange(NUM_STEPS) + 1) % 7,
                                                            nxt.time.shape))
    np.testing.assert_array_equal(nxt.patience[expected], np.float32(1e3))
    np.testing.assert_array_equal(nxt.history_valid[expected], 0.0)
    np.testing.assert_array_equal(rec["obs"]["time"][expected], 0.0)
    np.testing.assert_allclose(rec["final"]["time"][expected], 1.0)  # pre-reset observation
    assert nxt.history_valid[~expected].sum() > 0  # history did fill up between resets


def test_auto_reset_after_termination(single, single_run):
    params = single[1].replace(patience_init=0.12, max_steps_in_episode=50)
    _, rec = single_run(params, _env_keys(4), 0)
    term = rec["terminated"]
    assert term.sum() > 100 and not rec["truncated"].any()
    nxt = rec["next"]
    np.testing.assert_array_equal(nxt.time[term], 0)
    np.testing.assert_array_equal(nxt.patience[term], np.float32(0.12))
    np.testing.assert_array_equal(nxt.history_valid[term], 0.0)
    assert np.all(nxt.patience > 0) and np.all(nxt.time[~term] > 0)


# --------------------------------------------------------------------------- jit / vmap / keys


def test_jit_equals_no_jit(slate, slate_map):
    env, params = slate
    state = _distinct_state(env, params)
    actions = jax.random.randint(jax.random.key(3), (NUM_KEYS, 3), -1, 11)
    jitted = slate_map(_slate_keys(), actions, state, params)
    clicked = np.flatnonzero(jitted[4]["clicks"] == 1.0)
    # compare on steps with and without a click (and with some invalid slots)
    rows = [*clicked[:3], *np.flatnonzero(jitted[4]["clicks"] == 0.0)[:2]]
    assert len(rows) == 5 and jitted[4]["invalid_actions"][rows].sum() > 0
    for i in rows:
        eager = env.step_env(_slate_keys()[i], state, actions[i], params)  # op by op, no jit
        _assert_trees_close(eager, _index(jitted, i))


def test_vmap_over_params_equals_loop_without_recompile(slate, slate_map):
    """Domain randomisation: vmap(step_env) over keys, states, actions and params made by
    vmap(make_params); each member equals the same step taken alone, new param values reuse
    the compiled program."""
    env = slate[0]
    traces = []

    def counted_step(*args):
        traces.append(1)  # runs once per trace
        return env.step_env(*args)

    vstep = jax.jit(jax.vmap(counted_step))
    n = 3
    make_batch = jax.jit(jax.vmap(env.make_params))
    params_a = make_batch(jax.random.split(jax.random.key(1), n))
    params_b = make_batch(jax.random.split(jax.random.key(2), n))
    assert params_a.item_price.shape == (n, env.num_items) and params_a.position_bias.shape == (n,)
    assert not np.allclose(params_a.item_price[0], params_a.item_price[1])  # catalogues differ
    # scalar fields randomise per member too
    params_a = params_a.replace(patience_init=jnp.array([0.5, 1.0, 2.0]),
                                position_bias=jnp.array([0.0, 0.5, 2.0]))
    params_b = params_b.replace(patience_init=jnp.array([3.0, 0.25, 1.5]),
                                position_bias=jnp.array([1.0, 0.1, 0.0]))
    actions = jax.random.randint(jax.random.key(3), (NUM_KEYS, 3), 0, env.num_candidates)
    for params in (params_a, params_b):
        members = [_index(params, i) for i in range(n)]
        for p in members:
            env.validate_params(p)
        resets = [env.reset(jax.random.key(10 + i), p) for i, p in enumerate(members)]
        states = jax.tree.map(lambda *xs: jnp.stack(xs), *[s for _, s in resets])
        np.testing.assert_array_equal(states.patience, params.patience_init)
        batched = to_numpy(vstep(_slate_keys()[:n], states, actions[:n], params))
        for i in range(n):  # vmap == loop over envs (slate_map is an unbatched loop)
            alone = _index(slate_map(_slate_keys(), actions, resets[i][1], members[i]), i)
            _assert_trees_close(alone, _index(batched, i))
    assert len(traces) == 1  # new param values reuse the compiled program


def test_make_params_is_deterministic_per_key(single):
    env = single[0]
    a, b = env.make_params(jax.random.key(7)), env.make_params(jax.random.key(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    c = env.make_params(jax.random.key(8))
    assert not np.array_equal(a.item_embedding, c.item_embedding)
    np.testing.assert_allclose(np.linalg.norm(a.item_embedding, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a.shopper_interest, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(env.default_params.item_price,
                                  env.make_params(jax.random.key(0)).item_price)
    assert env.make_params(jax.random.key(7), position_bias=0.25).position_bias == 0.25
    with pytest.raises(ValueError, match="valid"):
        env.make_params(jax.random.key(7), not_a_param=1.0)


# --------------------------------------------------------------------------- invalid actions


@pytest.mark.parametrize("bad", [-1, 10, 1_000])
def test_out_of_range_discrete_action_shows_nothing(single, single_run, bad):
    env, params = single
    params = params.replace(max_steps_in_episode=100)
    _, rec = single_run(params, _env_keys(6), bad)
    np.testing.assert_array_equal(rec["info"]["invalid_actions"], 1.0)
    np.testing.assert_array_equal(rec["info"]["clicks"], 0.0)
    np.testing.assert_array_equal(rec["reward"], 0.0)
    np.testing.assert_array_equal(rec["next"].history_valid, 0.0)
    # patience only pays the step cost, so every session lasts the same number of steps
    patience, steps = np.float32(params.patience_init), 0
    while patience > 0:  # float32, as in the env
        patience, steps = np.float32(patience - np.float32(params.patience_step_cost)), steps + 1
    expected = np.broadcast_to((np.arange(NUM_STEPS) + 1) % steps == 0, rec["terminated"].shape)
    np.testing.assert_array_equal(rec["terminated"], expected)
    # the same keys with a valid action do produce clicks
    _, ok = single_run(params, _env_keys(6), 0)
    assert ok["info"]["clicks"].sum() > 0 and np.all(ok["info"]["invalid_actions"] == 0)


@pytest.mark.parametrize("action, equivalent, num_invalid", [
    ([0, 0, 1], [0, -1, 1], 1),      # repeated slot shown empty
    ([2, 5, 2], [2, 5, -1], 1),
    ([4, 4, 4], [4, -1, -1], 2),
    ([3, -1, 10], [3, 10, 99], 2),   # out of range at both ends
    ([9, 0, 9], [9, 0, -5], 1),
])
def test_slate_invalid_slots_are_shown_empty_and_counted(slate, slate_map, action, equivalent,
                                                         num_invalid):
    env, params = slate
    state = _distinct_state(env, params)
    out = slate_map(_slate_keys(), action, state, params)
    ref = slate_map(_slate_keys(), equivalent, state, params)
    np.testing.assert_array_equal(out[4]["invalid_actions"], float(num_invalid))
    np.testing.assert_array_equal(ref[4]["invalid_actions"], float(num_invalid))
    # bit-identical to showing nothing in the invalid slots (same keys)
    for x, y in zip(jax.tree.leaves(out[:4]), jax.tree.leaves(ref[:4]), strict=True):
        np.testing.assert_array_equal(x, y)
    clicked = out[4]["clicks"] == 1
    shown = set(np.asarray(state.candidates)[[a for a in action if 0 <= a < 10]].tolist())
    assert clicked.any() and set(out[1].history_items[clicked, 0].tolist()) <= shown


def test_fully_invalid_slate_never_clicks(slate, slate_map):
    env, params = slate
    state = _distinct_state(env, params)
    _, post, reward, _, info = slate_map(_slate_keys(), [-1, 10, -7], state, params)
    np.testing.assert_array_equal(info["invalid_actions"], 3.0)
    np.testing.assert_array_equal(info["clicks"], 0.0)
    np.testing.assert_array_equal(info["purchases"], 0.0)
    np.testing.assert_array_equal(reward, 0.0)
    np.testing.assert_allclose(post.patience, state.patience - params.patience_step_cost)


def test_float_action_raises_type_error(single, slate):
    for env, params, action in [(*single, jnp.float32(1.0)), (*single, 1.0),
                                (*single, jnp.bool_(True)),
                                (*slate, jnp.array([0.0, 1.0, 2.0]))]:
        _, state = env.reset(jax.random.key(0), params)
        with pytest.raises(TypeError, match="integer"):
            env.step(jax.random.key(1), state, action, params)


@pytest.mark.parametrize("which, action, expected", [
    ("single", [1], r"\(\)"),
    ("single", [[1]], r"\(\)"),
    ("slate", [0, 1], r"\(3,\)"),
    ("slate", 0, r"\(3,\)"),
    ("slate", [[0, 1, 2]], r"\(3,\)"),
])
def test_wrong_action_shape_raises_value_error(request, which, action, expected):
    env, params = request.getfixturevalue(which)
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match=expected):
        env.step(jax.random.key(1), state, jnp.asarray(action, jnp.int32), params)


# --------------------------------------------------------------------------- slates


def test_slate_action_space(single, slate):
    env, params = slate
    space = env.action_space(params)
    assert isinstance(space, Slate) and space.n == env.num_candidates and space.shape == (3,)
    assert space.slate_size == 3 and space.dtype == jnp.int32
    discrete = single[0].action_space(single[1])
    assert isinstance(discrete, spaces.Discrete) and discrete.n == single[0].num_candidates
    for k in range(5):
        assert bool(space.contains(space.sample(jax.random.key(k))))


def test_position_bias_lowers_click_rate_of_later_positions(slate, slate_map):
    env, params = slate
    state = _distinct_state(env, params)
    # random slates: every candidate is equally likely at every position
    rng = np.random.default_rng(5)
    slates = np.argsort(rng.random((NUM_KEYS, env.num_candidates)), axis=1)[:, :3]
    shown = np.asarray(state.candidates)[slates]

    def rates(position_bias):
        _, post, _, _, info = slate_map(_slate_keys(), slates, state,
                                        params.replace(position_bias=position_bias))
        hit = (info["clicks"][:, None] == 1.0) & (shown == post.history_items[:, :1])
        return hit.mean(0)

    biased, flat = rates(0.5), rates(0.0)
    se = np.sqrt(biased * (1 - biased) / NUM_KEYS)
    assert biased[0] - biased[1] > 5 * se[0] and biased[1] - biased[2] > 5 * se[1], biased
    se = np.sqrt(flat * (1 - flat) / NUM_KEYS)
    assert np.ptp(flat) < 5 * se.max(), flat  # no bias -> positions indistinguishable


# --------------------------------------------------------------------------- long-term trade-off


def _complete_episodes(rec):
    """(return, length, clicks) of every episode that ended inside the rollout."""
    done = rec["terminated"] | rec["truncated"]
    out = []
    for env_i in range(done.shape[0]):
        start = 0
        for end in np.flatnonzero(done[env_i]) + 1:
            out.append((rec["reward"][env_i, start:end].sum(), end - start,
                        rec["info"]["clicks"][env_i, start:end].sum()))
            start = end
    return np.array(out).T


def test_clickbait_loses_to_quality_over_a_session(single, single_run):
    """The point of the env: maximising appeal ends sessions early and earns less."""
    env = single[0]
    params = env.default_params
    assert int(params.max_steps_in_episode) < NUM_STEPS  # quality sessions can complete
    d = env.embed_dim
    keys = _env_keys(2024)  # common random numbers for both policies
    _, bait = single_run(params, keys, 0, column=d + 1)  # highest item_appeal
    _, good = single_run(params, keys, 0, column=d + 2)  # highest item_quality
    cand = bait["state"].candidates
    np.testing.assert_array_equal(  # the greedy policy really shows the max-appeal candidate
        np.asarray(params.item_appeal)[np.take_along_axis(cand, bait["action"][..., None], -1)],
        np.asarray(params.item_appeal)[cand].max(-1, keepdims=True))
    bait, good = _complete_episodes(bait), _complete_episodes(good)
    assert bait.shape[1] > 1000 and good.shape[1] >= NUM_ENVS
    # clickbait is the better myopic policy: more clicks per step ...
    assert bait[2].sum() / bait[1].sum() > 2 * good[2].sum() / good[1].sum()
    # ... but its sessions are far shorter and its return is lower
    for stat in (1, 0):  # length, return
        se = np.sqrt(bait[stat].var() / bait.shape[1] + good[stat].var() / good.shape[1])
        assert good[stat].mean() - bait[stat].mean() > 8 * se, (good[stat].mean(),
                                                                bait[stat].mean())


@pytest.mark.slow
def test_card_figures_of_appeal_and_quality(capsys):
    """The card's measurement block, run as written, prints exactly the rows of its table."""
    card = CARD.read_text()
    section = card[card.index("## Why a myopic click maximiser loses"):]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(block, "shopper_rec card", "exec"), {})
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and all(row in section.splitlines() for row in rows), rows


def test_appeal_and_quality_are_anti_correlated(single):
    env = single[0]
    for seed in range(3):
        p = env.make_params(jax.random.key(seed))
        corr = np.corrcoef(np.asarray(p.item_appeal), np.asarray(p.item_quality))[0, 1]
        assert corr < -0.5


# --------------------------------------------------------------------------- params validation


def test_default_params_are_valid(single, slate):
    for env, params in (single, slate):
        env.validate_params(env.default_params)
        env.validate_params(params)


BAD_PARAMS = [
    ("item_embedding", lambda p: p.item_embedding[:, :3]),
    ("item_embedding", lambda p: p.item_embedding.at[0, 0].set(jnp.nan)),
    ("item_category", lambda p: p.item_category[:5]),
    ("item_category", lambda p: p.item_category.at[0].set(99)),
    ("item_category", lambda p: p.item_category.at[0].set(-1)),
    ("item_price", lambda p: p.item_price.at[3].set(-1.0)),
    ("item_price", lambda p: p.item_price.at[3].set(0.0)),
    ("item_price", lambda p: p.item_price.at[3].set(jnp.inf)),
    ("item_price", lambda p: p.item_price[None]),
    ("item_appeal", lambda p: p.item_appeal.at[1].set(jnp.nan)),
    ("item_quality", lambda p: p.item_quality.at[2].set(1.5)),
    ("item_quality", lambda p: p.item_quality.at[2].set(-0.1)),
    ("item_quality", lambda p: p.item_quality.at[2].set(jnp.nan)),
    ("shopper_interest", lambda p: p.shopper_interest[:10]),
    ("shopper_interest", lambda p: p.shopper_interest.at[0, 0].set(jnp.nan)),
    ("interest_drift", lambda p: 1.5),
    ("interest_drift", lambda p: -0.1),
    ("patience_init", lambda p: 0.0),
    ("patience_init", lambda p: -1.0),
    ("max_steps_in_episode", lambda p: 0),
    ("max_steps_in_episode", lambda p: 10.5),
    ("quality_threshold", lambda p: 1.2),
    ("affinity_scale", lambda p: -1.0),
    ("position_bias", lambda p: -0.5),
    ("patience_step_cost", lambda p: -0.01),
    ("purchase_price", lambda p: -0.01),
    ("quality_effect", lambda p: -1.0),
    ("purchase_affinity", lambda p: -1.0),
    ("click_weight", lambda p: float("nan")),
    ("no_click_logit", lambda p: float("inf")),
    ("revenue_weight", lambda p: float("-inf")),
]


@pytest.mark.parametrize("field, make_bad", BAD_PARAMS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_PARAMS)])
def test_validate_params_rejects_and_names_field(single, field, make_bad):
    env, params = single
    bad = params.replace(**{field: make_bad(params)})
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        env.validate_params(bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(slate_size=11), "slate_size"),
    (dict(num_candidates=3, slate_size=4), "slate_size"),
    (dict(num_items=5, num_candidates=10), "num_candidates"),
    (dict(num_items=0), "num_items"),
    (dict(num_candidates=-1), "num_candidates"),
    (dict(slate_size=0), "slate_size"),
    (dict(history_len=0), "history_len"),
    (dict(embed_dim=0), "embed_dim"),
    (dict(num_shoppers=0), "num_shoppers"),
    (dict(num_categories=0), "num_categories"),
    (dict(num_items=100.0), "num_items"),
    (dict(slate_size=2.5), "slate_size"),
    (dict(num_items=True), r"ShopperRec\.num_items must be an int >= 1, got True"),
])
def test_constructor_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShopperRec(**kwargs)
    with pytest.raises(ValueError, match=match):
        ecomrl_jax.make("ShopperRec-v0", **kwargs)


def test_constructor_accepts_numpy_integer_sizes():
    env = ShopperRec(num_items=np.int64(50), num_candidates=np.int32(5))
    assert env == ShopperRec(num_items=50, num_candidates=5)


def test_state_is_a_pytree_of_arrays(single):
    env, params = single
    _, state = env.reset(jax.random.key(0), params)
    assert isinstance(state, EnvState)
    assert state.interest.shape == (env.embed_dim,) and state.interest.dtype == jnp.float32
    assert state.patience.shape == () and state.patience.dtype == jnp.float32
    assert state.candidates.shape == (env.num_candidates,) and state.candidates.dtype == jnp.int32
    for field in ("history_items", "history_purchased", "history_valid"):
        assert getattr(state, field).shape == (env.history_len,)
    assert env.name == "ShopperRec-v0" and env.num_actions == env.num_candidates


@pytest.mark.parametrize("reveal_interest", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_user_item_view_keeps_the_dynamics_and_lays_out_its_rows(reveal_interest):
    """UserItemShopperRec on the keys and slates of ShopperRec: the same states, rewards and
    info; its (1 + C, embed_dim + 3) observation holds the candidate rows and a shopper row
    [interest or the history's mean clicked embedding, time, history fill, mean history
    quality], in its space, and in `final_observation`."""
    base = ShopperRec(num_items=40, slate_size=2, history_len=3)
    view = UserItemShopperRec(num_items=40, slate_size=2, history_len=3,
                              reveal_interest=reveal_interest)
    params, d = base.default_params, base.embed_dim

    def rollout(env):
        def step(state, key):
            k_action, k_step = jax.random.split(key)
            out = env.step(k_step, state, env.action_space(params).sample(k_action), params)
            return out[1], (out[0], out[1], out[2], out[5])
        _, state = env.reset(jax.random.key(0), params)
        return jax.lax.scan(step, state, jax.random.split(jax.random.key(1), 40))[1]

    obs, states, rewards, info = jax.jit(rollout, static_argnums=0)(view)
    base_obs, base_states, base_rewards, base_info = jax.jit(rollout, static_argnums=0)(base)
    _assert_trees_close((states, rewards), (base_states, base_rewards))
    assert obs.shape == (40,) + view.observation_space(params).shape and np.all(np.isfinite(obs))
    np.testing.assert_array_equal(obs[:, 1:], base_obs["candidates"])
    history, valid = base_obs["history"], states.history_valid
    assert valid[-1].sum() > 0  # the check below sees a history
    clicks = np.maximum(valid.sum(1), 1.0)[:, None]
    mean_clicked = np.einsum("th,thf->tf", valid, history[..., :d]) / clicks
    estimate = states.interest if reveal_interest else mean_clicked
    np.testing.assert_allclose(obs[:, 0, :d], estimate, rtol=1e-5, atol=1e-6)
    mean_quality = np.einsum("th,th->t", valid, history[..., d + 1]) / clicks[:, 0]
    np.testing.assert_allclose(obs[:, 0, d:], np.stack(
        [base_obs["time"][:, 0], valid.mean(1), mean_quality], axis=1), rtol=1e-5, atol=1e-6)
    assert info["final_observation"].shape == obs.shape
    np.testing.assert_array_equal(info["final_observation"][:, 1:],
                                  base_info["final_observation"]["candidates"])
