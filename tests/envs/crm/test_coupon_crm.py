"""Invariants of CouponCRM-v0 (ecomrl_jax/envs/crm/coupon_crm.py); see docs/envs/coupon_crm.md.

Tests share one jitted rollout program (fixture `run`) batched with `lax.map`; `vmap` is
tested on its own.
"""

import dataclasses
from pathlib import Path

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.envs.crm.coupon_crm import CouponCRM, EnvState
from tests.helpers import to_numpy

NUM_ENVS, NUM_STEPS = 128, 100


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def crm():
    return ecomrl_jax.make("CouponCRM-v0")


@pytest.fixture(scope="module")
def step(crm):
    """`env.step_env`, jitted once for the module."""
    return jax.jit(crm[0].step_env)


@pytest.fixture(scope="module")
def run(crm):
    """Jitted `(params, keys, actions) -> (first obs, records)`: per env key, reset and take
    NUM_STEPS public steps (auto-reset included) with the given actions. Records hold the state
    before (`state`) and after (`next`) each step, the action, obs, reward, flags and info."""
    env = crm[0]

    def episode(params, key, actions):
        k_reset, k_steps = jax.random.split(key)
        obs0, state = env.reset(k_reset, params)

        def body(state, x):
            k, action = x
            obs, nxt, reward, term, trunc, info = env.step(k, state, action, params)
            info = {k: v for k, v in info.items() if k not in ("final_observation", "terminated",
                                                                "truncated")}
            return nxt, dict(state=state, action=action, next=nxt, obs=obs, reward=reward,
                             terminated=term, truncated=trunc, info=info)

        return obs0, jax.lax.scan(body, state, (jax.random.split(k_steps, NUM_STEPS), actions))[1]

    fn = jax.jit(lambda params, keys, actions: jax.lax.map(
        lambda x: episode(params, *x), (keys, actions)))

    def call(params, keys, actions):
        actions = jnp.broadcast_to(jnp.asarray(actions, jnp.int32), (keys.shape[0], NUM_STEPS))
        return to_numpy(fn(params, keys, actions))

    return call


def _keys(seed):
    return jax.random.split(jax.random.key(seed), NUM_ENVS)


@pytest.fixture(scope="module")
def rollout(crm, run):
    """Uniformly random actions (a few out of range), default params."""
    env, params = crm
    actions = jax.random.randint(jax.random.key(0), (NUM_ENVS, NUM_STEPS), -1, env.num_actions + 1)
    return run(params, _keys(1), actions)


def _fields(state):
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _state(env, params, **latents):
    """A fresh state with the given fields replaced (float32)."""
    _, state = env.reset(jax.random.key(0), params)
    return state.replace(**{k: jnp.float32(v) for k, v in latents.items()})


# --------------------------------------------------------------------------- observations, shapes


def test_observation_space_and_values(crm, rollout):
    env, params = crm
    space = env.observation_space(params)
    assert isinstance(space, spaces.Box) and space.shape == (9,) and space.dtype == jnp.float32
    obs0, rec = rollout
    for obs in (obs0, rec["obs"]):
        assert obs.dtype == np.float32 and obs.shape[-1] == 9
        assert np.all(np.isfinite(obs)) and bool(space.contains(jnp.asarray(obs)))
        assert obs.max() < 3.0  # O(1) scale
    nxt = rec["next"]
    np.testing.assert_allclose(rec["obs"][..., 0], np.minimum(nxt.weeks_since_purchase, 104) / 52,
                               rtol=1e-6)
    np.testing.assert_allclose(rec["obs"][..., 2], nxt.monetary / 100.0, rtol=1e-6)
    np.testing.assert_allclose(rec["obs"][..., 7], nxt.time / params.max_steps_in_episode,
                               rtol=1e-6)
    np.testing.assert_array_equal(rec["obs"][..., 8], 1.0)  # unlimited budget: all affordable
    space = env.action_space(params)
    assert isinstance(space, spaces.Discrete) and space.n == env.num_actions == 6


def test_basket_is_observed_at_reset_as_the_card_says(crm):
    """The customer was just acquired by a purchase at list price: column 2 at reset is basket /
    100, so the card must not list the basket value among the hidden latents."""
    env, params = crm
    _, state = jax.vmap(env.reset, in_axes=(0, None))(_keys(3), params)
    obs0 = jax.vmap(env.get_obs, in_axes=(0, None))(state, params)
    np.testing.assert_allclose(obs0[:, 2], state.basket / 100.0, rtol=1e-6)
    card = (Path(__file__).resolve().parents[3] / "docs" / "envs" / "coupon_crm.md").read_text()
    hidden = card[card.index("Hidden from the agent:"):].split(".")[0]
    assert "sensitivity" in hidden and "basket" not in hidden


def test_state_fields_are_scalars_of_fixed_dtype(crm):
    env, params = crm
    _, state = env.reset(jax.random.key(0), params)
    assert isinstance(state, EnvState)
    for name, value in _fields(state).items():
        assert value.shape == (), name
        expected = {"time": jnp.int32, "churned": jnp.bool_}.get(name, jnp.float32)
        assert value.dtype == expected, name


def test_rewards_infos_and_probabilities_are_valid(crm, rollout):
    env, params = crm
    _, rec = rollout
    info = rec["info"]
    assert rec["reward"].dtype == np.float32 and np.all(np.isfinite(rec["reward"]))
    assert set(info) == {"purchases", "revenue", "margin", "coupon_cost", "contact_cost",
                         "contacts", "churned", "invalid_actions", "budget_blocked"}
    for v in info.values():
        assert v.dtype == np.float32 and np.all(np.isfinite(v)) and np.all(v >= 0)
    np.testing.assert_allclose(rec["reward"], info["margin"] - info["coupon_cost"]
                               - info["contact_cost"], rtol=1e-5, atol=1e-5)
    assert info["purchases"].sum() > 100 and info["churned"].sum() > 10
    states = jax.tree.map(lambda x: x.reshape(-1), rec["state"])
    probs = jax.vmap(env.purchase_probs, (0, None))(states, params)
    hazard = env.churn_hazard(states.engagement, states.fatigue, states.churn_logit, params)
    for p in (np.asarray(probs), np.asarray(hazard)):
        assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert np.all((states.engagement >= 0) & (states.engagement <= 1))
    assert np.all(states.fatigue >= 0)


def test_contacts_build_fatigue_and_engagement_decays(crm, rollout):
    env, params = crm
    _, rec = rollout
    live = ~(rec["terminated"] | rec["truncated"])
    s, n, contact = rec["state"], rec["next"], rec["info"]["contacts"]
    np.testing.assert_allclose(n.fatigue[live], (params.fatigue_decay * s.fatigue + contact)[live],
                               rtol=1e-5)
    quiet = live & (contact == 0) & (rec["info"]["purchases"] == 0)
    np.testing.assert_allclose(n.engagement[quiet], params.engagement_decay * s.engagement[quiet],
                               rtol=1e-5)
    assert np.all(n.engagement[live & (contact == 1)] > params.engagement_decay
                  * s.engagement[live & (contact == 1)])
    np.testing.assert_array_equal(contact, (rec["action"] >= 1) & (rec["action"] < env.num_actions))


# --------------------------------------------------------------------------- hand-computed cases

# A customer who surely buys (or surely doesn't) and never churns: basket 50, margin 0.35.
@pytest.mark.parametrize("action, buys, revenue, margin, coupon_cost, contact_cost", [
    (0, True, 50.0, 17.5, 0.0, 0.0),     # nothing
    (1, True, 50.0, 17.5, 0.0, 0.5),     # mail
    (2, True, 45.0, 17.5, 5.0, 0.5),     # 10% coupon
    (3, True, 40.0, 17.5, 10.0, 0.5),    # 20% coupon
    (4, True, 35.0, 17.5, 15.0, 0.5),    # 30% coupon
    (5, True, 50.0, 17.5, 6.0, 0.5),     # free shipping
    (3, False, 0.0, 0.0, 0.0, 0.5),      # unredeemed coupon costs only the contact
    (5, False, 0.0, 0.0, 0.0, 0.5),
])
def test_margin_and_incentive_costs_add_up(crm, step, action, buys, revenue, margin, coupon_cost,
                                           contact_cost):
    env, params = crm
    state = _state(env, params, basket=50.0, purchase_logit=50.0 if buys else -50.0,
                   churn_logit=-50.0)
    _, post, reward, term, info = step(jax.random.key(3), state, jnp.int32(action), params)
    assert info["purchases"] == float(buys) and not term
    np.testing.assert_allclose([info["revenue"], info["margin"], info["coupon_cost"],
                                info["contact_cost"], reward],
                               [revenue, margin, coupon_cost, contact_cost,
                                margin - coupon_cost - contact_cost], rtol=1e-6)
    assert post.weeks_since_purchase == (0.0 if buys else 1.0)
    np.testing.assert_allclose(post.monetary, state.monetary + 0.1 * (revenue - state.monetary)
                               if buys else state.monetary, rtol=1e-6)


def test_coupons_raise_purchase_probability_by_sensitivity(crm):
    env, params = crm
    probs = {s: np.asarray(env.purchase_probs(_state(env, params, sensitivity=s), params))
             for s in (0.0, 1.5)}
    np.testing.assert_allclose(probs[0.0][2:], probs[0.0][1])  # insensitive: coupon = mail
    assert np.all(np.diff(probs[1.5][2:5]) > 0) and probs[1.5][2] > probs[0.0][2]
    state = _state(env, params, sensitivity=1.5, engagement=0.5, fatigue=0.0)
    logit = (state.purchase_logit + params.engagement_weight * 0.5 - params.fatigue_purchase
             + params.contact_lift + 1.5 * params.coupon_lift * 0.2)
    np.testing.assert_allclose(env.purchase_probs(state, params)[3], jax.nn.sigmoid(logit),
                               rtol=1e-5)


def test_churn_hazard_rises_with_neglect_and_over_contact(crm):
    env, params = crm
    hazard = lambda e, f: float(env.churn_hazard(jnp.float32(e), jnp.float32(f),  # noqa: E731
                                                 jnp.float32(-5.5), params))
    assert hazard(0.1, 0.0) > 3 * hazard(0.9, 0.0)
    assert hazard(0.9, 2.5) > 3 * hazard(0.9, 0.5)
    np.testing.assert_allclose(hazard(0.5, 1.0), jax.nn.sigmoid(-5.5 + 2.5 * 0.5 + 0.4), rtol=1e-5)


# --------------------------------------------------------------------------- churn


def test_churn_is_absorbing(crm, step):
    env, params = crm
    state = _state(env, params, purchase_logit=50.0).replace(churned=jnp.bool_(True))
    for action in range(-1, env.num_actions + 1):  # out-of-range actions too: not counted
        _, post, reward, term, info = to_numpy(step(jax.random.key(action), state, jnp.int32(action),
                                               params))
        assert term and reward == 0.0
        for name, v in info.items():
            assert v == 0.0, name
        for name, value in _fields(state).items():
            assert getattr(post, name) == np.asarray(value) + (name == "time"), name


def test_churn_terminates_and_auto_resets(crm, rollout):
    env, params = crm
    _, rec = rollout
    churned = rec["info"]["churned"] == 1.0
    horizon = rec["state"].time == params.max_steps_in_episode - 1  # the window's last week
    np.testing.assert_array_equal(rec["terminated"], churned | horizon)  # HorizonEndsEpisode
    assert not rec["truncated"].any()
    np.testing.assert_array_equal(rec["next"].time[churned], 0)  # a fresh customer
    assert not rec["next"].churned.any()
    assert horizon.any() and (churned & ~horizon).any()  # both endings exercised


def test_reset_draws_customers_from_the_population(crm, rollout):
    env, params = crm
    fresh = rollout[1]["next"].time == 0
    s = jax.tree.map(lambda x: x[fresh], rollout[1]["next"])
    assert fresh.sum() > 100
    pop = np.stack([params.customer_purchase_logit, params.customer_basket], 1)
    drawn = np.stack([s.purchase_logit, s.basket], 1)
    match = np.all(drawn[:, None] == pop[None], axis=-1)
    assert np.all(match.any(1))
    i = match.argmax(1)
    np.testing.assert_array_equal(s.sensitivity, np.asarray(params.customer_sensitivity)[i])
    np.testing.assert_array_equal(s.engagement, np.asarray(params.customer_engagement)[i])
    np.testing.assert_array_equal(s.fatigue, 0.0)
    np.testing.assert_allclose(s.monetary, s.basket)
    assert len(set(i.tolist())) > 0.8 * len(i)  # many distinct customers


# --------------------------------------------------------------------------- budget


def test_budget_blocks_unaffordable_contacts_and_never_goes_negative(crm, run, step):
    env, params = crm
    params = params.replace(budget_per_step=3.0)
    discounts = np.asarray(params.coupon_discounts)
    for action in (3, 5, 1):  # 20% coupon, free shipping, mail
        _, rec = run(params, _keys(2), action)
        info, nxt, s = rec["info"], rec["next"], rec["state"]
        assert np.all(nxt.budget >= 0) and np.all(np.isfinite(nxt.budget))
        spent = info["contact_cost"] + info["coupon_cost"]
        cont = ~(rec["terminated"] | rec["truncated"])
        np.testing.assert_allclose(nxt.budget[cont], (s.budget + 3.0 - spent)[cont],
                                   rtol=1e-5, atol=1e-5)
        incentive = {3: discounts[1] * s.basket, 5: params.shipping_cost, 1: 0.0}[action]
        blocked = info["budget_blocked"] == 1.0
        np.testing.assert_array_equal(blocked, params.mail_cost + incentive > s.budget + 3.0)
        assert np.all(info["contacts"][blocked] == 0) and np.all(spent[blocked] == 0)
        np.testing.assert_array_equal(info["contacts"] + info["budget_blocked"], 1.0)
        assert np.all(rec["obs"][..., 8] <= 1.0)
        if action == 1:  # a 0.5 mail always fits a 3.0 weekly budget
            assert not blocked.any()
        else:
            assert blocked.sum() > 100 and (~blocked).sum() > 100
    # a blocked step is exactly a step with action 0 (same keys)
    state = _state(env, params, basket=80.0)
    out = step(jax.random.key(9), state, jnp.int32(4), params)  # 30% coupon: 24.5 > 3
    ref = step(jax.random.key(9), state, jnp.int32(0), params)
    assert out[4]["budget_blocked"] == 1.0 and ref[4]["budget_blocked"] == 0.0
    for x, y in zip(jax.tree.leaves(out[:4]), jax.tree.leaves(ref[:4]), strict=True):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- invalid actions


@pytest.mark.parametrize("bad", [-1, 6, 100])
def test_out_of_range_action_does_nothing_and_is_counted(crm, step, bad):
    env, params = crm
    state = _state(env, params)
    out = step(jax.random.key(4), state, jnp.int32(bad), params)
    ref = step(jax.random.key(4), state, jnp.int32(0), params)
    assert out[4]["invalid_actions"] == 1.0 and ref[4]["invalid_actions"] == 0.0
    for x, y in zip(jax.tree.leaves(out[:4]), jax.tree.leaves(ref[:4]), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bad_actions_raise(crm):
    env, params = crm
    _, state = env.reset(jax.random.key(0), params)
    for action in (jnp.float32(1.0), 1.0, jnp.bool_(True)):
        with pytest.raises(TypeError, match="integer"):
            env.step(jax.random.key(1), state, action, params)
    for action in ([1], [[1]], [0, 1]):
        with pytest.raises(ValueError, match=r"\(\)"):
            env.step(jax.random.key(1), state, jnp.asarray(action, jnp.int32), params)


# --------------------------------------------------------------------------- random instances


def test_make_params_is_deterministic_per_key(crm):
    env = crm[0]
    a, b, c = (env.make_params(jax.random.key(s)) for s in (7, 7, 8))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.customer_basket, c.customer_basket)
    seekers = np.asarray(a.customer_sensitivity) > 0.6
    assert 0.25 < seekers.mean() < 0.42
    with pytest.raises(ValueError, match="valid"):
        env.make_params(jax.random.key(7), not_a_param=1.0)


# --------------------------------------------------------------------------- params validation


BAD_PARAMS = [
    ("customer_basket", lambda p: p.customer_basket[:5]),
    ("customer_basket", lambda p: p.customer_basket.at[0].set(0.0)),
    ("customer_purchase_logit", lambda p: p.customer_purchase_logit.at[0].set(jnp.nan)),
    ("customer_sensitivity", lambda p: p.customer_sensitivity.at[0].set(-0.1)),
    ("customer_churn_logit", lambda p: p.customer_churn_logit.at[1].set(jnp.inf)),
    ("customer_engagement", lambda p: p.customer_engagement.at[0].set(1.5)),
    ("coupon_discounts", lambda p: p.coupon_discounts.at[0].set(1.0)),
    ("coupon_discounts", lambda p: p.coupon_discounts.at[0].set(0.0)),
    ("coupon_discounts", lambda p: p.coupon_discounts[:2]),
    ("margin_rate", lambda p: 1.2),
    ("engagement_decay", lambda p: -0.1),
    ("fatigue_decay", lambda p: 1.5),
    ("mail_cost", lambda p: -1.0),
    ("shipping_cost", lambda p: -1.0),
    ("churn_fatigue", lambda p: -0.1),
    ("coupon_lift", lambda p: -1.0),
    ("budget_per_step", lambda p: -1.0),
    ("budget_per_step", lambda p: float("nan")),
    ("max_steps_in_episode", lambda p: 0),
    ("max_steps_in_episode", lambda p: 52.5),
]


@pytest.mark.parametrize("field, make_bad", BAD_PARAMS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_PARAMS)])
def test_validate_params_rejects_and_names_field(crm, field, make_bad):
    env, params = crm
    with pytest.raises(ValueError, match=rf"params\.{field}\b"):
        env.validate_params(params.replace(**{field: make_bad(params)}))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_customers=0), "num_customers"), (dict(num_coupons=0), "num_coupons"),
    (dict(num_coupons=2.0), "num_coupons"), (dict(margin_rate=2.0), "margin_rate"),
])
def test_make_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ecomrl_jax.make("CouponCRM-v0", **kwargs)


def test_num_coupons_sets_the_action_layout():
    env = CouponCRM(num_customers=10, num_coupons=2)
    params = env.default_params
    assert env.num_actions == 5 and env.shipping_action == 4
    np.testing.assert_allclose(params.coupon_discounts, [0.1, 0.2])
    contact, discount, shipping = map(np.asarray, env.action_effects(params))
    np.testing.assert_array_equal(contact, [0, 1, 1, 1, 1])
    np.testing.assert_allclose(discount, [0, 0, 0.1, 0.2, 0])
    np.testing.assert_array_equal(shipping, [0, 0, 0, 0, 1])


def test_registered_here_and_in_gymnax():
    assert "CouponCRM-v0" in ecomrl_jax.list_envs()
    env, params = gymnax.make("CouponCRM-v0")
    assert isinstance(env, CouponCRM) and env.name == "CouponCRM-v0"
