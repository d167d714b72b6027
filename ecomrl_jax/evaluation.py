"""Rollout of any policy, per-episode metrics, confidence intervals and A/B comparison.

A policy is `policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env;
learned policies ignore `env_state`, oracles may read it.

Common random numbers: episode `i` of `evaluate(..., key, ...)` uses
`episode_key = fold_in(key, i)`, split into `(env_key, policy_key)`; `env_key` splits into
`(reset_key, step_key)`. Step `t` steps the env with `fold_in(step_key, t)` and calls the
policy with `fold_in(policy_key, t)`. The env's keys never depend on the policy, so two
policies evaluated with the same `key` meet the same shoppers, candidates and choice noise
(as far as their actions allow), and episode `i` does not depend on `num_episodes`.
"""

import math
import statistics
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ecomrl_jax.wrappers import business_metric_names


def evaluate(env, env_params, policy_fn, key, num_episodes: int, max_steps: int | None = None):
    """Run `num_episodes` episodes in one jit; return per-episode sums of shape (num_episodes,).

    Keys: "return", "length" and each business metric in the env's `info`. An episode counts
    only up to its first done (the env auto-resets, later steps are masked out); `max_steps`
    (default `env_params.max_steps_in_episode`, which must then be concrete) caps its length.
    The jit cache is keyed on `policy_fn`; pass `jax.tree_util.Partial(fn, weights)` to
    evaluate many weight sets (seeds, checkpoints) with one compilation.
    """
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode)
    if num_episodes < 1 or max_steps < 1:
        raise ValueError(f"num_episodes ({num_episodes}) and max_steps ({max_steps}) must be >= 1")
    if not isinstance(policy_fn, jax.tree_util.Partial):
        policy_fn = jax.tree_util.Partial(policy_fn)
    return _evaluate(env, env_params, policy_fn, key, num_episodes, max_steps)


@partial(jax.jit, static_argnames=("env", "num_episodes", "max_steps"))
def _evaluate(env, env_params, policy_fn, key, num_episodes, max_steps):
    def episode(episode_key):
        reset_key, step_key, policy_key = _split_episode_key(episode_key)
        obs, state = env.reset(reset_key, env_params)
        info = jax.eval_shape(
            lambda: env.step(step_key, state, policy_fn(policy_key, obs, state, env_params),
                             env_params))[-1]
        names = ["return", "length"] + business_metric_names(info)

        def step(carry, t):
            obs, state, alive, totals = carry
            action = policy_fn(jax.random.fold_in(policy_key, t), obs, state, env_params)
            obs, state, reward, terminated, truncated, info = env.step(
                jax.random.fold_in(step_key, t), state, action, env_params)
            values = {"return": reward, "length": 1.0, **info}
            totals = {k: totals[k] + jnp.where(alive, jnp.asarray(values[k], jnp.float32), 0.0)
                      for k in names}
            return (obs, state, alive & ~(terminated | truncated), totals), None

        totals = {k: jnp.zeros((), jnp.float32) for k in names}
        (_, _, _, totals), _ = jax.lax.scan(
            step, (obs, state, jnp.bool_(True), totals), jnp.arange(max_steps))
        return totals

    return jax.vmap(episode)(_episode_keys(key, num_episodes))


def initial_states(env, env_params, key, num_episodes: int):
    """`(obs, state)`, batched, that each episode of `evaluate(env, env_params, policy_fn, key,
    num_episodes)` starts from, whatever the policy: for a per-episode oracle or bound on the
    very episodes a policy is evaluated on."""
    reset_keys = jax.vmap(lambda k: _split_episode_key(k)[0])(_episode_keys(key, num_episodes))
    return jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)


def _episode_keys(key, num_episodes: int) -> jax.Array:
    """Episode i of an evaluation plays `fold_in(key, i)`."""
    return jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(num_episodes))


def _split_episode_key(episode_key):
    """`(reset_key, step_key, policy_key)` of one evaluation episode."""
    env_key, policy_key = jax.random.split(episode_key)
    reset_key, step_key = jax.random.split(env_key)
    return reset_key, step_key, policy_key


def confidence_interval(x, level: float = 0.95) -> tuple[float, float, float]:
    """`(mean, low, high)`: Student-t interval for the mean of the samples `x`."""
    x = np.asarray(x, np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 samples, got {x.size}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    mean = float(x.mean())
    half = _t_quantile((1.0 + level) / 2.0, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def _t_quantile(q: float, df: int) -> float:
    """Quantile `q` (> 1/2) of Student's t with integer `df`.

    df <= 1000: bisection on the exact closed-form CDF (Abramowitz & Stegun 26.7.3-4), to
    machine precision. df > 1000: the Cornish-Fisher expansion A&S 26.7.5 around the normal
    quantile, whose truncation error there is below 1e-9.
    """
    if df > 1000:
        z = statistics.NormalDist().inv_cdf(q)
        g = ((z**3 + z) / 4,
             (5 * z**5 + 16 * z**3 + 3 * z) / 96,
             (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
             (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160)
        return z + sum(gk / df ** (k + 1) for k, gk in enumerate(g))
    lo, hi = 0.0, math.pi / 2  # theta = arctan(t / sqrt(df))
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central_prob(mid, df) < 2 * q - 1 else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def _t_central_prob(theta: float, df: int) -> float:
    """P(|T| <= sqrt(df) tan(theta)) for Student's t with integer `df` (A&S 26.7.3-4)."""
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c * c * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    term = total = c if df > 1 else 0.0
    for k in range(1, (df - 1) // 2):
        term *= c * c * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


def compare(env, env_params, policy_a, policy_b, key, num_episodes: int) -> dict:
    """A/B test of two policies on common random numbers (the same `key` for both).

    Returns `{metric: {"mean_a", "mean_b", "diff", "low", "high", "rel_diff"}}`: `diff` is
    the mean of the paired per-episode differences b - a, `[low, high]` its 95% t interval,
    and `rel_diff` = diff / |mean_a| (nan when mean_a is 0).
    """
    a = evaluate(env, env_params, policy_a, key, num_episodes)
    b = evaluate(env, env_params, policy_b, key, num_episodes)
    result = {}
    for name in ["return", "length"] + [k for k in sorted(a) if k not in ("return", "length")]:
        xa, xb = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        diff, low, high = confidence_interval(xb - xa)
        mean_a = float(xa.mean())
        result[name] = {"mean_a": mean_a, "mean_b": float(xb.mean()), "diff": diff,
                        "low": low, "high": high,
                        "rel_diff": diff / abs(mean_a) if mean_a != 0 else math.nan}
    return result


def comparison_table(result: dict, names: tuple[str, str] = ("A", "B")) -> str:
    """Markdown table of a `compare` result."""
    a, b = names
    lines = [f"| metric | {a} | {b} | {b} - {a} (95% CI) | relative |",
             "|---|---:|---:|---:|---:|"]
    for metric, r in result.items():
        relative = f"{r['rel_diff']:+.2%}" if math.isfinite(r["rel_diff"]) else "n/a"
        lines.append(f"| {metric} | {r['mean_a']:.4g} | {r['mean_b']:.4g} | "
                     f"{r['diff']:+.4g} [{r['low']:+.4g}, {r['high']:+.4g}] | {relative} |")
    return "\n".join(lines)
