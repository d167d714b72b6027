"""Off-policy estimators of a policy's value from a `LoggedBandit`, as small pure functions.

The evaluation policy is given, as in OBP, by its action distribution `(n, num_actions, len_list)`:
the probability of showing each item at each slate position in each logged row (len_list 1 for
single-item logs). `row_terms` reduces a log, that distribution and a reward model's predictions
`q_hat` (same shape) to four numbers per row; every estimator is a jittable, vmappable function of
those, written as obp 0.4.1 writes it (`obp/ope/estimators.py`; same names and hyperparameter
defaults: Switch-DR tau=1, DRos lambda_=0), so the estimates match obp's on the same inputs;
`switch-dr-slope` and `dr-os-slope` tune that hyperparameter by SLOPE as obp 0.5 does.
`bootstrap` resamples rows for every estimator at once: one computation vmapped over resample keys,
each resample given as row counts (`RowTerms.count`) that every estimator weighs its rows by.
"""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from flax import struct
from jax.sharding import Mesh, PartitionSpec as P

from ecomrl_jax.offline.data import LoggedBandit

SUM_TOLERANCE = 1e-4  # |sum over items - 1| allowed per row and position (float32 simulation counts)


@struct.dataclass
class RowTerms:
    """Per-row quantities the estimators are functions of (all `(n,)` float32)."""
    reward: jax.Array  # r_t
    weight: jax.Array  # w_t = pi_e(a_t | x_t, k_t) / pi_b(a_t | x_t, k_t), 0 where pi_b is 0
    q_logged: jax.Array | None = None  # q_hat(x_t, a_t, k_t); None without a reward model
    q_policy: jax.Array | None = None  # sum_a pi_e(a | x_t, k_t) q_hat(x_t, a, k_t)
    count: jax.Array | None = None  # each row's multiplicity (a bootstrap resample); None: once


def _sum(t: RowTerms, x: jax.Array) -> jax.Array:
    """Sum over rows (axis -1), each counted `t.count` times."""
    return jnp.sum(x, axis=-1) if t.count is None else jnp.sum(t.count * x, axis=-1)


def _mean(t: RowTerms, x: jax.Array) -> jax.Array:
    """Mean over rows (axis -1), each counted `t.count` times."""
    return jnp.mean(x, axis=-1) if t.count is None else _sum(t, x) / jnp.sum(t.count)


def row_terms(data: LoggedBandit, action_dist: jax.Array, q_hat: jax.Array | None = None) -> RowTerms:
    """The estimators' inputs for each logged row, at the row's logged position (jittable).

    A row with propensity 0 (which `validate` rejects) gets weight 0 rather than inf or NaN."""
    n = data.action.shape[0]
    chex.assert_shape(action_dist, (n, data.num_actions, data.len_list))
    rows = jnp.arange(n)
    pi_logged = action_dist[rows, data.action, data.position]
    positive = data.propensity > 0
    weight = jnp.where(positive, pi_logged / jnp.where(positive, data.propensity, 1.0), 0.0)
    if q_hat is None:
        return RowTerms(reward=data.reward, weight=weight)
    chex.assert_equal_shape([q_hat, action_dist])
    q_logged = q_hat[rows, data.action, data.position]
    q_policy = jnp.sum(action_dist[rows, :, data.position] * q_hat[rows, :, data.position], axis=-1)
    return RowTerms(reward=data.reward, weight=weight, q_logged=q_logged, q_policy=q_policy)


def _model_terms(t: RowTerms, name: str) -> tuple[jax.Array, jax.Array]:
    if t.q_logged is None or t.q_policy is None:
        raise ValueError(f"{name} needs reward-model predictions: pass q_hat to row_terms")
    chex.assert_rank([t.reward, t.weight, t.q_logged, t.q_policy], 1)
    return t.q_logged, t.q_policy


def ipw(t: RowTerms) -> jax.Array:
    """Inverse probability weighting (IPS): mean of w_t r_t."""
    chex.assert_rank([t.reward, t.weight], 1)
    return _mean(t, t.weight * t.reward)


def snipw(t: RowTerms) -> jax.Array:
    """Self-normalised IPW (SNIPS): sum w_t r_t / sum w_t (0 if every weight is 0)."""
    chex.assert_rank([t.reward, t.weight], 1)
    return _sum(t, t.weight * t.reward) / _nonzero(_sum(t, t.weight))


def dm(t: RowTerms) -> jax.Array:
    """Direct method: mean of the reward model's value of the evaluation policy, q_hat(x_t, pi_e)."""
    _, q_policy = _model_terms(t, "dm")
    return _mean(t, q_policy)


def _dr_rows(t: RowTerms, weight: jax.Array, name: str) -> jax.Array:
    """(n,) DR's per-row terms q_hat(x_t, pi_e) + weight_t (r_t - q_hat(x_t, a_t))."""
    q_logged, q_policy = _model_terms(t, name)
    return q_policy + weight * (t.reward - q_logged)


def dr(t: RowTerms) -> jax.Array:
    """Doubly robust: DM plus the IPW-weighted residual of the reward model."""
    return _mean(t, _dr_rows(t, t.weight, "dr"))


def sndr(t: RowTerms) -> jax.Array:
    """Self-normalised DR: the residual term's weights divided by their mean."""
    return _mean(t, _dr_rows(t, t.weight / _nonzero(_mean(t, t.weight)), "sndr"))


def _switch_weight(t: RowTerms, tau) -> jax.Array:
    return jnp.where(t.weight <= tau, t.weight, 0.0)


def _shrunk_weight(t: RowTerms, lambda_) -> jax.Array:
    return jnp.where(jnp.isinf(lambda_), t.weight, lambda_ * t.weight / _nonzero(t.weight ** 2 + lambda_))


def switch_dr(t: RowTerms, tau: float = 1.0) -> jax.Array:
    """Switch-DR (Wang et al. 2017): DR's residual term only where w_t <= tau (obp's default tau 1)."""
    return _mean(t, _dr_rows(t, _switch_weight(t, tau), "switch-dr"))


def dros(t: RowTerms, lambda_: float = 0.0) -> jax.Array:
    """DR with optimistic shrinkage (Su et al. 2020): weights lambda w / (w^2 + lambda); lambda 0
    (obp's default) is DM, lambda -> inf is DR."""
    return _mean(t, _dr_rows(t, _shrunk_weight(t, lambda_), "dr-os"))


# obp 0.5's candidates in its OBD benchmark (examples/obd/evaluate_off_policy_estimators.py)
SLOPE_CANDIDATES = (10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, float("inf"))
SLOPE_DELTA = 0.1  # obp 0.5's default for Switch-DR and DRos tuning


def slope_select(values: jax.Array, widths: jax.Array) -> jax.Array:
    """Index chosen by SLOPE (Su et al. 2020; Tucker & Lee 2021, as obp 0.5 implements it): visit
    candidates from the widest confidence width down; stop before the first whose estimate leaves
    |theta_j - theta_i| <= width_i + (sqrt(6) - 1) width_j for an earlier j; else take the last."""
    chex.assert_rank([values, widths], 1)
    order = jnp.argsort(-widths, stable=True)
    theta, width = values[order], widths[order]
    fits = jnp.abs(theta[None, :] - theta[:, None]) <= width[:, None] + (jnp.sqrt(6.0) - 1) * width[None, :]
    earlier = jnp.tril(jnp.ones((theta.shape[0],) * 2, bool), k=-1)  # [i, j]: j visited before i
    fails = ~jnp.all(fits | ~earlier, axis=1)
    stop = jnp.where(jnp.any(fails), jnp.argmax(fails) - 1, theta.shape[0] - 1)
    return order[stop]


def _slope(t: RowTerms, weights: jax.Array, delta: float, name: str) -> jax.Array:
    """SLOPE over per-candidate residual weights (H, n): widths from the one-sided Student-t bound."""
    rows = jax.vmap(lambda w: _dr_rows(t, w, name))(weights)  # (H, n)
    n = rows.shape[1]
    quantile = float(scipy.stats.t(n - 1).ppf(1.0 - delta))
    means = _mean(t, rows)
    widths = quantile * jnp.sqrt(_mean(t, (rows - means[:, None]) ** 2) / (n - 1))
    return means[slope_select(means, widths)]


def switch_dr_slope(t: RowTerms, candidates: tuple[float, ...] = SLOPE_CANDIDATES,
                    delta: float = SLOPE_DELTA) -> jax.Array:
    """Switch-DR with tau chosen from `candidates` by SLOPE (obp 0.5's SwitchDoublyRobustTuning)."""
    return _slope(t, jnp.stack([_switch_weight(t, c) for c in candidates]), delta, "switch-dr-slope")


def dros_slope(t: RowTerms, candidates: tuple[float, ...] = SLOPE_CANDIDATES,
               delta: float = SLOPE_DELTA) -> jax.Array:
    """DRos with lambda chosen from `candidates` by SLOPE (obp 0.5's DoublyRobustWithShrinkageTuning)."""
    return _slope(t, jnp.stack([_shrunk_weight(t, c) for c in candidates]), delta, "dr-os-slope")


def _nonzero(x: jax.Array) -> jax.Array:
    return jnp.where(x == 0, 1.0, x)


# obp's estimator names; the -slope ones tune their hyperparameter on the data (obp 0.5)
ESTIMATORS: dict[str, Callable[[RowTerms], jax.Array]] = {
    "dm": dm, "ipw": ipw, "snipw": snipw, "dr": dr, "sndr": sndr, "switch-dr": switch_dr, "dr-os": dros,
    "switch-dr-slope": switch_dr_slope, "dr-os-slope": dros_slope}
MODEL_FREE = ("ipw", "snipw")  # the estimators that need no reward model


def check_action_dist(action_dist, data: LoggedBandit, name: str = "action_dist") -> None:
    """Outside jit: ValueError unless `action_dist` has shape (n_rows, num_actions, len_list), is
    finite and non-negative, and sums to 1 over items at every row and position."""
    expected = (data.n_rows, data.num_actions, data.len_list)
    if np.shape(action_dist) != expected:
        raise ValueError(f"{name} must have shape (n_rows, num_actions, len_list) = {expected}, "
                         f"got {np.shape(action_dist)}")
    values = np.asarray(action_dist, np.float64)
    if not np.isfinite(values).all() or values.min() < 0:
        raise ValueError(f"{name} must hold finite probabilities >= 0")
    sums = values.sum(axis=1)
    bad = np.abs(sums - 1) > SUM_TOLERANCE
    if bad.any():
        row, position = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{name} must sum to 1 over the {data.num_actions} items at every row and "
                         f"position; row {row}, position {position} sums to {sums[row, position]:.6g}")


def check_q_hat(q_hat, data: LoggedBandit) -> None:
    """Outside jit: ValueError unless reward-model predictions have the action distribution's shape
    and are finite."""
    expected = (data.n_rows, data.num_actions, data.len_list)
    if np.shape(q_hat) != expected:
        raise ValueError(f"q_hat must have shape (n_rows, num_actions, len_list) = {expected}, "
                         f"got {np.shape(q_hat)}")
    if not np.isfinite(np.asarray(q_hat)).all():
        raise ValueError("q_hat holds NaN or inf")


def estimate(terms: RowTerms, names: tuple[str, ...], tau: float = 1.0, lambda_: float = 0.0) -> dict:
    """{name: estimate} for the estimators `names` (keys of ESTIMATORS); `tau` and `lambda_` are
    Switch-DR's and DRos's hyperparameters (jittable with `names` static)."""
    hyper = {"switch-dr": {"tau": tau}, "dr-os": {"lambda_": lambda_}}
    return {name: ESTIMATORS[name](terms, **hyper.get(name, {})) for name in names}


def check_names(names) -> tuple[str, ...]:
    """Outside jit: the estimator names as a tuple, or a ValueError listing the valid ones."""
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown or not names:
        raise ValueError(f"unknown estimators {unknown or '(none given)'}; choose from {list(ESTIMATORS)}")
    return tuple(names)


@struct.dataclass
class Interval:
    """A point estimate, the mean of its bootstrap resamples and their (alpha/2, 1 - alpha/2) quantiles."""
    value: jax.Array
    mean: jax.Array
    low: jax.Array
    high: jax.Array


def resample_indices(key: jax.Array, n: int) -> jax.Array:
    """(n,) row indices drawn uniformly with replacement as floor(u n / 2^32) of 32 random bits u:
    one draw per index (a third of `jax.random.randint`'s cost on CPU); each index's probability is
    within a factor n / 2^32 of 1 / n (2e-4 at a million rows)."""
    bits = jax.random.bits(key, (n,), jnp.uint32)
    high, low = bits >> 16, bits & 0xFFFF  # 32 x 32 -> high 32 bits of the product, in uint32 pieces
    n_high, n_low = jnp.uint32(n >> 16), jnp.uint32(n & 0xFFFF)
    cross_1, cross_2 = high * n_low, low * n_high
    middle = ((low * n_low) >> 16) + (cross_1 & 0xFFFF) + (cross_2 & 0xFFFF)
    return (high * n_high + (cross_1 >> 16) + (cross_2 >> 16) + (middle >> 16)).astype(jnp.int32)


def bootstrap(terms: RowTerms, key: jax.Array, names: tuple[str, ...], num_resamples: int = 1000,
              alpha: float = 0.05, tau: float = 1.0, lambda_: float = 0.0,
              max_elements: int = 2 ** 20) -> dict[str, Interval]:
    """Percentile bootstrap intervals of the estimators `names` on the same row resamples (jittable
    with `names`, `num_resamples` and `max_elements` static). The resamples are split over the
    local devices (`shard_map`; on CPU, `--xla_force_host_platform_device_count` makes one per
    core) and run vmapped over their keys, in chunks of at most `max_elements` resampled rows in
    all to bound memory. A resample is each row's count (a scatter-add of its drawn row indices),
    and every estimator runs on the rows weighted by it: a gather of the rows' terms costs twice as
    much on CPU."""
    n = terms.reward.shape[0]
    batch = min(num_resamples, max_elements // n)

    def resamples(terms, keys):
        def one(resample_key):  # a resample as each row's count: no gather of the rows' terms
            count = jnp.zeros(n, jnp.float32).at[resample_indices(resample_key, n)].add(1.0)
            return estimate(terms.replace(count=count), names, tau, lambda_)

        # one at a time without vmap where a batch would not fit `max_elements`
        return jax.lax.map(one, keys, batch_size=batch) if batch > 1 else jax.lax.map(one, keys)

    devices = jax.local_device_count()
    keys = jax.random.split(key, -(-num_resamples // devices) * devices)  # a multiple of devices
    if devices > 1:
        mesh = Mesh(np.array(jax.local_devices()), ("resamples",))
        resamples = jax.shard_map(resamples, mesh=mesh, in_specs=(P(), P("resamples")),
                                  out_specs=P("resamples"))
    draws = jax.tree.map(lambda d: d[:num_resamples], resamples(terms, keys))
    values = estimate(terms, names, tau, lambda_)
    quantiles = jnp.array([alpha / 2, 1 - alpha / 2])
    out = {}
    for name in names:
        low, high = jnp.quantile(draws[name], quantiles)
        out[name] = Interval(value=values[name], mean=jnp.mean(draws[name]), low=low, high=high)
    return out
