"""SlateQ (Ie et al., IJCAI 2019): slate Q-values decomposed into item Q-values weighted by
the user's choice model, for Slate (and Discrete) actions.

Decomposition: a user shown slate A at observation x picks item i of A, or nothing (⊥), by
a multinomial proportional choice model with position weights, P(A_j | x, A) = b_j w_{A_j} /
(w_0 + sum_l b_l w_{A_l}) (w_i the candidates' weights, b_j slot j's, w_0 the no-click weight;
RecSim's model has every b_j = 1, a logit with position bias has b_j = exp(-bias * j)), and the
slate's value is
Q(x, A) = sum_{i in A} P(i | x, A) Qbar(x, i) + P(⊥ | x, A) Qbar(x, ⊥). The network learns the
item values Qbar (one per candidate and one for ⊥) by temporal differences on the item the user
chose: Qbar(x, c) <- r + gamma * V(x'), with V(x') = max_A' Q(x', A') (Q-learning; with
`double_q` the online net picks A' and the target net values it) or Q(x', A') of the next
shown slate (SARSA; the optimiser's slate where the episode ended, as after a time limit). Myopic SlateQ is gamma = 0: it maximises the expected immediate reward.
RecSim's SlateQ agent fixes Qbar(x, ⊥) = 0 and learns from clicks only; here ⊥ is learned like
an item, since a step without a click still moves the session on (and costs it budget).

Slate optimisation (`slate_optimizer`, also used for the epsilon-greedy action): "exact"
maximises the linear-fractional Q(x, A) over slates of k distinct candidates by Dinkelbach's
iteration (the paper solves the same problem as a linear program); "top_k" takes the k largest
w_i Qbar(x, i) and "greedy" adds one item at a time, each maximising the partial slate's value
(the paper's two approximations); each puts its best item at the slot of largest weight.

Choice model (`choice_model`): "env" reads the env's hook; "learned" fits
`UserItemChoiceModel`, a logit bilinear in user and item features with a bias per slot, to
the picks in the replay (maximum likelihood, alongside the TD loss), and uses it in place of
the hook, so SlateQ also runs on an env that has none.

Env interface: a Box observation (1 + C, F), row 0 the user and row 1 + i candidate i (as
InterestEvolution-v0 and `UserItemShopperRec` have); a Slate (or Discrete) action over the C
candidates; for `choice_model="env"` the known choice model as a method
`env.choice_model(obs, env_params) -> (weights (C,), no-click weight, slot weights (k,))`;
and `info["slot_clicks"]` (slate_size,), a one-hot of the clicked slot (zeros when nothing was
clicked). Replay and target network as in `dqn`; one-step targets; a terminated
step does not bootstrap, a truncated one bootstraps from its final observation.
"""

import functools
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from ecomrl_jax.learners.config import (REPLAY_RULES, ReplayConfig, check_bools, check_choice,
                                        make_optimizer)
from ecomrl_jax.learners.dqn import RunnerState, TrainState, epsilon, make_replay_update
from ecomrl_jax.learners.loop import Learner, make_env_loop, train_fn
from ecomrl_jax.learners.networks import MLP
from ecomrl_jax.learners.replay import buffer_add, buffer_init, buffer_sample
from ecomrl_jax.rules import in_range
from ecomrl_jax.spaces import Slate

TARGETS = ("q_learning", "sarsa")
CHOICE_MODELS = ("env", "learned")
RISE = 1e-6  # Dinkelbach's iteration stops on a smaller rise (relative, see `exact_slate`)


# --- the decomposition and slate optimisation: pure functions of one observation ------------

def slate_choice_probabilities(weights, no_click_weight, slot_weights, slate):
    """P(the user picks slot j) for each slot of `slate` (k,), then P(no click): (k + 1,).
    Candidate i shown at slot j weighs w_i b_j (`slot_weights` b, one per slot)."""
    chex.assert_rank([weights, no_click_weight, slot_weights, slate], [1, 0, 1, 1])
    chex.assert_equal_shape([slot_weights, slate])
    chex.assert_type(slate, int)
    slate_weights = jnp.append(weights[slate] * slot_weights, no_click_weight)
    return slate_weights / jnp.sum(slate_weights)


def slate_value(q, weights, no_click_weight, slot_weights, slate):
    """Q(x, A) = sum_{i in A} P(i | x, A) Qbar(x, i) + P(⊥ | x, A) Qbar(x, ⊥); `q` (C + 1,) holds
    the candidates' item values, then the no-click value."""
    chex.assert_rank(q, 1)
    chex.assert_axis_dimension(q, 0, weights.shape[0] + 1)
    probs = slate_choice_probabilities(weights, no_click_weight, slot_weights, slate)
    return jnp.dot(probs, q[jnp.append(slate, q.shape[0] - 1)])


def _place(ranked, slot_weights):
    """The slate showing `ranked` (best first) with the best at the slot of largest weight, the
    next at the next largest, ...: the order that maximises sum_j b_j x_j for x sorted
    descending (rearrangement inequality)."""
    order = jnp.argsort(-slot_weights, stable=True)
    return jnp.zeros_like(ranked).at[order].set(ranked)


def exact_slate(q, weights, no_click_weight, slot_weights):
    """The slate of `len(slot_weights)` distinct candidates maximising `slate_value`, by
    Dinkelbach's iteration: for the best value R so far, the slate maximising
    w_0 (Qbar_⊥ - R) + sum_j b_j w_{A_j} (Qbar_{A_j} - R) is the top k of w_i (Qbar_i - R), the
    largest at the slot of largest b (`_place`); its value is the next R; stop when R no longer
    rises by more than `RISE` (1 + |R|) (it rises strictly, over finitely many slates; the
    tolerance keeps float rounding from reading one slate's value as a rise over another's and
    back, forever)."""
    chex.assert_rank([q, weights, no_click_weight, slot_weights], [1, 1, 0, 1])

    def best_slate(r):
        return _place(jax.lax.top_k(weights * (q[:-1] - r), slot_weights.shape[0])[1], slot_weights)

    def improve(carry):
        r, slate, _ = carry
        new_slate = best_slate(r)
        new_r = slate_value(q, weights, no_click_weight, slot_weights, new_slate)
        better = new_r > r + RISE * (1.0 + jnp.abs(r))
        return jnp.where(better, new_r, r), jnp.where(better, new_slate, slate), better

    slate = best_slate(q[-1])
    start = (slate_value(q, weights, no_click_weight, slot_weights, slate), slate, jnp.bool_(True))
    return jax.lax.while_loop(lambda carry: carry[2], improve, start)[1].astype(jnp.int32)


def top_k_slate(q, weights, no_click_weight, slot_weights):
    """The `len(slot_weights)` candidates with the largest w_i Qbar(x, i) (the paper's top-k),
    the largest at the slot of largest weight."""
    chex.assert_rank([q, weights, slot_weights], 1)
    ranked = jax.lax.top_k(weights * q[:-1], slot_weights.shape[0])[1]
    return _place(ranked, slot_weights).astype(jnp.int32)


def greedy_slate(q, weights, no_click_weight, slot_weights):
    """Fill the slots from the largest weight down, each with the candidate that maximises the
    value of the slate so far with it there (the paper's greedy)."""
    chex.assert_rank([q, weights, no_click_weight, slot_weights], [1, 1, 0, 1])
    numerator, denominator = no_click_weight * q[-1], no_click_weight
    taken = jnp.zeros(weights.shape, bool)
    order = jnp.argsort(-slot_weights, stable=True)
    slate = jnp.zeros(slot_weights.shape, jnp.int32)
    for j in range(slot_weights.shape[0]):
        shown = weights * slot_weights[order[j]]
        values = (numerator + shown * q[:-1]) / (denominator + shown)
        item = jnp.argmax(jnp.where(taken, -jnp.inf, values))
        numerator, denominator = numerator + shown[item] * q[item], denominator + shown[item]
        taken = taken.at[item].set(True)
        slate = slate.at[order[j]].set(item)
    return slate


SLATE_OPTIMIZERS = {"exact": exact_slate, "top_k": top_k_slate, "greedy": greedy_slate}


def item_target(reward, discount, next_q, next_weights, next_no_click_weight, next_slot_weights,
                next_slate):
    """The chosen item's TD target r + discount * Q(x', A') (`discount` is gamma, 0 where the
    episode terminated)."""
    chex.assert_rank([reward, discount], 0)
    return reward + discount * slate_value(next_q, next_weights, next_no_click_weight,
                                           next_slot_weights, next_slate)


def chosen_item(slate, slot_clicks, num_candidates: int):
    """Index into the item values (C + 1,) of what the user picked: the clicked slot's
    candidate, or C (⊥) when no slot was clicked."""
    chex.assert_rank([slate, slot_clicks], 1)
    chex.assert_equal_shape([slate, slot_clicks])
    clicked = slot_clicks > 0
    return jnp.where(jnp.any(clicked), slate[jnp.argmax(clicked)], num_candidates).astype(jnp.int32)


def choice_weights(item_logits, slot_logits):
    """`(weights, no-click weight, slot weights)` of a multinomial logit with candidate logits
    `item_logits` (C,), no-click logit 0 and slot logits `slot_logits` (k,), scaled by a common
    factor (which leaves every choice probability unchanged) so that none overflows."""
    chex.assert_rank([item_logits, slot_logits], 1)
    top = jnp.maximum(jnp.max(item_logits) + jnp.max(slot_logits), 0.0)
    return jnp.exp(item_logits - top), jnp.exp(-top), jnp.exp(slot_logits)


def choice_log_likelihood(item_logits, slot_logits, slate, chosen):
    """log P(the user's pick) under the logit model of `choice_weights` for the shown `slate`:
    `chosen` is a candidate of the slate, or C (no click)."""
    chex.assert_rank([item_logits, slot_logits, slate, chosen], [1, 1, 1, 0])
    logits = jnp.append(item_logits[slate] + slot_logits, 0.0)
    picked = jnp.append(slate == chosen, jnp.all(slate != chosen))
    return jnp.sum(jnp.where(picked, jax.nn.log_softmax(logits), 0.0))


# --- network, config, learner ---------------------------------------------------------------

class UserItemQNetwork(nn.Module):
    """Item values (..., C + 1) of an observation (..., 1 + C, F): candidate i's is an MLP of
    [user, candidate, user * candidate] (the same MLP for every candidate, so the values are
    permutation-equivariant), the no-click value an MLP of the user row."""

    hidden_size: int = 64

    @nn.compact
    def __call__(self, obs):
        h = self.hidden_size
        user = jnp.broadcast_to(obs[..., :1, :], obs[..., 1:, :].shape)
        items = jnp.concatenate([user, obs[..., 1:, :], user * obs[..., 1:, :]], axis=-1)
        item_q = MLP((h, h, 1))(items)[..., 0]
        return jnp.concatenate([item_q, MLP((h, h, 1))(obs[..., 0, :])], axis=-1)


class UserItemChoiceModel(nn.Module):
    """A learned multinomial logit of the user's pick, `(item logits (..., C), slot logits (k,))`
    of an observation (..., 1 + C, F) for `choice_weights`: candidate i's logit is
    u^T W c_i + a . c_i + b . u + bias (u the user row, c_i the candidate's), slot j's a learned
    position bias (slot 0's fixed at 0), no click 0. Bilinear in user and item features, so it
    holds ShopperRec-v0's true model when the user row is the interest."""

    slate_size: int

    @nn.compact
    def __call__(self, obs):
        user, items = obs[..., 0, :], obs[..., 1:, :]
        features = obs.shape[-1]
        interaction = self.param("interaction", nn.initializers.zeros, (features, features))
        item_logits = (jnp.einsum("...f,fg,...cg->...c", user, interaction, items)
                       + nn.Dense(1)(items)[..., 0] + nn.Dense(1, use_bias=False)(user))
        slot_logits = self.param("slot_logits", nn.initializers.zeros, (self.slate_size - 1,))
        return item_logits, jnp.append(jnp.zeros(1, slot_logits.dtype), slot_logits)


@struct.dataclass
class SlateQConfig(ReplayConfig):
    """SlateQ hyperparameters: the shared replay fields (`config.ReplayConfig`: epsilon
    schedule, target network, replay ratio), sized here for InterestEvolution-v0 (10 candidates,
    slate 2) on a 2-core CPU, and SlateQ's own. `gamma` 0 is myopic SlateQ."""

    num_envs: int = struct.field(pytree_node=False, default=16)
    buffer_size: int = struct.field(pytree_node=False, default=20_000)  # transitions, all envs
    batch_size: int = struct.field(pytree_node=False, default=64)
    learning_starts: int = struct.field(pytree_node=False, default=2_000)  # env steps, all envs
    train_frequency: int = struct.field(pytree_node=False, default=1)  # steps per env per update
    hidden_size: int = struct.field(pytree_node=False, default=64)
    target: str = struct.field(pytree_node=False, default="q_learning")  # or "sarsa"
    slate_optimizer: str = struct.field(pytree_node=False, default="exact")  # or "top_k", "greedy"
    choice_model: str = struct.field(pytree_node=False, default="env")  # or "learned"
    double_q: bool = struct.field(pytree_node=False, default=True)

    window = 2  # a replay sample is a (transition, next transition) pair

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field; traced (vmapped) values are skipped."""
        check_choice(self, "target", TARGETS)
        check_choice(self, "slate_optimizer", SLATE_OPTIMIZERS)
        check_choice(self, "choice_model", CHOICE_MODELS)
        check_bools(self, "double_q")
        self.check_replay(SLATEQ_RULES)


SLATEQ_RULES = {**REPLAY_RULES, "gamma": in_range(0, 1, high_open=True)}  # 0: myopic


class Transition(NamedTuple):
    obs: jax.Array  # observation the slate was shown in
    slate: jax.Array  # (slate_size,) shown candidates
    chosen: jax.Array  # the candidate picked, or C for no click (int32)
    reward: jax.Array
    terminated: jax.Array  # the MDP ended: no bootstrap
    done: jax.Array  # terminated or truncated: the next row is another episode
    final_obs: jax.Array  # the step's true next observation (pre-reset where the episode ended)


def env_spec(env, env_params, needs_choice_model: bool = True) -> tuple[int, int]:
    """`(num_candidates, slate_size)` of an env SlateQ supports (slate_size 0 for a Discrete
    action); a ValueError that says what is missing otherwise (the choice-model hook only if
    `needs_choice_model`)."""
    space = env.action_space(env_params)
    if isinstance(space, Slate):
        num_candidates, slate_size = space.n, space.slate_size
    elif isinstance(space, spaces.Discrete):
        num_candidates, slate_size = space.n, 0
    else:
        raise ValueError(f"SlateQ needs a Slate or Discrete action space; {env.name} has {space!r}")
    obs_space = env.observation_space(env_params)
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 2 \
            or obs_space.shape[0] != num_candidates + 1:
        raise ValueError(f"SlateQ needs a Box observation (1 + num_candidates, features) = "
                         f"({num_candidates + 1}, F), row 0 the user; {env.name} has {obs_space!r}")
    if needs_choice_model and not callable(getattr(env, "choice_model", None)):
        raise ValueError(f"SlateQ with choice_model='env' needs the env's choice model, a method "
                         f"env.choice_model(obs, env_params) -> (weights, no_click_weight, "
                         f"slot_weights); {env.name} has none (use choice_model='learned')")
    key = jax.random.key(0)
    obs, state = jax.eval_shape(env.reset, key, env_params)
    info = jax.eval_shape(env.step, key, state, space.sample(key), env_params)[-1]
    if "slot_clicks" not in info or info["slot_clicks"].shape != (max(slate_size, 1),):
        raise ValueError(f"SlateQ needs info['slot_clicks'] of shape ({max(slate_size, 1)},), a "
                         f"one-hot of the clicked slot; {env.name}'s info has "
                         f"{ {k: v.shape for k, v in info.items() if hasattr(v, 'shape')} }")
    return num_candidates, slate_size


def select_slate(key, q, weights, no_click_weight, slot_weights, eps, optimizer: str):
    """Epsilon-greedy slate of one observation: with probability `eps` a uniformly random slate
    of distinct candidates, else `optimizer`'s slate for the item values `q`."""
    k_coin, k_random = jax.random.split(key)
    random_slate = jax.lax.top_k(jax.random.uniform(k_random, weights.shape),
                                 slot_weights.shape[0])[1]
    greedy = SLATE_OPTIMIZERS[optimizer](q, weights, no_click_weight, slot_weights)
    return jnp.where(jax.random.uniform(k_coin) < eps, random_slate.astype(jnp.int32), greedy)


def network_params(runner_state: RunnerState):
    """The online network parameters of a runner state (batched if the state is): a dict of
    the item-value network's ("q") and, with a learned choice model, its ("choice")."""
    return runner_state.train_state.params


def make_policy(config: SlateQConfig, env, network_params, deterministic: bool = False):
    """`policy_fn(key, obs, env_state, env_params) -> action` for one unbatched env: the
    config's slate optimiser under the env's choice model, epsilon-greedy at the schedule's
    final epsilon, or greedy if `deterministic`. A `jax.tree_util.Partial` over the weights
    and epsilon, so one compilation serves many weight sets (as `dqn.make_policy`)."""
    _, slate_size = env_spec(env, env.default_params, config.choice_model == "env")
    eps = jnp.zeros((), jnp.float32) if deterministic else epsilon(config, config.total_timesteps)
    return jax.tree_util.Partial(_policy_fn(env, config.hidden_size, slate_size,
                                            config.slate_optimizer, config.choice_model),
                                 network_params, eps)


@functools.cache
def _policy_fn(env, hidden_size: int, slate_size: int, optimizer: str, choice_model: str):
    """One function object per env, network size, action kind, optimiser and choice model."""
    network = UserItemQNetwork(hidden_size)
    choice = make_choice_fn(env, choice_model, max(slate_size, 1))

    def policy_fn(network_params, eps, key, obs, env_state, env_params):
        slate = select_slate(key, network.apply(network_params["q"], obs),
                             *choice(network_params, obs, env_params), eps, optimizer)
        return slate if slate_size else slate[0]

    return policy_fn


def make_choice_fn(env, choice_model: str, slate_size: int):
    """`choice(network_params, obs, env_params) -> (weights, no-click weight, slot weights)` of
    one observation: the env's hook (`choice_model="env"`) or the learned model's
    `network_params["choice"]`."""
    if choice_model == "env":
        return lambda network_params, obs, env_params: env.choice_model(obs, env_params)
    model = UserItemChoiceModel(slate_size)
    return lambda network_params, obs, env_params: choice_weights(
        *model.apply(network_params["choice"], obs))


def make_learner(config: SlateQConfig, env, env_params) -> Learner:
    """SlateQ as a `Learner`: `init(key)` -> runner state, `update(state)` -> (state, metrics).

    One update: `train_frequency` epsilon-greedy steps of all `num_envs` envs into the
    buffer, then (once `learning_starts` env steps are done) `gradient_steps` gradient steps
    on batches of (transition, next transition) pairs. With `choice_model="learned"` each
    gradient step also fits `UserItemChoiceModel` to the picks in the batch (its negative log
    likelihood is added to the TD loss), and that model stands in for the env's everywhere.
    """
    config.validate()
    learned = config.choice_model == "learned"
    num_candidates, slate_size = env_spec(env, env_params, not learned)
    k = max(slate_size, 1)
    network = UserItemQNetwork(config.hidden_size)
    choice_net = UserItemChoiceModel(k)
    optimize = SLATE_OPTIMIZERS[config.slate_optimizer]
    choice = make_choice_fn(env, config.choice_model, k)
    choice_batch = jax.vmap(choice, in_axes=(None, 0, None))
    env_loop = make_env_loop(env, env_params, config.num_envs)
    tx = make_optimizer(config.lr, config.max_grad_norm, config.anneal_lr,
                        max(1, config.num_gradient_steps))

    def init(key):
        k_net, k_choice, k_loop = jax.random.split(key, 3)
        loop = env_loop.init(k_loop)
        params = {"q": network.init(k_net, loop.obs[0])}
        if learned:
            params["choice"] = choice_net.init(k_choice, loop.obs[0])
        train_state = TrainState(params, params, tx.init(params), jnp.int32(0))
        n = config.num_envs
        false, zeros = jnp.zeros(n, bool), jnp.zeros(n, jnp.int32)
        row = Transition(loop.obs, jnp.zeros((n, k), jnp.int32), zeros, jnp.zeros(n, jnp.float32),
                         false, false, loop.obs)
        return RunnerState(train_state, buffer_init(row, config.buffer_rows), loop)

    def act(carry, key, obs, _):
        params, eps, buffer = carry
        slate = jax.vmap(select_slate, in_axes=(0, 0, 0, 0, 0, None, None))(
            jax.random.split(key, obs.shape[0]), network.apply(params["q"], obs),
            *choice_batch(params, obs, env_params), eps, config.slate_optimizer)
        return (slate if slate_size else slate[:, 0]), carry, slate

    def observe(carry, slate, step, _):
        params, eps, buffer = carry
        chosen = jax.vmap(chosen_item, in_axes=(0, 0, None))(
            slate, step.info["slot_clicks"], num_candidates)
        row = Transition(step.obs, slate, chosen, step.reward, step.terminated, step.done,
                         step.final_obs)
        return (params, eps, buffer_add(buffer, row)), None

    def target(params, target_params, pair: Transition):
        """The TD target of a pair's first transition (leaves (2, ...))."""
        now = jax.tree.map(lambda x: x[0], pair)
        model = choice(params, now.final_obs, env_params)
        next_q = network.apply(target_params["q"], now.final_obs)
        chooser_q = network.apply(params["q"], now.final_obs) if config.double_q else next_q
        next_slate = optimize(chooser_q, *model)
        if config.target == "sarsa":  # the slate shown next, unless the episode ended here
            next_slate = jnp.where(now.done, next_slate, pair.slate[1])
        discount = config.gamma * (1.0 - now.terminated.astype(jnp.float32))
        return item_target(now.reward, discount, next_q, *model, next_slate)

    def loss_fn(params, target_params, pairs: Transition):
        q = network.apply(params["q"], pairs.obs[:, 0])
        q_chosen = jnp.take_along_axis(q, pairs.chosen[:, 0, None], axis=-1)[:, 0]
        targets = jax.vmap(target, in_axes=(None, None, 0))(params, target_params, pairs)
        loss = 0.5 * jnp.mean(jnp.square(q_chosen - jax.lax.stop_gradient(targets)))
        metrics = {"loss": loss, "q_mean": jnp.mean(q_chosen), "target_mean": jnp.mean(targets)}
        if learned:
            item_logits, slot_logits = choice_net.apply(params["choice"], pairs.obs[:, 0])
            choice_loss = -jnp.mean(jax.vmap(choice_log_likelihood, in_axes=(0, None, 0, 0))(
                item_logits, slot_logits, pairs.slate[:, 0], pairs.chosen[:, 0]))
            loss, metrics = loss + choice_loss, {**metrics, "choice_loss": choice_loss}
        return loss, metrics

    def sample(buffer, key):  # (transition, next transition) pairs
        return buffer_sample(buffer, key, config.batch_size, 2)

    update = make_replay_update(config, tx, env_loop, act, observe, loss_fn, sample, min_rows=2)

    return Learner(init=init, update=update, num_updates=config.num_updates,
                   steps_per_update=config.steps_per_update)


def make_train(config: SlateQConfig, env, env_params):
    """`train(key) -> (final RunnerState, metrics)`, metrics stacked over updates."""
    return train_fn(make_learner(config, env, env_params))
