"""Generic dynamic-programming solvers for a known finite MDP (transitions, rewards R[s, a]).

`transitions` is a dense `P[s, a, s']` or the sparse pair `(next_state[s, a, k], prob[s, a, k])`
(e.g. `ToyRec.successors`), which costs `k` instead of `num_states` per (s, a). Used to check
learners against exact optima (`learners.tabular` on ToyRec-v0). Domain solvers that exploit an
env's structure live with the env (e.g. `envs.inventory.policies.value_iteration`, a relative
value iteration for the average-profit criterion of Inventory-v0).
"""

import functools

import jax
import jax.numpy as jnp

from ecomrl_jax.rules import check_value, in_range


def expected_next(transitions, values: jax.Array) -> jax.Array:
    """`E[values[s'] | s, a]` for each (s, a). `transitions` is a dense `P[s, a, s']` or the
    sparse pair `(next_state[s, a, k], prob[s, a, k])` (e.g. `ToyRec.successors`), which costs
    `k` instead of `num_states` per pair."""
    if isinstance(transitions, tuple):
        next_state, prob = transitions
        return jnp.sum(prob * values[next_state], -1)
    return jnp.einsum("sat,t->sa", transitions, values)


def _policy_transitions(transitions, policy: jax.Array):
    """`transitions` restricted to the action `policy[s]` of each state, keeping an action axis."""
    states = jnp.arange(policy.shape[0])
    if isinstance(transitions, tuple):
        return tuple(x[states, policy][:, None] for x in transitions)
    return transitions[states, policy][:, None]


def _fixed_point(update, init, gamma, tol: float, max_iters: int):
    """Iterate the gamma-contraction `update` until the sup-norm change is at most
    `tol * (1 - gamma) / gamma`, which bounds the distance to the fixed point by `tol`."""
    threshold = tol * (1.0 - gamma) / jnp.maximum(gamma, 1e-12)

    def body(carry):
        x, _, i = carry
        new = update(x)
        return new, jnp.max(jnp.abs(new - x)), i + 1

    return jax.lax.while_loop(lambda c: (c[1] > threshold) & (c[2] < max_iters), body,
                              (init, jnp.float32(jnp.inf), 0))[0]


def _check_gamma(gamma) -> None:
    """A discounted fixed point needs gamma in [0, 1) (skipped when traced)."""
    check_value(gamma, in_range(0, 1, high_open=True), "gamma")


def value_iteration(transitions, rewards, gamma, tol: float = 1e-5, max_iters: int = 10_000):
    """Optimal `Q[s, a]` of the MDP `(transitions, R[s, a])` (see `expected_next` for the two
    forms of `transitions`) by `Q <- R + gamma * E[max_a' Q(s', a')]`, to within `tol`
    (float32 rounding aside)."""
    _check_gamma(gamma)
    return _value_iteration(transitions, jnp.asarray(rewards, jnp.float32), gamma, tol, max_iters)


@functools.partial(jax.jit, static_argnames=("tol", "max_iters"))
def _value_iteration(transitions, rewards, gamma, tol, max_iters):
    return _fixed_point(lambda q: rewards + gamma * expected_next(transitions, q.max(-1)),
                        rewards, gamma, tol, max_iters)


def policy_value(transitions, rewards, gamma, policy, tol: float = 1e-5, max_iters: int = 10_000):
    """`V[s]` of the deterministic policy `policy[s]` (int actions), to within `tol`."""
    _check_gamma(gamma)
    return _policy_value(transitions, jnp.asarray(rewards, jnp.float32), gamma,
                         jnp.asarray(policy, jnp.int32), tol, max_iters)


@functools.partial(jax.jit, static_argnames=("tol", "max_iters"))
def _policy_value(transitions, rewards, gamma, policy, tol, max_iters):
    r_pi = rewards[jnp.arange(policy.shape[0]), policy]
    p_pi = _policy_transitions(transitions, policy)
    return _fixed_point(lambda v: r_pi + gamma * expected_next(p_pi, v)[:, 0], r_pi, gamma, tol,
                        max_iters)


@functools.partial(jax.jit, static_argnames=("horizon",))
def expected_visits(transitions, initial: jax.Array, policy_probs: jax.Array, horizon: int):
    """Expected number of visits to each (s, a) in the first `horizon` steps of an episode that
    starts from `initial[s]` and acts by `policy_probs[s, a]`. Absorbing terminal states keep
    collecting visits that a real (reset) episode would not make."""
    num_states = initial.shape[0]

    def step(d, _):
        flow = d[:, None] * policy_probs  # (S, A) probability of taking a in s now
        if isinstance(transitions, tuple):
            next_state, prob = transitions
            d_next = jnp.zeros(num_states, jnp.float32).at[next_state].add(flow[..., None] * prob)
        else:
            d_next = jnp.einsum("sa,sat->t", flow, transitions)
        return d_next, flow

    return jax.lax.scan(step, jnp.asarray(initial, jnp.float32), None, horizon)[1].sum(0)
