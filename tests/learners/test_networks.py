"""Shapes, equivariance, history masking and network selection of ecomrl_jax/learners/networks.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ecomrl_jax
from ecomrl_jax.learners.networks import (TRANSFORMER_PRESETS, MLP, CandidateActorCritic, MLPActorCritic,
                                TransformerActorCritic, TransformerQNetwork, make_actor_critic,
                                make_q_network, make_transformer_actor_critic)


@pytest.fixture(scope="module")
def rec():
    """ShopperRec observations (4 envs), the candidate network and its jitted apply."""
    env, params = ecomrl_jax.make("ShopperRec-v0")
    obs = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 4), params)[0]
    net = make_actor_critic(env.observation_space(params), env.num_actions, hidden_size=16)
    variables = jax.jit(net.init)(jax.random.key(1), jax.tree.map(lambda x: x[0], obs))
    return env, obs, net, jax.jit(lambda o: net.apply(variables, o))


def test_mlp_output_shape():
    mlp = MLP((8, 8, 3))
    x = jnp.ones((5, 4))
    assert jax.jit(lambda x: mlp.apply(mlp.init(jax.random.key(0), x), x))(x).shape == (5, 3)


def test_candidate_actor_critic_shapes_batched_and_unbatched(rec):
    env, obs, net, apply = rec
    assert isinstance(net, CandidateActorCritic)
    logits, value = apply(obs)
    assert logits.shape == (4, env.num_candidates) and value.shape == (4,)
    assert logits.dtype == value.dtype == jnp.float32
    one_logits, one_value = apply(jax.tree.map(lambda x: x[0], obs))
    assert one_logits.shape == (env.num_candidates,) and one_value.shape == ()
    np.testing.assert_allclose(one_logits, logits[0], rtol=1e-5, atol=1e-6)


def test_candidate_logits_are_permutation_equivariant(rec):
    env, obs, _, apply = rec
    obs = jax.tree.map(lambda x: x[0], obs)
    perm = np.random.default_rng(0).permutation(env.num_candidates)
    logits, value = apply(obs)
    p_logits, p_value = apply({**obs, "candidates": obs["candidates"][perm]})
    np.testing.assert_allclose(p_logits, logits[perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_value, value, rtol=1e-5, atol=1e-6)


def test_empty_history_slots_are_ignored(rec):
    _, obs, _, apply = rec
    obs = jax.tree.map(lambda x: x[0], obs)
    history = np.random.default_rng(0).normal(size=obs["history"].shape).astype(np.float32)
    history[:, -1] = [1.0, 1.0, 0.0, 0.0, 0.0]
    garbage = history.copy()
    garbage[2:, :-1] = 99.0
    a, b = apply({**obs, "history": history}), apply({**obs, "history": garbage})
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)


def test_box_observation_gets_mlp_actor_critic():
    space = spaces.Box(-1.0, 1.0, (2, 3), jnp.float32)
    net = make_actor_critic(space, num_actions=5, hidden_size=8)
    assert isinstance(net, MLPActorCritic)
    x = jnp.ones((7, 2, 3))
    logits, value = jax.jit(lambda x: net.apply(net.init(jax.random.key(0), x[0]), x))(x)
    assert logits.shape == (7, 5) and value.shape == (7,)


def test_unsupported_observation_space_is_refused():
    with pytest.raises(ValueError, match="supported: Box .* Dict with 'candidates'"):
        make_actor_critic(spaces.Discrete(3), num_actions=2)
    with pytest.raises(ValueError, match=r"missing \['history', 'time'\]"):
        make_actor_critic(spaces.Dict({"candidates": spaces.Box(0.0, 1.0, (3, 2))}), num_actions=3)


@pytest.fixture(scope="module")
def transformer():
    """ShopperRec observations (4 envs), the tiny transformer and its jitted apply."""
    env, params = ecomrl_jax.make("ShopperRec-v0")
    obs = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 4), params)[0]
    net = make_transformer_actor_critic(env.observation_space(params), "tiny")
    variables = jax.jit(net.init)(jax.random.key(1), jax.tree.map(lambda x: x[0], obs))
    return env, obs, net, jax.jit(lambda o: net.apply(variables, o))


def _with_history(obs, valid):
    """`obs` (unbatched) with random history rows, `valid` as their last column."""
    history = np.random.default_rng(0).normal(size=obs["history"].shape).astype(np.float32)
    history[:, -2] = [1.0, 0.0, 1.0, 0.0, 0.0]
    history[:, -1] = valid
    return {**obs, "history": history}


def test_transformer_shapes_batched_and_unbatched(transformer):
    env, obs, net, apply = transformer
    assert isinstance(net, TransformerActorCritic)
    logits, value = apply(obs)
    assert logits.shape == (4, env.num_candidates) and value.shape == (4,)
    assert logits.dtype == value.dtype == jnp.float32
    one_logits, one_value = apply(jax.tree.map(lambda x: x[0], obs))
    assert one_logits.shape == (env.num_candidates,) and one_value.shape == ()
    np.testing.assert_allclose(one_logits, logits[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_value, value[0], rtol=1e-5, atol=1e-6)


def test_transformer_ignores_empty_history_slots_but_not_filled_ones(transformer):
    _, obs, _, apply = transformer
    obs = _with_history(jax.tree.map(lambda x: x[0], obs), [1.0, 1.0, 0.0, 0.0, 0.0])
    garbage = {**obs, "history": obs["history"].copy()}
    garbage["history"][2:, :-1] = 99.0
    a, b = apply(obs), apply(garbage)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)
    changed = {**obs, "history": obs["history"].copy()}
    changed["history"][0, :-1] += 1.0
    assert np.max(np.abs(apply(changed)[0] - a[0])) > 1e-4


def test_transformer_is_permutation_equivariant_over_candidates(transformer):
    env, obs, _, apply = transformer
    obs = _with_history(jax.tree.map(lambda x: x[0], obs), [1.0, 1.0, 1.0, 0.0, 0.0])
    perm = np.random.default_rng(1).permutation(env.num_candidates)
    logits, value = apply(obs)
    p_logits, p_value = apply({**obs, "candidates": obs["candidates"][perm]})
    np.testing.assert_allclose(p_logits, logits[perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_value, value, rtol=1e-5, atol=1e-6)


def test_transformer_parameter_count_grows_with_preset(transformer):
    env, obs, _, _ = transformer
    one = jax.tree.map(lambda x: x[0], obs)
    counts = []
    for preset in TRANSFORMER_PRESETS:
        net = make_transformer_actor_critic(env.observation_space(env.default_params), preset)
        shapes = jax.eval_shape(net.init, jax.random.key(0), one)
        counts.append(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)))
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[0] < 20_000 and counts[-1] > 10_000_000


def test_transformer_q_network_is_the_torso_scores_or_their_dueling_combination(transformer):
    env, obs, _, _ = transformer
    space = env.observation_space(env.default_params)
    plain = make_q_network(space, env.num_candidates, network="transformer-tiny")
    dueling = make_q_network(space, env.num_candidates, dueling=True, network="transformer-tiny")
    assert isinstance(plain, TransformerQNetwork)

    @jax.jit
    def run(key):
        variables = plain.init(key, obs)
        torso = {"params": variables["params"]["torso"]}
        return plain.apply(variables, obs), dueling.apply(variables, obs), plain.torso.apply(torso, obs)

    q, dueling_q, (scores, value) = run(jax.random.key(0))
    assert q.shape == (4, env.num_candidates)
    np.testing.assert_allclose(q, scores, rtol=1e-6)
    np.testing.assert_allclose(dueling_q, value[:, None] + scores - scores.mean(-1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown network 'rnn'"):
        make_q_network(space, env.num_candidates, network="rnn")


def test_transformer_refuses_bad_preset_and_space(transformer):
    env, _, _, _ = transformer
    with pytest.raises(ValueError, match="unknown transformer preset 'huge'"):
        make_transformer_actor_critic(env.observation_space(env.default_params), "huge")
    with pytest.raises(ValueError, match="needs a Dict observation"):
        make_transformer_actor_critic(spaces.Box(0.0, 1.0, (4,)), "tiny")
