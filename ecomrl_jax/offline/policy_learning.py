"""Offline policy learning: a softmax policy trained from a `LoggedBandit` alone.

The policy is a Flax MLP from the context to item logits. Training maximises an off-policy
estimate of its own value on the log, IPW or doubly robust (`estimators.ipw` / `estimators.dr`
of the policy's action distribution; DR also takes a reward model's predictions `q_hat`), by
optax Adam on random minibatches inside one `lax.scan`. The estimate is differentiable in the
policy's probabilities, so this is the policy gradient of the estimated value (the IPW/DR
policy-gradient learners of Swaminathan & Joachims 2015 and Dudik et al. 2011).

Slates (len_list > 1) take one of two policy forms: `"plackett-luce"` ranks items by one
softmax, its position-wise distribution exact by enumerating slates (`collect.position_marginals`;
a policy a simulator can run), or `"per-position"`, one softmax over items per position (obp's
`IPWLearner`; for catalogues too large to enumerate, such as OBD's 80 items; not a sampler of
slates of distinct items).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn
import optax
from flax import struct

from ecomrl_jax import rules
from ecomrl_jax.learners.networks import MLP
from ecomrl_jax.offline import estimators
from ecomrl_jax.offline.collect import position_marginals
from ecomrl_jax.offline.data import LoggedBandit

OBJECTIVES = ("ipw", "dr")
SLATE_FORMS = ("plackett-luce", "per-position")


@struct.dataclass
class PolicyLearner:
    """Hyperparameters of offline policy learning (all static)."""

    objective: str = struct.field(pytree_node=False, default="dr")  # one of OBJECTIVES
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(64,))  # () = linear softmax
    slate: str = struct.field(pytree_node=False, default="plackett-luce")  # one of SLATE_FORMS
    num_steps: int = struct.field(pytree_node=False, default=2000)  # Adam steps
    batch_size: int = struct.field(pytree_node=False, default=512)  # rows per step
    learning_rate: float = struct.field(pytree_node=False, default=3e-3)
    l2: float = struct.field(pytree_node=False, default=1e-4)  # penalty on the weights
    item_features: int = struct.field(pytree_node=False, default=0)  # see PolicyNetwork

    def validate(self) -> "PolicyLearner":
        rules.check(self, RULES)
        for name, value, valid in (("objective", self.objective, OBJECTIVES),
                                   ("slate", self.slate, SLATE_FORMS)):
            if value not in valid:
                raise ValueError(f"PolicyLearner.{name} must be one of {list(valid)}, got {value!r}")
        if not all(isinstance(w, int) and w >= 1 for w in self.hidden):
            raise ValueError(f"PolicyLearner.hidden must be a tuple of positive ints, got {self.hidden!r}")
        return self


RULES = {"num_steps": rules.POSITIVE_INT, "batch_size": rules.POSITIVE_INT,
         "learning_rate": rules.POSITIVE, "l2": rules.NON_NEGATIVE,
         "item_features": rules.NON_NEGATIVE_INT}


class PolicyNetwork(nn.Module):
    """Logits (..., num_actions, per_action) of contexts (..., d): an MLP of the whole context,
    or with `item_features` > 0 one MLP shared by the items that scores item k from its own
    features (context columns [k * item_features, (k + 1) * item_features)) and the columns after
    all items' (ShopperRec's flattened observation starts with its candidates' features)."""

    hidden: tuple[int, ...]
    num_actions: int
    per_action: int
    item_features: int

    @nn.compact
    def __call__(self, x):
        k, f = self.num_actions, self.item_features
        if not f:
            return MLP((*self.hidden, k * self.per_action))(x).reshape(*x.shape[:-1], k, self.per_action)
        items = x[..., :k * f].reshape(*x.shape[:-1], k, f)
        rest = jnp.broadcast_to(x[..., None, k * f:], (*x.shape[:-1], k, x.shape[-1] - k * f))
        return MLP((*self.hidden, self.per_action))(jnp.concatenate([items, rest], axis=-1))


@struct.dataclass
class LearnedPolicy:
    """Trained network weights and the context scale they expect."""

    params: dict
    scale: jax.Array  # (d,) divides the context (largest |value| of each column in the log)
    config: PolicyLearner = struct.field(pytree_node=False)
    num_actions: int = struct.field(pytree_node=False)
    len_list: int = struct.field(pytree_node=False)

    @property
    def network(self) -> PolicyNetwork:
        per_position = self.config.slate == "per-position" and self.len_list > 1
        return PolicyNetwork(self.config.hidden, self.num_actions,
                             self.len_list if per_position else 1, self.config.item_features)

    def probs(self, context: jax.Array) -> jax.Array:
        """(num_actions,) item probabilities for one context: a `collect.Policy` (a Plackett-Luce
        ranking for slates). Per-position slate policies have no single ranking: use `action_dist`."""
        if self.network.per_action > 1:
            raise ValueError("a per-position slate policy has one distribution per position; "
                             "use action_dist")
        return jax.nn.softmax(self.network.apply(self.params, context / self.scale)[:, 0])

    def __call__(self, context: jax.Array) -> jax.Array:
        """`probs`: a learned policy is a `collect.Policy` (a pytree, so jitted code takes it as an
        argument and new weights reuse the compilation)."""
        return self.probs(context)

    def action_dist(self, context: jax.Array) -> jax.Array:
        """(n, num_actions, len_list) position-wise action distribution on contexts (n, d)."""
        logits = self.network.apply(self.params, context / self.scale)
        if self.network.per_action > 1:
            return jax.nn.softmax(logits, axis=1)
        return jax.vmap(lambda x: position_marginals(jax.nn.softmax(x), self.len_list))(logits[..., 0])


def learn(config: PolicyLearner, data: LoggedBandit, key: jax.Array,
          q_hat: jax.Array | None = None) -> LearnedPolicy:
    """Train a policy on `data` by maximising its IPW or DR estimate (`q_hat` (n, num_actions,
    len_list), a reward model's cross-fitted predictions, e.g. `reward_models.fit_predict`, for DR)."""
    config.validate()
    if config.objective == "dr":
        if q_hat is None:
            raise ValueError("PolicyLearner objective 'dr' needs reward-model predictions q_hat")
        estimators.check_q_hat(q_hat, data)
    else:
        q_hat = None
    return _learn(config, data, key, q_hat)


@jax.jit
def _learn(config, data, key, q_hat):
    top = jnp.abs(data.context).max(axis=0)
    template = LearnedPolicy(params={}, scale=jnp.where(top > 0, top, 1.0), config=config,
                             num_actions=data.num_actions, len_list=data.len_list)
    k_init, k_steps = jax.random.split(key)
    params = template.network.init(k_init, jnp.zeros((1, data.context.shape[1])))
    optimiser = optax.adam(config.learning_rate)
    value_fn = estimators.dr if config.objective == "dr" else estimators.ipw

    def loss(params, rows):
        batch = jax.tree.map(lambda x: x[rows], data)
        dist = template.replace(params=params).action_dist(batch.context)
        terms = estimators.row_terms(batch, dist, None if q_hat is None else q_hat[rows])
        decay = sum(jnp.sum(w ** 2) for w in jax.tree.leaves(params) if w.ndim == 2)
        return -value_fn(terms) + 0.5 * config.l2 * decay

    def step(carry, key):
        params, opt_state = carry
        rows = jax.random.randint(key, (config.batch_size,), 0, data.n_rows)
        value, grads = jax.value_and_grad(loss)(params, rows)
        updates, opt_state = optimiser.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)),
                                  jax.random.split(k_steps, config.num_steps))
    return template.replace(params=params)

