"""Generic DP solvers (ecomrl_jax/mdp.py) on hand-solvable MDPs; the ToyRec-v0 checks against
learned Q-tables are in tests/learners/test_tabular.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax import mdp

# Two states, two actions. a0 stays (reward 1 in s0, 0 in s1); a1 moves to the other state
# (reward 0 from s0, 2 from s1). gamma 0.5.
P = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
R = jnp.array([[1.0, 0.0], [0.0, 2.0]])
GAMMA = 0.5


def test_value_iteration_matches_the_bellman_solution_by_hand():
    """Optimal: stay in s0 (V = 1 / (1 - 0.5) = 2) and leave s1 (2 + 0.5 * V(s0) = 3)."""
    q = mdp.value_iteration(P, R, GAMMA, tol=1e-7)
    np.testing.assert_allclose(q, [[1 + 0.5 * 2, 0 + 0.5 * 3], [0 + 0.5 * 3, 2 + 0.5 * 2]],
                               atol=1e-6)
    sparse = (jnp.array([[[0], [1]], [[1], [0]]]), jnp.ones((2, 2, 1)))
    np.testing.assert_allclose(mdp.value_iteration(sparse, R, GAMMA, tol=1e-7), q, atol=1e-6)


def test_policy_value_solves_the_linear_system():
    for policy in ([0, 0], [1, 1], [0, 1], [1, 0]):
        policy = np.array(policy)
        p_pi = np.asarray(P)[np.arange(2), policy]
        r_pi = np.asarray(R)[np.arange(2), policy]
        exact = np.linalg.solve(np.eye(2) - GAMMA * p_pi, r_pi)
        np.testing.assert_allclose(mdp.policy_value(P, R, GAMMA, jnp.asarray(policy), tol=1e-7),
                                   exact, atol=1e-6)


def test_value_iteration_under_vmap_over_gamma():
    qs = jax.vmap(lambda g: mdp.value_iteration(P, R, g, tol=1e-7))(jnp.array([0.5, 0.0]))
    np.testing.assert_allclose(qs[1], R, atol=1e-6)
    np.testing.assert_allclose(qs[0], mdp.value_iteration(P, R, GAMMA, tol=1e-7), atol=1e-6)


@pytest.mark.parametrize("gamma", [1.0, -0.1, float("nan")])
def test_bad_gamma_is_refused(gamma):
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\)"):
        mdp.value_iteration(P, R, gamma)


def test_expected_visits_match_a_hand_chain():
    """Two states, one action: s0 -> s1 w.p. 0.5, s1 absorbing; 3 steps from s0."""
    P = jnp.array([[[0.5, 0.5]], [[0.0, 1.0]]])
    visits = mdp.expected_visits(P, jnp.array([1.0, 0.0]), jnp.ones((2, 1)), 3)
    np.testing.assert_allclose(visits[:, 0], [1 + 0.5 + 0.25, 0.5 + 0.75], rtol=1e-6)
    sparse = (jnp.array([[[0, 1]], [[1, 1]]]), jnp.array([[[0.5, 0.5]], [[0.5, 0.5]]]))
    np.testing.assert_allclose(mdp.expected_visits(sparse, jnp.array([1.0, 0.0]),
                                                   jnp.ones((2, 1)), 3), visits, rtol=1e-6)
