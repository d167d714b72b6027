"""Off-policy estimators: unbiasedness on a synthetic slate log with a known value, the identities
that tie them together (DR with q_hat 0 is IPW, Switch-DR and DRos span DM..DR), jit/vmap, input
checks and the vmapped bootstrap."""

import json
import os
import subprocess
import sys
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomrl_jax.offline import LoggedBandit
from ecomrl_jax.offline import estimators as E

NUM_ACTIONS, LEN_LIST = 5, 3


def synthetic_log(key, n, len_list=LEN_LIST):
    """A uniform-random log (a slate of `len_list` positions, or single items for 1): position
    uniform, item uniform at it, click ~ Bernoulli(p[a, k]); returns the log, p, a context-free
    evaluation policy's action distribution and its true value."""
    click_prob = jnp.linspace(0.05, 0.5, NUM_ACTIONS)[:, None] * jnp.array([1.0, 0.7, 0.4])[None, :len_list]
    k_pos, k_act, k_click = jax.random.split(key, 3)
    position = jax.random.randint(k_pos, (n,), 0, len_list)
    action = jax.random.randint(k_act, (n,), 0, NUM_ACTIONS)
    reward = jax.random.bernoulli(k_click, click_prob[action, position]).astype(jnp.float32)
    data = LoggedBandit(context=jnp.zeros((n, 1)), action=action, position=position, reward=reward,
                        propensity=jnp.full((n,), 1 / NUM_ACTIONS), num_actions=NUM_ACTIONS, len_list=len_list)
    policy = jax.nn.softmax(3.0 * jnp.arange(NUM_ACTIONS, dtype=jnp.float32))[:, None].repeat(len_list, 1)
    true_value = jnp.mean(jnp.sum(policy * click_prob, axis=0))  # positions equally likely
    return data, click_prob, jnp.broadcast_to(policy, (n, NUM_ACTIONS, len_list)), true_value


@pytest.fixture(scope="module")
def log():
    return synthetic_log(jax.random.key(0), 20_000)


def test_every_estimator_recovers_the_true_value(log):
    """With the true click model as q_hat every estimator is unbiased; within 4 standard errors."""
    data, click_prob, action_dist, truth = log
    q_true = jnp.broadcast_to(click_prob, action_dist.shape)
    terms = E.row_terms(data, action_dist, q_true)
    se = float(jnp.std(terms.weight * terms.reward)) / np.sqrt(data.n_rows)
    for name, fn in E.ESTIMATORS.items():
        assert abs(float(fn(terms)) - float(truth)) < 4 * se, name
    # a biased reward model biases DM, but DR corrects it
    biased = E.row_terms(data, action_dist, 0.5 * q_true)
    assert abs(float(E.dm(biased)) - float(truth)) > 10 * se
    assert abs(float(E.dr(biased)) - float(truth)) < 4 * se


def test_identities_between_estimators(log):
    data, click_prob, action_dist, _ = log
    q_hat = jnp.broadcast_to(0.8 * click_prob, action_dist.shape)
    terms, no_model = E.row_terms(data, action_dist, q_hat), E.row_terms(data, action_dist, jnp.zeros_like(q_hat))
    close = partial(np.testing.assert_allclose, rtol=1e-5)
    close(E.dr(no_model), E.ipw(no_model))
    close(E.sndr(no_model), E.snipw(no_model))
    close(E.switch_dr(terms, tau=jnp.inf), E.dr(terms))
    close(E.switch_dr(terms, tau=0.0), E.dm(terms))  # all weights positive: no residual kept
    close(E.dros(terms, lambda_=0.0), E.dm(terms))
    close(E.dros(terms, lambda_=jnp.inf), E.dr(terms))
    assert float(E.dm(terms)) < float(E.dros(terms, lambda_=10.0)) < float(E.dr(terms))  # q_hat underestimates
    on_policy = E.row_terms(data, jnp.full_like(action_dist, 1 / NUM_ACTIONS))  # pi_e = pi_b: weights 1
    close(E.ipw(on_policy), jnp.mean(data.reward))
    close(E.snipw(on_policy), jnp.mean(data.reward))


def test_single_item_logs(log):
    """len_list 1: weights are pi_e(a_t) / pi_b(a_t) and IPW/DR recover the single-position value,
    which differs from the slate's."""
    data, click_prob, action_dist, truth = synthetic_log(jax.random.key(1), 20_000, len_list=1)
    terms = E.row_terms(data, action_dist, jnp.broadcast_to(click_prob, action_dist.shape))
    np.testing.assert_allclose(terms.weight, action_dist[0, data.action, 0] * NUM_ACTIONS, rtol=1e-6)
    se = float(jnp.std(terms.weight * terms.reward)) / np.sqrt(data.n_rows)
    assert abs(float(E.ipw(terms)) - float(truth)) < 4 * se
    assert abs(float(E.dr(terms)) - float(truth)) < 4 * se
    assert abs(float(truth) - float(log[3])) > 10 * se


def test_jit_and_vmap_over_evaluation_policies_match_a_loop(log):
    data, click_prob, action_dist, _ = log
    q_hat = jnp.broadcast_to(click_prob, action_dist.shape)
    policies = jnp.stack([action_dist, jnp.full_like(action_dist, 1 / NUM_ACTIONS), action_dist[:, ::-1]])

    def all_estimates(dist):
        terms = E.row_terms(data, dist, q_hat)
        return jnp.stack([fn(terms) for fn in E.ESTIMATORS.values()])

    batched = jax.jit(jax.vmap(all_estimates))(policies)
    looped = jnp.stack([all_estimates(p) for p in policies])
    np.testing.assert_allclose(batched, looped, rtol=1e-4)  # float32 sums in another order


def test_zero_propensity_row_gives_no_nan(log):
    data, click_prob, action_dist, _ = log
    broken = data.replace(propensity=data.propensity.at[0].set(0.0))
    terms = E.row_terms(broken, action_dist, jnp.broadcast_to(click_prob, action_dist.shape))
    assert float(terms.weight[0]) == 0.0
    assert all(np.isfinite(float(fn(terms))) for fn in E.ESTIMATORS.values())


def test_estimate_by_name_passes_hyperparameters(log):
    data, click_prob, action_dist, _ = log
    terms = E.row_terms(data, action_dist, jnp.broadcast_to(0.8 * click_prob, action_dist.shape))
    out = E.estimate(terms, ("ipw", "switch-dr", "dr-os"), tau=jnp.inf, lambda_=5.0)
    np.testing.assert_allclose(out["switch-dr"], E.dr(terms), rtol=1e-6)
    np.testing.assert_allclose(out["dr-os"], E.dros(terms, lambda_=5.0), rtol=1e-6)
    assert E.check_names(["ipw", "dm"]) == ("ipw", "dm")
    with pytest.raises(ValueError, match=r"unknown estimators \['ips'\]; choose from \['dm', 'ipw'"):
        E.check_names(["ips", "dm"])


def test_model_based_estimators_need_q_hat(log):
    data, _, action_dist, _ = log
    terms = E.row_terms(data, action_dist)
    for name in set(E.ESTIMATORS) - set(E.MODEL_FREE):
        with pytest.raises(ValueError, match="needs reward-model predictions"):
            E.ESTIMATORS[name](terms)


def test_input_checks_name_the_problem(log):
    data, _, action_dist, _ = log
    E.check_action_dist(action_dist, data)
    with pytest.raises(ValueError, match=r"shape \(n_rows, num_actions, len_list\) = \(20000, 5, 3\), got \(20000, 5\)"):
        E.check_action_dist(action_dist[:, :, 0], data)
    with pytest.raises(ValueError, match="row 7, position 2 sums to 1.5"):
        E.check_action_dist(action_dist.at[7, 0, 2].add(0.5), data)
    with pytest.raises(ValueError, match="finite probabilities >= 0"):
        E.check_action_dist(action_dist.at[0, 0, 0].set(-0.1).at[0, 1, 0].add(0.1), data)
    with pytest.raises(ValueError, match="q_hat holds NaN"):
        E.check_q_hat(jnp.full(action_dist.shape, jnp.nan), data)


def test_bootstrap_is_one_vmapped_computation_chunked_without_changing_it(log):
    data, click_prob, action_dist, truth = log
    terms = E.row_terms(data, action_dist, jnp.broadcast_to(click_prob, action_dist.shape))
    run = jax.jit(E.bootstrap, static_argnames=("names", "num_resamples", "max_elements"))
    names = ("ipw", "snipw", "dr")
    whole = run(terms, jax.random.key(3), names, num_resamples=200)
    chunked = run(terms, jax.random.key(3), names, num_resamples=200, max_elements=3 * data.n_rows)
    for name in names:
        np.testing.assert_allclose(jnp.array([whole[name].low, whole[name].high]),
                                   jnp.array([chunked[name].low, chunked[name].high]), rtol=1e-6)
        interval = whole[name]
        assert interval.low < interval.value < interval.high
        assert interval.low < truth < interval.high
        assert abs(float(interval.mean - interval.value)) < 0.25 * float(interval.high - interval.low)
    # intervals narrow like 1/sqrt(n): a quarter of the rows, about twice the width
    quarter = jax.tree.map(lambda x: x[: data.n_rows // 4], terms)
    small = run(quarter, jax.random.key(3), names, num_resamples=200)
    ratio = float((small["ipw"].high - small["ipw"].low) / (whole["ipw"].high - whole["ipw"].low))
    assert 1.6 < ratio < 2.5


SPLIT_BOOTSTRAP = """
import json, jax, jax.numpy as jnp
from ecomrl_jax.offline import estimators as E
n = 1000
terms = E.RowTerms(reward=jnp.linspace(0, 1, n), weight=jnp.linspace(2, 0, n))
out = jax.jit(E.bootstrap, static_argnums=(2, 3))(terms, jax.random.key(3), ("ipw", "snipw"), 100)
print(json.dumps([jax.local_device_count()] + [float(v) for i in out.values() for v in (i.low, i.high)]))
"""


@pytest.mark.slow  # a fresh Python with 3-4 virtual devices: compiles everything again
def test_bootstrap_split_over_devices_gives_the_same_intervals():
    """Resamples split over 3 (virtual CPU) devices, 100 padded to 102: the same intervals as on one."""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=3"}
    done = subprocess.run([sys.executable, "-c", SPLIT_BOOTSTRAP], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    devices, *split = json.loads(done.stdout.strip().splitlines()[-1])
    n = 1000
    terms = E.RowTerms(reward=jnp.linspace(0, 1, n), weight=jnp.linspace(2, 0, n))
    out = jax.jit(E.bootstrap, static_argnums=(2, 3))(terms, jax.random.key(3), ("ipw", "snipw"), 100)
    assert devices == 3 and jax.local_device_count() == 1
    np.testing.assert_allclose(split, [float(v) for i in out.values() for v in (i.low, i.high)], rtol=1e-6)


def test_slope_stops_before_the_first_candidate_outside_the_earlier_intervals():
    """Visited from the widest width down: all agreeing -> the narrowest; a biased narrow
    candidate -> the one before it."""
    widths = jnp.array([0.1, 0.4, 0.2, 0.8])  # visit order: 3, 1, 2, 0
    assert int(E.slope_select(jnp.array([1.0, 1.0, 1.0, 1.0]), widths)) == 0
    assert int(E.slope_select(jnp.array([1.0, 1.0, 1.05, 1.1]), widths)) == 0
    assert int(E.slope_select(jnp.array([3.0, 1.0, 1.05, 1.1]), widths)) == 2  # 0 is off: stop at 2
    assert int(E.slope_select(jnp.array([3.0, 1.0, 3.0, 1.1]), widths)) == 1


def test_slope_tuned_estimators_pick_a_candidate(log):
    data, click_prob, action_dist, truth = log
    terms = E.row_terms(data, action_dist, jnp.broadcast_to(0.8 * click_prob, action_dist.shape))
    switch = float(E.switch_dr_slope(terms))
    assert any(np.isclose(switch, float(E.switch_dr(terms, tau=c)), rtol=1e-6) for c in E.SLOPE_CANDIDATES)
    shrunk = float(E.dros_slope(terms))
    assert any(np.isclose(shrunk, float(E.dros(terms, lambda_=c)), rtol=1e-6) for c in E.SLOPE_CANDIDATES)


@pytest.mark.parametrize("n", [7, 20_000, 1_000_003])
def test_resample_indices_are_the_high_bits_of_u_times_n(n):
    """floor(u n / 2^32) computed in uint32 pieces equals the exact 64-bit product's high word."""
    key = jax.random.key(4)
    bits = np.asarray(jax.random.bits(key, (n,), jnp.uint32)).astype(np.uint64)
    expected = (bits * np.uint64(n)) >> np.uint64(32)
    np.testing.assert_array_equal(np.asarray(E.resample_indices(key, n)), expected.astype(np.int64))
