"""Reward models q_hat(x, a, position) for the direct method and doubly robust estimators.

As in obp's `RegressionModel`, each slate position has its own model of the reward given the
features `[context, action_context[a]]` (one-hot items when a log has no item features), and
K-fold cross-fitting (`num_folds` > 1) predicts each row with the models not trained on its fold.
The model is logistic regression (`hidden=()`) or a small Flax MLP (`networks.MLP`), trained
full-batch with optax Adam inside `lax.scan`; `link="logistic"` fits rewards in [0, 1] (clicks) by
cross-entropy through a sigmoid, `link="identity"` fits any reward by squared error. Training runs
vmapped over folds and positions: one compiled program fits all K x len_list models.
"""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ecomrl_jax import rules
from ecomrl_jax.learners.networks import MLP
from ecomrl_jax.offline.data import LoggedBandit

LINKS = ("logistic", "identity")
PREDICT_ELEMENTS = 2 ** 24  # (row, item, feature) inputs per prediction chunk, to bound memory


@struct.dataclass
class RewardModel:
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=())  # () = logistic regression
    link: str = struct.field(pytree_node=False, default="logistic")
    num_folds: int = struct.field(pytree_node=False, default=1)  # 1 = fit and predict on all rows (obp)
    num_steps: int = struct.field(pytree_node=False, default=500)  # full-batch Adam steps
    learning_rate: float = 0.05
    l2: float = 1e-3  # L2 penalty on the weights (not the biases) added to the mean loss

    def validate(self) -> "RewardModel":
        rules.check(self, RULES)
        if self.link not in LINKS:
            raise ValueError(f"RewardModel.link must be one of {list(LINKS)}, got {self.link!r}")
        if not all(isinstance(w, int) and w >= 1 for w in self.hidden):
            raise ValueError(f"RewardModel.hidden must be a tuple of positive ints, got {self.hidden!r}")
        return self


RULES = {"num_folds": rules.POSITIVE_INT, "num_steps": rules.POSITIVE_INT,
         "learning_rate": rules.POSITIVE, "l2": rules.NON_NEGATIVE}


def _item_features(data: LoggedBandit) -> jax.Array:
    """(num_actions, d_a) item features: the log's action_context, else one-hot items (obp)."""
    if data.action_context is None:
        return jnp.eye(data.num_actions, dtype=jnp.float32)
    return data.action_context


def _scale(x: jax.Array, reference: jax.Array) -> jax.Array:
    """Columns of `x` divided by `reference`'s largest |value| (all-zero columns by 1): one-hot
    features stay 0/1 (standardising would blow rare categories up), numeric ones fall in [-1, 1]."""
    top = jnp.abs(reference).max(axis=0)
    return x / jnp.where(top > 0, top, 1.0)


def fold_ids(key: jax.Array, n: int, num_folds: int) -> jax.Array:
    """(n,) fold of each row: a random permutation dealt round-robin, so folds differ in size by <= 1."""
    return (jnp.argsort(jax.random.permutation(key, n)) % num_folds).astype(jnp.int32)


@partial(jax.jit, static_argnums=0)
def fit_predict(model: RewardModel, data: LoggedBandit, key: jax.Array) -> jax.Array:
    """(n, num_actions, len_list) predicted reward of every item at every position in every row,
    cross-fitted over `model.num_folds` folds (jitted, `model` static)."""
    chex.assert_rank(data.context, 2)
    n, num_actions, len_list = data.n_rows, data.num_actions, data.len_list
    k_fold, k_init = jax.random.split(key)
    items = _item_features(data)
    context = _scale(data.context, data.context)
    items = _scale(items, items[data.action])  # scaled as the logged rows see them
    net = MLP((*model.hidden, 1))
    init_params = net.init(k_init, jnp.zeros((1, context.shape[1] + items.shape[1])))
    logged = jnp.concatenate([context, items[data.action]], axis=1)  # (n, d + d_a)
    folds = fold_ids(k_fold, n, model.num_folds) if model.num_folds > 1 else jnp.zeros(n, jnp.int32)

    def loss(params, rows_weight):
        out = net.apply(params, logged)[:, 0]
        if model.link == "logistic":
            per_row = optax.sigmoid_binary_cross_entropy(out, data.reward)
        else:
            per_row = (out - data.reward) ** 2
        decay = sum(jnp.sum(w ** 2) for w in jax.tree.leaves(params["params"]) if w.ndim == 2)  # kernels
        return jnp.sum(rows_weight * per_row) / jnp.maximum(jnp.sum(rows_weight), 1.0) + 0.5 * model.l2 * decay

    optimiser = optax.adam(model.learning_rate)

    def train(rows_weight):
        # start from the constant model (the output bias at the link of the mean reward): Adam
        # would take thousands of steps to move a logit to OBD's click rate of 0.4%
        mean = jnp.sum(rows_weight * data.reward) / jnp.maximum(jnp.sum(rows_weight), 1.0)
        bias = jax.scipy.special.logit(jnp.clip(mean, 1e-4, 1 - 1e-4)) if model.link == "logistic" else mean
        params = jax.tree.map(lambda x: x, init_params)  # a copy to set the bias in
        params["params"][f"Dense_{len(model.hidden)}"]["bias"] = jnp.full((1,), bias)

        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params, rows_weight)
            updates, opt_state = optimiser.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None
        (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, model.num_steps)
        return params

    # rows each (fold, position) model trains on: its position, outside its fold (all rows if one fold)
    in_train = (folds[None, :] != jnp.arange(model.num_folds)[:, None]) | (model.num_folds == 1)
    at_position = data.position[None, :] == jnp.arange(len_list)[:, None]
    weights = (in_train[:, None, :] & at_position[None, :, :]).astype(jnp.float32)  # (K, L, n)
    params = jax.vmap(jax.vmap(train))(weights)

    def predict_row(x, fold):
        pairs = jnp.concatenate([jnp.broadcast_to(x, (num_actions, x.shape[0])), items], axis=1)
        out = jax.vmap(jax.vmap(lambda p: net.apply(p, pairs)[:, 0]))(params)[fold]  # (L, A)
        return (jax.nn.sigmoid(out) if model.link == "logistic" else out).T

    chunk = max(1, PREDICT_ELEMENTS // (num_actions * logged.shape[1] * model.num_folds * len_list))
    return jax.lax.map(lambda row: predict_row(*row), (context, folds), batch_size=min(n, chunk))


def check_rewards(model: RewardModel, data: LoggedBandit) -> None:
    """Outside jit: the logistic link needs rewards in [0, 1] and every position needs rows."""
    model.validate()
    reward = np.asarray(data.reward)
    if model.link == "logistic" and (reward.min() < 0 or reward.max() > 1):
        raise ValueError(f"RewardModel link 'logistic' fits rewards in [0, 1], got range "
                         f"[{reward.min():g}, {reward.max():g}]; use link='identity'")
    empty = sorted(set(range(data.len_list)) - set(np.unique(np.asarray(data.position)).tolist()))
    if empty:
        raise ValueError(f"no logged rows at positions {empty}: a reward model per position needs data")
