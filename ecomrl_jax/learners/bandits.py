"""Bandit algorithms as small configs with pure `init`/`select`/`update`, and a one-scan runner.

Each algorithm is a `flax.struct` dataclass whose numeric hyperparameters are pytree leaves,
so a grid vmaps with no recompile:

    grid = jax.tree.map(lambda *x: jnp.stack(x), *[UCB1(c=c) for c in (0.5, 1.0, 2.0)])
    run = lambda algo, key: make_run(algo, env, params, 1000)(key)
    jax.vmap(jax.vmap(run, in_axes=(None, 0)), in_axes=(0, None))(grid, keys)  # (3, len(keys))

Interface (all jittable): `init(env, env_params) -> state`,
`select(state, key, contexts) -> arm`, `update(state, key, arm, contexts, reward) -> state`,
where `contexts` is the round's `(num_arms, context_dim)` array (`env.arm_contexts(obs)`).
Index algorithms (epsilon-greedy, UCB1, softmax) play every arm once before using their
index; ties are broken uniformly at random. For rewards that drift (e.g. under
`wrappers.Drift`, whose bandit `info["regret"]` is against the current period's best arm):
sliding-window UCB, discounted UCB and discounted Thompson sampling forget old rounds.
"""

import math
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ecomrl_jax.rules import (FINITE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, check, check_value,
                              in_range, int_at_least)


@runtime_checkable
class BanditEnv(Protocol):
    """What the algorithms need of a bandit env (`ecomrl_jax.envs.bandits.bandit_envs.BanditEnv`
    provides it): arms, per-arm contexts, the reward range, and `regret` and
    `optimal_arm_chosen` in the `info` of `step_env`."""

    name: str
    num_arms: int
    context_dim: int
    is_contextual: bool

    def reset(self, key, params): ...

    def step_env(self, key, state, action, params): ...

    def arm_contexts(self, obs) -> jax.Array: ...

    def reward_range(self, params): ...


SCHEDULES = ("constant", "linear", "exponential", "inverse")


@struct.dataclass
class ArmStats:
    """Per-arm pull counts, running mean reward and sum of squared deviations (Welford)."""

    counts: jax.Array  # (num_arms,) float32
    means: jax.Array  # (num_arms,)
    sq_dev: jax.Array  # (num_arms,) sum of (reward - mean)^2; sample variance = sq_dev / (n - 1)

    @classmethod
    def zeros(cls, num_arms: int) -> "ArmStats":
        z = jnp.zeros(num_arms, jnp.float32)
        return cls(z, z, z)

    def update(self, arm: jax.Array, reward: jax.Array) -> "ArmStats":
        pulled = jnp.arange(self.counts.shape[0]) == arm
        counts = self.counts + pulled
        delta = reward - self.means
        means = self.means + jnp.where(pulled, delta / jnp.maximum(counts, 1.0), 0.0)
        sq_dev = self.sq_dev + jnp.where(pulled, delta * (reward - means), 0.0)
        return ArmStats(counts, means, sq_dev)


@struct.dataclass
class ScaledStats:
    """ArmStats plus the width of the env's reward range (UCB1's bonus is in reward units)."""

    stats: ArmStats
    scale: jax.Array  # () high - low of the env's rewards


@struct.dataclass
class BetaState:
    alpha: jax.Array  # (num_arms,) prior_alpha + successes (DiscountedThompson: discounted
    beta: jax.Array  # (num_arms,) prior_beta + failures     successes and failures, no prior)
    low: jax.Array  # () reward range, to map rewards onto [0, 1]
    high: jax.Array


@struct.dataclass
class LinearState:
    """Disjoint ridge regression per arm: A_a = reg * I + sum x x^T (kept as its inverse by
    Sherman-Morrison rank-1 updates) and b_a = sum reward * x."""

    a_inv: jax.Array  # (num_arms, d, d)
    b: jax.Array  # (num_arms, d)

    def estimates(self, contexts: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(num_arms,) ridge mean reward x_a^T A_a^-1 b_a and variance factor x_a^T A_a^-1 x_a."""
        theta = jnp.einsum("kij,kj->ki", self.a_inv, self.b)
        mean = jnp.sum(theta * contexts, axis=-1)
        var = jnp.einsum("ki,kij,kj->k", contexts, self.a_inv, contexts)
        return mean, jnp.maximum(var, 0.0)

    def update(self, arm: jax.Array, contexts: jax.Array, reward: jax.Array) -> "LinearState":
        x = contexts[arm]
        u = self.a_inv[arm] @ x  # A^-1 x; A^-1 is symmetric
        a_inv_arm = self.a_inv[arm] - jnp.outer(u, u) / (1.0 + jnp.dot(x, u))
        pulled = (jnp.arange(self.b.shape[0]) == arm)[:, None]
        return LinearState(a_inv=jnp.where(pulled[:, :, None], a_inv_arm, self.a_inv),
                           b=self.b + jnp.where(pulled, reward * x, 0.0))


@struct.dataclass
class EpsilonGreedy:
    """Greedy on mean reward, uniform random arm with probability eps_t, where
    eps_t = max(min_epsilon, epsilon * f(t)) with f(t) = 1 (constant), max(0, 1 - t/decay_steps)
    (linear), exp(-t/decay_steps) (exponential) or min(1, decay_steps/(t+1)) (inverse, 1/t)."""

    epsilon: float = 0.1
    min_epsilon: float = 0.0
    decay_steps: float = 1000.0
    schedule: str = struct.field(pytree_node=False, default="constant")

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"EpsilonGreedy.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check(self, {"epsilon": UNIT_INTERVAL, "min_epsilon": UNIT_INTERVAL, "decay_steps": POSITIVE})

    def check_env(self, env: BanditEnv, env_params) -> None:
        """Any bandit env (contexts are ignored)."""

    def epsilon_at(self, t: jax.Array) -> jax.Array:
        """Exploration probability in round `t` (0-based)."""
        t = jnp.asarray(t, jnp.float32)
        f = {"constant": lambda: jnp.float32(1.0),
             "linear": lambda: jnp.maximum(0.0, 1.0 - t / self.decay_steps),
             "exponential": lambda: jnp.exp(-t / self.decay_steps),
             "inverse": lambda: jnp.minimum(1.0, self.decay_steps / (t + 1.0))}[self.schedule]()
        return jnp.maximum(self.min_epsilon, self.epsilon * f)

    def init(self, env: BanditEnv, env_params) -> ArmStats:
        return ArmStats.zeros(env.num_arms)

    def select(self, state: ArmStats, key: jax.Array, contexts: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, (state.counts.shape[0] + 1,))
        explore = u[0] < self.epsilon_at(jnp.sum(state.counts))
        greedy = _argmax_random_tie(_untried_first(state.counts, state.means), u[1:])
        return jnp.where(explore, jnp.argmax(u[1:]), greedy).astype(jnp.int32)

    def update(self, state: ArmStats, key, arm, contexts, reward) -> ArmStats:
        return state.update(arm, reward)


@struct.dataclass
class UCB1:
    """UCB1 (Auer et al. 2002): index mean_a + c * (high - low) * sqrt(2 ln t / n_a) with t the
    rounds played; needs bounded rewards (the env's `reward_range`)."""

    c: float = 1.0

    def validate(self) -> None:
        check(self, {"c": NON_NEGATIVE})

    def check_env(self, env: BanditEnv, env_params) -> None:
        _require_bounded(env, env_params, "UCB1")

    def init(self, env: BanditEnv, env_params) -> ScaledStats:
        low, high = env.reward_range(env_params)
        return ScaledStats(ArmStats.zeros(env.num_arms), jnp.asarray(high - low, jnp.float32))

    def index(self, state: ScaledStats) -> jax.Array:
        """(num_arms,) UCB index; +inf for arms not yet played."""
        s = state.stats
        t = jnp.maximum(jnp.sum(s.counts), 1.0)
        bonus = self.c * state.scale * jnp.sqrt(2.0 * jnp.log(t) / jnp.maximum(s.counts, 1.0))
        return _untried_first(s.counts, s.means + bonus)

    def select(self, state: ScaledStats, key, contexts) -> jax.Array:
        index = self.index(state)
        return _argmax_random_tie(index, jax.random.uniform(key, index.shape)).astype(jnp.int32)

    def update(self, state: ScaledStats, key, arm, contexts, reward) -> ScaledStats:
        return state.replace(stats=state.stats.update(arm, reward))


@struct.dataclass
class Softmax:
    """Boltzmann exploration: arm a with probability proportional to exp(mean_a / temperature);
    `temperature` is in reward units."""

    temperature: float = 0.1

    def validate(self) -> None:
        check(self, {"temperature": POSITIVE})

    def check_env(self, env: BanditEnv, env_params) -> None:
        """Any bandit env (contexts are ignored)."""

    def init(self, env: BanditEnv, env_params) -> ArmStats:
        return ArmStats.zeros(env.num_arms)

    def select(self, state: ArmStats, key, contexts) -> jax.Array:
        gumbel = jax.random.gumbel(key, state.means.shape)
        untried = state.counts == 0
        scores = jnp.where(jnp.any(untried), jnp.where(untried, gumbel, -jnp.inf),
                           state.means / self.temperature + gumbel)
        return jnp.argmax(scores).astype(jnp.int32)

    def update(self, state: ArmStats, key, arm, contexts, reward) -> ArmStats:
        return state.update(arm, reward)


@struct.dataclass
class BernoulliThompson:
    """Beta-Bernoulli Thompson sampling. A bounded reward r in [low, high] becomes a Bernoulli
    trial with success probability (r - low) / (high - low) (Agrawal & Goyal 2012), which is r
    itself on a Bernoulli bandit; unbounded envs are refused. Posterior draws come from
    `sample_beta` (the law of `jax.random.beta`, several times faster)."""

    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def validate(self) -> None:
        check(self, {"prior_alpha": POSITIVE, "prior_beta": POSITIVE})

    def check_env(self, env: BanditEnv, env_params) -> None:
        _require_bounded(env, env_params, "BernoulliThompson (Beta-Bernoulli)")

    def init(self, env: BanditEnv, env_params) -> BetaState:
        low, high = env.reward_range(env_params)
        ones = jnp.ones(env.num_arms, jnp.float32)
        return BetaState(alpha=self.prior_alpha * ones, beta=self.prior_beta * ones,
                         low=jnp.asarray(low, jnp.float32), high=jnp.asarray(high, jnp.float32))

    def select(self, state: BetaState, key, contexts) -> jax.Array:
        return jnp.argmax(sample_beta(key, state.alpha, state.beta)).astype(jnp.int32)

    def update(self, state: BetaState, key, arm, contexts, reward) -> BetaState:
        p = jnp.clip((reward - state.low) / jnp.maximum(state.high - state.low, 1e-12), 0.0, 1.0)
        success = (jax.random.uniform(key) < p).astype(jnp.float32)
        pulled = jnp.arange(state.alpha.shape[0]) == arm
        return state.replace(alpha=state.alpha + jnp.where(pulled, success, 0.0),
                             beta=state.beta + jnp.where(pulled, 1.0 - success, 0.0))


def sample_beta(key: jax.Array, a: jax.Array, b: jax.Array, proposals: int = 3) -> jax.Array:
    """Beta(a, b) draws (float32, a and b > 0, broadcast together), exact: Ga / (Ga + Gb) with
    each gamma drawn by Marsaglia & Tsang's (2000) rejection method, in log space.

    Same law as `jax.random.beta` (other numbers), several times faster under vmap: every gamma
    tries `proposals` candidates at once, and only if some gamma in the batch rejected them all
    does a loop draw one more candidate for every gamma until each has accepted one (each keeps
    its first accepted candidate). `jax.random.gamma` instead loops per element with a key
    split on every try.
    """
    a, b = jnp.broadcast_arrays(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    log_g = _log_gamma(key, jnp.concatenate([a.reshape(-1), b.reshape(-1)]), proposals)
    log_ga, log_gb = log_g.reshape((2,) + a.shape)
    return jax.nn.sigmoid(log_ga - log_gb)  # Ga / (Ga + Gb), finite even when both underflow


def _log_gamma(key: jax.Array, alpha: jax.Array, proposals: int) -> jax.Array:
    """log of Gamma(alpha, 1) draws for a flat `alpha` > 0 (Marsaglia & Tsang), each drawn as
    Gamma(alpha + 1) * W^(1 / alpha) with W uniform: valid for alpha < 1, where the method itself
    fails, and above 1 it raises the acceptance rate (95% at shape 1, 98% at 2). W is the
    accepted candidate's own test uniform divided by its acceptance probability, which given
    acceptance is uniform and independent of the candidate, so it costs no random number."""
    d = alpha + 1.0 - 1.0 / 3.0
    c = jax.lax.rsqrt(9.0 * d)
    log_d, inv_alpha = jnp.log(d), 1.0 / alpha
    n = alpha.shape[0]

    def candidates(key, k):
        """(log gamma, accepted) of the first accepted of k candidates per gamma."""
        k_normal, k_uniform = jax.random.split(key)
        # flat draws: under vmap XLA on CPU generates them several times faster than 2-D ones
        x = jax.random.normal(k_normal, (k * n,)).reshape(k, n)
        log_u = jnp.log1p(-jax.random.uniform(k_uniform, (k * n,))).reshape(k, n)  # U in (0, 1]
        v = (1.0 + c * x) ** 3
        log_v = jnp.log(jnp.where(v > 0.0, v, 1.0))
        log_accept = 0.5 * x * x + d - d * v + d * log_v  # log P(accept | x), <= 0
        accepted = (v > 0.0) & (log_u < log_accept)
        log_g = log_d + log_v + (log_u - log_accept) * inv_alpha
        first, any_accepted = log_g[k - 1], accepted[k - 1]
        for i in range(k - 2, -1, -1):
            first = jnp.where(accepted[i], log_g[i], first)
            any_accepted = any_accepted | accepted[i]
        return first, any_accepted

    k_first, k_retry = jax.random.split(key)

    def retry(carry):
        log_g, done, i = carry
        new, new_ok = candidates(jax.random.fold_in(k_retry, i), 1)
        return jnp.where(done, log_g, new), done | new_ok, i + 1

    log_g, done = candidates(k_first, proposals)
    log_g, _, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[1]), retry, (log_g, done, 0))
    return log_g


@struct.dataclass
class GaussianThompson:
    """Gaussian Thompson sampling with a Normal(prior_mean, prior_std^2) prior on each arm's mean.

    Known noise (`estimate_noise=False`): rewards ~ N(mean, noise_std^2), conjugate Normal
    posterior. Estimated noise: Normal-inverse-gamma prior, with the noise variance a scaled
    inverse chi-square of `noise_prior_dof` pseudo-observations around noise_std^2 (and the mean
    prior std prior_std at that variance); the arm mean's posterior is then a Student t.
    """

    prior_mean: float = 0.0
    prior_std: float = 1.0
    noise_std: float = 1.0
    noise_prior_dof: float = 2.0
    estimate_noise: bool = struct.field(pytree_node=False, default=False)

    def validate(self) -> None:
        check(self, {"prior_mean": FINITE, "prior_std": POSITIVE, "noise_std": POSITIVE,
                     "noise_prior_dof": POSITIVE})

    def check_env(self, env: BanditEnv, env_params) -> None:
        """Any bandit env (contexts are ignored)."""

    def init(self, env: BanditEnv, env_params) -> ArmStats:
        return ArmStats.zeros(env.num_arms)

    def posterior(self, state: ArmStats) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`(loc, scale, dof)` per arm of the posterior of the arm mean: a Student t with `dof`
        degrees of freedom (dof = inf, i.e. Normal, for known noise)."""
        n, mean = state.counts, state.means
        if not self.estimate_noise:
            precision = 1.0 / self.prior_std**2 + n / self.noise_std**2
            loc = (self.prior_mean / self.prior_std**2 + n * mean / self.noise_std**2) / precision
            return loc, jax.lax.rsqrt(precision), jnp.full_like(n, jnp.inf)
        kappa0 = (self.noise_std / self.prior_std) ** 2
        alpha0 = self.noise_prior_dof / 2.0
        kappa, alpha = kappa0 + n, alpha0 + n / 2.0
        loc = (kappa0 * self.prior_mean + n * mean) / kappa
        beta = (alpha0 * self.noise_std**2 + state.sq_dev / 2.0
                + kappa0 * n * (mean - self.prior_mean) ** 2 / (2.0 * kappa))
        return loc, jnp.sqrt(beta / (alpha * kappa)), 2.0 * alpha

    def select(self, state: ArmStats, key, contexts) -> jax.Array:
        loc, scale, dof = self.posterior(state)
        if self.estimate_noise:
            z = jax.random.t(key, dof, loc.shape)
        else:
            z = jax.random.normal(key, loc.shape)
        return jnp.argmax(loc + scale * z).astype(jnp.int32)

    def update(self, state: ArmStats, key, arm, contexts, reward) -> ArmStats:
        return state.update(arm, reward)


class _DisjointLinear:
    """`check_env`, `init` and `update` of the disjoint linear algorithms (LinUCB, linear
    Thompson sampling): ridge regression per arm (`LinearState`) with penalty `regularization`,
    on contextual envs only."""

    def check_env(self, env: BanditEnv, env_params) -> None:
        _require_contextual(env, type(self).__name__)

    def init(self, env: BanditEnv, env_params) -> LinearState:
        k, d = env.num_arms, env.context_dim
        eye = jnp.broadcast_to(jnp.eye(d, dtype=jnp.float32), (k, d, d))
        return LinearState(a_inv=eye / self.regularization, b=jnp.zeros((k, d), jnp.float32))

    def update(self, state: LinearState, key, arm, contexts, reward) -> LinearState:
        return state.update(arm, contexts, reward)


@struct.dataclass
class LinUCB(_DisjointLinear):
    """Disjoint LinUCB (Li et al. 2010): index x_a^T theta_a + alpha * sqrt(x_a^T A_a^-1 x_a),
    ridge regression per arm with penalty `regularization`."""

    alpha: float = 1.0
    regularization: float = 1.0

    def validate(self) -> None:
        check(self, {"alpha": NON_NEGATIVE, "regularization": POSITIVE})

    def index(self, state: LinearState, contexts: jax.Array) -> jax.Array:
        mean, var = state.estimates(contexts)
        return mean + self.alpha * jnp.sqrt(var)

    def select(self, state: LinearState, key, contexts) -> jax.Array:
        index = self.index(state, contexts)
        return _argmax_random_tie(index, jax.random.uniform(key, index.shape)).astype(jnp.int32)


@struct.dataclass
class LinearThompson(_DisjointLinear):
    """Linear Thompson sampling, disjoint per arm: theta_a ~ N(theta_hat_a, v^2 A_a^-1). Only
    x_a^T theta_a matters and arms are independent, so the score of arm a is drawn exactly as
    N(x_a^T theta_hat_a, v^2 x_a^T A_a^-1 x_a), with no matrix square root."""

    v: float = 0.5
    regularization: float = 1.0

    def validate(self) -> None:
        check(self, {"v": NON_NEGATIVE, "regularization": POSITIVE})

    def select(self, state: LinearState, key, contexts) -> jax.Array:
        mean, var = state.estimates(contexts)
        z = jax.random.normal(key, mean.shape)
        return jnp.argmax(mean + self.v * jnp.sqrt(var) * z).astype(jnp.int32)


@struct.dataclass
class WindowState:
    """The last `window` pulls (a ring buffer; arm -1 marks an empty slot) and the reward scale."""

    arms: jax.Array  # (window,) int32
    rewards: jax.Array  # (window,)
    t: jax.Array  # () int32 rounds played
    scale: jax.Array  # () high - low of the env's rewards

    def stats(self, num_arms: int) -> tuple[jax.Array, jax.Array]:
        """(num_arms,) pull counts and reward sums within the window."""
        one_hot = (self.arms[:, None] == jnp.arange(num_arms)).astype(jnp.float32)
        return jnp.sum(one_hot, axis=0), self.rewards @ one_hot


@struct.dataclass
class DiscountedStats:
    """Discounted pull counts and reward sums: each round every arm's are multiplied by gamma,
    then the pulled arm's get 1 and the reward (Kocsis & Szepesvari 2006)."""

    counts: jax.Array  # (num_arms,)
    sums: jax.Array  # (num_arms,)
    scale: jax.Array  # () high - low of the env's rewards

    def update(self, gamma: jax.Array, arm: jax.Array, reward: jax.Array) -> "DiscountedStats":
        pulled = jnp.arange(self.counts.shape[0]) == arm
        return self.replace(counts=gamma * self.counts + pulled,
                            sums=gamma * self.sums + jnp.where(pulled, reward, 0.0))


@struct.dataclass
class SlidingWindowUCB:
    """Sliding-window UCB (Garivier & Moulines 2011), for rewards that change over time: UCB1's
    index on the last `window` rounds only, mean_a + c * (high - low) * sqrt(2 ln min(t, window)
    / n_a), with an arm unseen in the window played first. Needs bounded rewards."""

    c: float = 0.5
    window: int = struct.field(pytree_node=False, default=200)

    def validate(self) -> None:
        check(self, {"c": NON_NEGATIVE})
        check_value(self.window, int_at_least(1), "SlidingWindowUCB.window")

    def check_env(self, env: BanditEnv, env_params) -> None:
        _require_bounded(env, env_params, "SlidingWindowUCB")

    def init(self, env: BanditEnv, env_params) -> WindowState:
        low, high = env.reward_range(env_params)
        return WindowState(arms=jnp.full(self.window, -1, jnp.int32),
                           rewards=jnp.zeros(self.window, jnp.float32), t=jnp.int32(0),
                           scale=jnp.asarray(high - low, jnp.float32))

    def index(self, state: WindowState, num_arms: int) -> jax.Array:
        counts, sums = state.stats(num_arms)
        horizon = jnp.maximum(jnp.minimum(state.t, self.window), 1).astype(jnp.float32)
        n = jnp.maximum(counts, 1.0)
        return _untried_first(counts, sums / n + self.c * state.scale
                              * jnp.sqrt(2.0 * jnp.log(horizon) / n))

    def select(self, state: WindowState, key, contexts) -> jax.Array:
        index = self.index(state, contexts.shape[0])
        return _argmax_random_tie(index, jax.random.uniform(key, index.shape)).astype(jnp.int32)

    def update(self, state: WindowState, key, arm, contexts, reward) -> WindowState:
        slot = state.t % self.window
        return state.replace(arms=state.arms.at[slot].set(arm),
                             rewards=state.rewards.at[slot].set(reward), t=state.t + 1)


@struct.dataclass
class DiscountedUCB:
    """Discounted UCB (Kocsis & Szepesvari 2006; Garivier & Moulines 2011): UCB1's index on
    discounted statistics (`DiscountedStats`), mean_a + c * (high - low) * sqrt(2 ln n / n_a)
    with n_a the arm's discounted count and n their sum; an arm never played is played first.
    Memory is about 1 / (1 - gamma) rounds. Needs bounded rewards."""

    c: float = 0.5
    gamma: float = 0.995

    def validate(self) -> None:
        check(self, {"c": NON_NEGATIVE, "gamma": in_range(0, 1, low_open=True, high_open=True)})

    def check_env(self, env: BanditEnv, env_params) -> None:
        _require_bounded(env, env_params, "DiscountedUCB")

    def init(self, env: BanditEnv, env_params) -> DiscountedStats:
        low, high = env.reward_range(env_params)
        z = jnp.zeros(env.num_arms, jnp.float32)
        return DiscountedStats(z, z, jnp.asarray(high - low, jnp.float32))

    def index(self, state: DiscountedStats) -> jax.Array:
        total = jnp.maximum(jnp.sum(state.counts), 1.0)
        n = jnp.maximum(state.counts, 1e-12)
        bonus = self.c * state.scale * jnp.sqrt(2.0 * jnp.log(jnp.maximum(total, 1.0)) / n)
        return _untried_first(state.counts, state.sums / n + bonus)

    def select(self, state: DiscountedStats, key, contexts) -> jax.Array:
        index = self.index(state)
        return _argmax_random_tie(index, jax.random.uniform(key, index.shape)).astype(jnp.int32)

    def update(self, state: DiscountedStats, key, arm, contexts, reward) -> DiscountedStats:
        return state.update(self.gamma, arm, reward)


@struct.dataclass
class DiscountedThompson:
    """Discounted Thompson sampling (Raj & Kalyani 2017): Beta-Bernoulli Thompson sampling whose
    success and failure counts all decay by gamma each round, sampled from Beta(prior_alpha +
    successes, prior_beta + failures). Bounded rewards become Bernoulli trials as in
    `BernoulliThompson`; unbounded envs are refused."""

    gamma: float = 0.99
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def validate(self) -> None:
        check(self, {"gamma": in_range(0, 1, low_open=True, high_open=True),
                     "prior_alpha": POSITIVE, "prior_beta": POSITIVE})

    def check_env(self, env: BanditEnv, env_params) -> None:
        _require_bounded(env, env_params, "DiscountedThompson")

    def init(self, env: BanditEnv, env_params) -> BetaState:
        low, high = env.reward_range(env_params)
        z = jnp.zeros(env.num_arms, jnp.float32)  # discounted successes and failures
        return BetaState(alpha=z, beta=z, low=jnp.asarray(low, jnp.float32),
                         high=jnp.asarray(high, jnp.float32))

    def select(self, state: BetaState, key, contexts) -> jax.Array:
        draw = jax.random.beta(key, self.prior_alpha + state.alpha, self.prior_beta + state.beta)
        return jnp.argmax(draw).astype(jnp.int32)

    def update(self, state: BetaState, key, arm, contexts, reward) -> BetaState:
        p = jnp.clip((reward - state.low) / jnp.maximum(state.high - state.low, 1e-12), 0.0, 1.0)
        success = (jax.random.uniform(key) < p).astype(jnp.float32)
        pulled = jnp.arange(state.alpha.shape[0]) == arm
        return state.replace(alpha=self.gamma * state.alpha + jnp.where(pulled, success, 0.0),
                             beta=self.gamma * state.beta + jnp.where(pulled, 1.0 - success, 0.0))


def make_run(algo, env: BanditEnv, env_params, num_rounds: int):
    """`run(key) -> (final algorithm state, metrics)`: `num_rounds` rounds of `algo` on the bandit
    `env` in one `lax.scan`. Metrics are per-round arrays of shape (num_rounds,): `reward`,
    `regret` (pseudo-regret from the env), `cumulative_regret`, `arm`, `optimal_arm_chosen`.
    The env's episodes play no part: rounds go through `env.step_env` with no auto-reset, since
    a bandit's arms never change (a reset would only redraw the contexts, from the same law)."""
    if not isinstance(env, BanditEnv):
        raise ValueError(f"bandit algorithms need a bandit env (arms, contexts and reward range, "
                         f"as in ecomrl_jax.envs.bandits.bandit_envs); got "
                         f"{getattr(env, 'name', type(env).__name__)}")
    check_value(num_rounds, int_at_least(1), "num_rounds")
    algo.validate()
    algo.check_env(env, env_params)

    def one_round(carry, keys):
        obs, env_state, state = carry
        k_select, k_update, k_env = keys
        contexts = env.arm_contexts(obs)
        arm = algo.select(state, k_select, contexts)
        obs, env_state, reward, _, info = env.step_env(k_env, env_state, arm, env_params)
        state = algo.update(state, k_update, arm, contexts, reward)
        metrics = {"reward": reward, "regret": info["regret"], "arm": arm,
                   "optimal_arm_chosen": info["optimal_arm_chosen"]}
        return (obs, env_state, state), metrics

    def run(key):
        k_reset, k_rounds = jax.random.split(key)
        obs, env_state = env.reset(k_reset, env_params)
        carry = (obs, env_state, algo.init(env, env_params))
        keys = jax.random.split(k_rounds, (num_rounds, 3))
        (_, _, state), metrics = jax.lax.scan(one_round, carry, keys)
        metrics["cumulative_regret"] = jnp.cumsum(metrics["regret"])
        return state, metrics

    return run


def lai_robbins_constant(means) -> float:
    """sum over suboptimal arms of Delta_a / KL(mu_a, mu*) for Bernoulli arms: regret of any
    consistent algorithm is at least this times log t, asymptotically (Lai & Robbins 1985)."""
    means = np.asarray(means, np.float64)
    best = means.max()
    if not 0.0 < best < 1.0:
        raise ValueError(f"the bound needs the best mean in (0, 1), got {best}")
    total = 0.0
    for mu in means[means < best]:
        kl = ((mu * math.log(mu / best) if mu > 0 else 0.0)
              + (1 - mu) * math.log((1 - mu) / (1 - best)))
        total += (best - mu) / kl
    return total


def _untried_first(counts: jax.Array, values: jax.Array) -> jax.Array:
    return jnp.where(counts == 0, jnp.inf, values)


def _argmax_random_tie(values: jax.Array, u: jax.Array) -> jax.Array:
    """Index of a maximum of `values`, uniformly among ties (by the largest `u` among them)."""
    return jnp.argmax(jnp.where(values == jnp.max(values), u, -1.0))


def _require_bounded(env: BanditEnv, env_params, algo_name: str) -> None:
    if env.reward_range(env_params) is None:
        raise ValueError(f"{algo_name} needs bounded rewards, but {env.name} rewards are "
                         "unbounded; use GaussianThompson, EpsilonGreedy or Softmax there")


def _require_contextual(env: BanditEnv, algo_name: str) -> None:
    if not env.is_contextual:
        raise ValueError(f"{algo_name} needs a contextual env (e.g. ContextualLinearBandit-v0); "
                         f"{env.name} has no contexts")
