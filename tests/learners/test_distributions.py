"""Action distributions (ecomrl_jax/learners/distributions.py): Gaussian log-prob, entropy and
sampling against closed forms, the Box mapping for the env, Plackett-Luce slates, and which
action spaces (and networks) the policy-gradient learners accept."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from ecomrl_jax.learners.distributions import (Gaussian, action_spec, log_prob_entropy, sample_action,
                                             to_env_action)
from ecomrl_jax.learners.networks import GaussianActorCritic, MLPActorCritic, make_actor_critic
from ecomrl_jax.spaces import Slate

MEAN = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.2]], np.float32)
LOG_STD = np.array([[0.0, -1.0, 0.7], [-2.0, 0.3, 0.1]], np.float32)


def test_gaussian_log_prob_and_entropy_match_closed_form():
    action = np.array([[0.1, -0.5, 4.0], [0.3, 2.0, -0.2]], np.float32)
    log_prob, entropy = jax.jit(log_prob_entropy)(Gaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD)),
                                                  jnp.asarray(action))
    std = np.exp(LOG_STD.astype(np.float64))
    density = np.exp(-0.5 * ((action - MEAN) / std) ** 2) / (np.sqrt(2 * np.pi) * std)
    np.testing.assert_allclose(log_prob, np.log(density.prod(axis=-1)), rtol=1e-5)
    np.testing.assert_allclose(entropy, np.sum(0.5 * np.log(2 * np.pi * np.e * std**2), axis=-1),
                               rtol=1e-5)
    assert log_prob.shape == entropy.shape == (2,) and log_prob.dtype == jnp.float32


def test_gaussian_sampling_statistics_and_deterministic_mean():
    dist = Gaussian(jnp.asarray(MEAN), jnp.asarray(LOG_STD))
    n = 20_000

    @jax.jit
    def run(key):
        samples = jax.vmap(lambda k: sample_action(k, dist))(jax.random.split(key, n))
        return samples, log_prob_entropy(dist, samples)[0]

    samples, log_probs = run(jax.random.key(0))
    assert samples.shape == (n, 2, 3) and samples.dtype == jnp.float32
    std = np.exp(LOG_STD)
    assert np.all(np.abs(samples.mean(0) - MEAN) < 4 * std / np.sqrt(n))
    np.testing.assert_allclose(samples.std(0), std, rtol=0.03)
    # -E[log p] under the samples estimates the entropy.
    np.testing.assert_allclose(-log_probs.mean(0), log_prob_entropy(dist, dist.mean)[1], atol=0.05)
    np.testing.assert_array_equal(sample_action(None, dist, deterministic=True), MEAN)


def test_gaussian_gradients_stay_finite_far_in_the_tail():
    def loss(mean, log_std):
        return jnp.sum(jnp.stack(log_prob_entropy(Gaussian(mean, log_std), jnp.full(3, 1e4))))

    grads = jax.grad(loss, argnums=(0, 1))(jnp.zeros(3), jnp.full(3, -5.0))
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_box_actions_are_rescaled_clipped_and_shaped_for_the_env():
    price = spaces.Box(jnp.array([5.0, 0.0]), jnp.array([45.0, 1.0]), (2,))
    action = jnp.array([[0.0, 1.0], [-1.0, 3.0], [0.5, -7.0]])
    np.testing.assert_allclose(to_env_action(price, action), [[25.0, 1.0], [5.0, 1.0], [35.0, 0.0]])
    torque = spaces.Box(-2.0, 2.0, (1,))
    assert to_env_action(torque, jnp.array([0.25])).tolist() == [0.5]
    scalar = spaces.Box(-1.0, 1.0, ())
    out = to_env_action(scalar, jnp.array([[0.3], [2.0]]))
    assert out.shape == (2,) and np.allclose(out, [0.3, 1.0])
    # Without two finite bounds a dimension is neither rescaled nor clipped beyond its bound.
    half_open = spaces.Box(jnp.array([0.0, -jnp.inf]), jnp.array([jnp.inf, jnp.inf]), (2,))
    np.testing.assert_array_equal(to_env_action(half_open, jnp.array([-3.0, 7.5])), [0.0, 7.5])
    # Indices and slates pass through unchanged.
    slate = jnp.array([2, 0], jnp.int32)
    assert to_env_action(Slate(4, 2), slate) is slate


class _Env:
    name = "Stub-v0"

    def __init__(self, space):
        self.space = space

    def action_space(self, params=None):
        return self.space


@pytest.mark.parametrize("space, spec", [
    (spaces.Discrete(7), (7, 0)),
    (Slate(10, 3), (10, 3)),
    (spaces.Box(-1.0, 1.0, (2, 3)), (6, 0)),
    (spaces.Box(-1.0, 1.0, ()), (1, 0)),
])
def test_action_spec(space, spec):
    assert action_spec(_Env(space), None, "A2C") == spec


@pytest.mark.parametrize("space", [spaces.Dict({"a": spaces.Discrete(2)}),
                                   spaces.Box(0, 10, (1,), jnp.int32)])
def test_unsupported_action_spaces_are_refused(space):
    with pytest.raises(ValueError, match="REINFORCE needs a Discrete, Slate or float Box action "
                                         "space; Stub-v0 has"):
        action_spec(_Env(space), None, "REINFORCE")


def test_box_actions_get_a_gaussian_head_with_learned_log_std():
    obs_space = spaces.Box(-1.0, 1.0, (4,))
    net = make_actor_critic(obs_space, 1, hidden_size=8, action_space=spaces.Box(-2.0, 2.0, (2,)))
    assert isinstance(net, GaussianActorCritic) and net.action_dim == 2
    assert isinstance(make_actor_critic(obs_space, 3, 8, action_space=spaces.Discrete(3)), MLPActorCritic)
    params = net.init(jax.random.key(0), jnp.zeros(4))
    dist, value = net.apply(params, jnp.zeros((5, 4)))
    assert isinstance(dist, Gaussian) and dist.mean.shape == dist.log_std.shape == (5, 2)
    assert value.shape == (5,)
    np.testing.assert_array_equal(dist.log_std, 0.0)
    grads = jax.grad(lambda p: jnp.sum(net.apply(p, jnp.zeros(4))[0].log_std))(params)
    np.testing.assert_array_equal(grads["params"]["log_std"], 1.0)
    with pytest.raises(ValueError, match="a Box action space needs a Box observation space"):
        make_actor_critic(spaces.Dict({"candidates": spaces.Box(0.0, 1.0, (3, 2))}), 1,
                          action_space=spaces.Box(-1.0, 1.0, (1,)))


@pytest.mark.parametrize("num_candidates, slate_size", [(4, 2), (3, 3), (5, 1)])
def test_plackett_luce_log_probs_normalise_and_match_sampling(num_candidates, slate_size):
    slates = jnp.array(list(itertools.permutations(range(num_candidates), slate_size)), jnp.int32)
    n = 20_000

    @jax.jit
    def run(key):
        logits = jax.random.normal(key, (num_candidates,))
        log_probs, entropy = log_prob_entropy(jnp.broadcast_to(logits, (len(slates), num_candidates)), slates)
        samples = jax.vmap(lambda k: sample_action(k, logits, slate_size))(jax.random.split(key, n))
        return log_probs, entropy, samples

    log_probs, entropy, samples = run(jax.random.key(num_candidates))
    probs = np.exp(np.asarray(log_probs))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    # The entropy estimate averaged under the policy equals the exact slate entropy.
    np.testing.assert_allclose(np.sum(probs * entropy), -np.sum(probs * np.log(probs)), rtol=1e-4)
    index = {tuple(s): i for i, s in enumerate(np.asarray(slates).tolist())}
    counts = np.bincount([index[tuple(s)] for s in np.asarray(samples).tolist()], minlength=len(slates))
    np.testing.assert_allclose(counts / n, probs, atol=0.015)


@pytest.mark.parametrize("slate_size", [0, 2, 4])
def test_a_logit_of_minus_inf_is_never_chosen_and_adds_no_entropy(slate_size):
    """Candidate 1 of 5 masked with -inf: under jit and vmap, log-probs and entropies equal those
    of the 4 other candidates alone (no NaN), the masked candidate's log-prob is -inf, and
    gradients stay finite."""
    rows = np.array([[0.3, -np.inf, 2.0, 0.5, -1.0], [1.0, -np.inf, -0.2, 0.0, 0.4]], np.float32)
    kept = np.array([0, 2, 3, 4])
    size = max(slate_size, 1)
    slates = np.array(list(itertools.permutations(kept, size)), np.int32)
    actions = slates[:, 0] if slate_size == 0 else slates

    @jax.jit
    def run(logits, actions):  # logits (5,), actions (num_slates, ...) for one row
        out = jax.vmap(lambda a: log_prob_entropy(logits, a))(actions)
        grads = jax.vmap(jax.grad(lambda x, a: jnp.sum(jnp.stack(log_prob_entropy(x, a)))),
                         in_axes=(None, 0))(logits, actions)
        masked = log_prob_entropy(logits, jnp.full_like(actions[0], 1))[0]
        return out, grads, masked

    (log_probs, entropies), grads, masked = jax.vmap(run, in_axes=(0, None))(
        jnp.asarray(rows), jnp.asarray(actions))
    remap = {c: i for i, c in enumerate(kept)}
    for row, lp, ent in zip(rows, np.asarray(log_probs), np.asarray(entropies), strict=True):
        ref_actions = np.vectorize(remap.get)(actions)
        ref_lp, ref_ent = jax.vmap(lambda a, x=jnp.asarray(row[kept]): log_prob_entropy(x, a))(
            jnp.asarray(ref_actions))
        np.testing.assert_allclose(lp, ref_lp, rtol=1e-5)
        np.testing.assert_allclose(ent, ref_ent, rtol=1e-5)
        np.testing.assert_allclose(np.exp(lp).sum(), 1.0, rtol=1e-5)  # every slate counted
    assert np.all(np.isfinite(grads)) and np.all(np.asarray(masked) == -np.inf)


def test_discrete_log_prob_greedy_actions_and_finite_gradients():
    logits = jnp.array([[0.3, -1.0, 2.0, 0.5]])

    @jax.jit
    def run(logits):
        log_prob, entropy = log_prob_entropy(logits, jnp.array([2]))
        greedy = sample_action(None, logits, 0, deterministic=True)
        greedy_slate = sample_action(None, logits, 2, deterministic=True)
        # Gradients through the masked (already placed) positions of a slate stay finite.
        grads = jax.grad(lambda x: jnp.sum(jnp.stack(log_prob_entropy(x, jnp.array([[2, 0, 3]])))))(logits)
        return log_prob, entropy, greedy, greedy_slate, grads

    log_prob, entropy, greedy, greedy_slate, grads = run(logits)
    p = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(log_prob, np.log(p[:, 2]), rtol=1e-5)
    np.testing.assert_allclose(entropy, -np.sum(p * np.log(p), axis=-1), rtol=1e-5)
    assert greedy.tolist() == [2] and greedy_slate.tolist() == [[2, 3]]
    assert np.all(np.isfinite(grads))
