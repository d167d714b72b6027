"""SlateQ (ecomrl_jax/learners/slateq.py): the slate value decomposition and targets against
hand computations, the exact slate optimiser against enumeration of every slate, the approximate
ones against the exact one, under jit and vmap; env refusals; and (slow) learning on
InterestEvolution-v0. The learner contract is tests/contract/test_learners.py."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ecomrl_jax
from ecomrl_jax.envs.recommendation import policies
from ecomrl_jax.envs.recommendation.interest_evolution import choice_probabilities
from ecomrl_jax.envs.recommendation.shopper_rec import UserItemShopperRec
from ecomrl_jax.evaluation import confidence_interval, evaluate
from ecomrl_jax.learners import slateq


def _random_cases(num_cases: int, num_candidates: int, slate_size: int, seed: int = 0):
    """`(q (n, C + 1), weights (n, C), no-click weights (n,), slot weights (n, k))`, q with both
    signs, slot weights in no particular order."""
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(0.0, 2.0, (num_cases, num_candidates + 1)), jnp.float32),
            jnp.asarray(rng.uniform(0.0, 2.0, (num_cases, num_candidates)), jnp.float32),
            jnp.asarray(rng.uniform(0.5, 3.0, num_cases), jnp.float32),
            jnp.asarray(rng.uniform(0.2, 1.5, (num_cases, slate_size)), jnp.float32))


def _brute_force_best(q, weights, no_click_weight, slot_weights):
    """The best value over every ordered slate of distinct candidates (every set, if all slot
    weights are equal), in float64 numpy."""
    q, w, w0, b = (np.asarray(x, np.float64) for x in (q, weights, no_click_weight, slot_weights))
    slates = itertools.permutations if np.ptp(b) > 0 else itertools.combinations
    return max((w0 * q[-1] + (b * w[list(s)]) @ q[list(s)]) / (w0 + b @ w[list(s)])
               for s in slates(range(w.size), b.size))


def test_slate_value_hand_computed_under_jit():
    q = jnp.array([10.0, 4.0, -2.0, 1.0])  # three candidates, then no click
    weights, w0, slate = jnp.array([1.0, 3.0, 2.0]), jnp.float32(2.0), jnp.array([1, 0])
    probs = jax.jit(slateq.slate_choice_probabilities)(weights, w0, jnp.ones(2), slate)
    np.testing.assert_allclose(probs, [3 / 6, 1 / 6, 2 / 6], rtol=1e-6)
    expected = (3 * 4.0 + 1 * 10.0 + 2 * 1.0) / 6
    np.testing.assert_allclose(jax.jit(slateq.slate_value)(q, weights, w0, jnp.ones(2), slate),
                               expected, rtol=1e-6)
    # slot 1 weighs half: slot weights 3 * 1 and 1 * 0.5, no click 2
    np.testing.assert_allclose(slateq.slate_value(q, weights, w0, jnp.array([1.0, 0.5]), slate),
                               (3 * 4.0 + 0.5 * 10.0 + 2 * 1.0) / 5.5, rtol=1e-6)


def test_choice_model_hook_gives_the_envs_choice_probabilities():
    """InterestEvolution.choice_model weights, put through the decomposition, are exactly the
    env's own `choice_probabilities` of the shown slate."""
    env, params = ecomrl_jax.make("InterestEvolution-v0")
    keys = jax.random.split(jax.random.key(0), 16)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    slates = jax.vmap(env.action_space(params).sample)(keys)
    weights, w0, slot_weights = jax.vmap(env.choice_model, in_axes=(0, None))(obs, params)
    ours = jax.vmap(slateq.slate_choice_probabilities)(weights, w0, slot_weights, slates)
    topics = jnp.take_along_axis(state.candidate_topic, slates, axis=1)
    theirs = jax.vmap(choice_probabilities, in_axes=(0, 0, None, None))(
        state.interest, topics, jnp.ones(env.slate_size, bool), params)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_shopper_rec_choice_model_hook_gives_the_envs_choice_probabilities():
    """UserItemShopperRec (interest revealed) weights, put through the decomposition, are the
    env's multinomial logit with position bias: softmax of click logit - bias * slot and the
    no-click logit."""
    env = UserItemShopperRec(slate_size=3, reveal_interest=True)
    params = env.make_params(jax.random.key(0), position_bias=0.7)
    keys = jax.random.split(jax.random.key(0), 16)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    slates = jax.vmap(env.action_space(params).sample)(keys)
    model = jax.vmap(env.choice_model, in_axes=(0, None))(obs, params)
    ours = jax.vmap(slateq.slate_choice_probabilities)(*model, slates)
    logits = jax.vmap(lambda s, sl: env.click_logits(s.interest, s.candidates[sl], params)[0])(
        state, slates) - 0.7 * jnp.arange(3)
    theirs = jax.nn.softmax(jnp.concatenate([logits, jnp.ones((16, 1))], axis=1), axis=1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    with pytest.raises(ValueError, match="reveal_interest=True"):
        UserItemShopperRec(slate_size=3).choice_model(obs[0], params)


@pytest.mark.parametrize("num_candidates, slate_size", [(5, 1), (6, 2), (7, 3), (8, 8)])
def test_exact_slate_matches_enumeration_and_bounds_the_approximations(num_candidates, slate_size):
    """Under jit(vmap) over 64 random cases, slot weights in no particular order (all 1 for
    8 of 8, where enumerating every order is too slow): the exact slate has distinct in-range
    candidates and the best value over all ordered slates; top-k and greedy slates are valid
    and never better."""
    q, weights, w0, slot_weights = _random_cases(64, num_candidates, slate_size, num_candidates)
    if slate_size == num_candidates:
        slot_weights = jnp.ones_like(slot_weights)
    values = {}
    for name, optimizer in slateq.SLATE_OPTIMIZERS.items():
        slates = jax.jit(jax.vmap(optimizer))(q, weights, w0, slot_weights)
        assert slates.shape == (64, slate_size) and slates.dtype == jnp.int32
        assert all(len(set(s)) == slate_size for s in slates.tolist())
        assert np.all((slates >= 0) & (slates < num_candidates))
        values[name] = np.asarray(
            jax.vmap(slateq.slate_value)(q, weights, w0, slot_weights, slates))
    best = [_brute_force_best(*case) for case in zip(q, weights, w0, slot_weights)]
    np.testing.assert_allclose(values["exact"], best, rtol=1e-5, atol=1e-5)
    assert np.all(values["top_k"] <= values["exact"] + 1e-5)
    assert np.all(values["greedy"] <= values["exact"] + 1e-5)


def test_top_k_is_not_exact_where_a_large_weight_carries_a_low_value():
    """The approximation differs from the exact slate on a case built for it: top-k by
    w * Qbar prefers a heavy, mediocre item (w 10, Qbar 1) to a light, excellent one (w 1,
    Qbar 5), which the exact slate (value 5 * 1 / 2 vs 10 / 11) takes."""
    q, weights, w0 = jnp.array([1.0, 5.0, 0.0]), jnp.array([10.0, 1.0]), jnp.float32(1.0)
    assert slateq.top_k_slate(q, weights, w0, jnp.ones(1)).tolist() == [0]
    assert slateq.exact_slate(q, weights, w0, jnp.ones(1)).tolist() == [1]


def test_item_target_and_chosen_item():
    next_q = jnp.array([10.0, 4.0, -2.0, 1.0])
    weights, w0, next_slate = jnp.array([1.0, 3.0, 2.0]), jnp.float32(2.0), jnp.array([1, 0])
    bootstrap = (3 * 4.0 + 1 * 10.0 + 2 * 1.0) / 6
    targets = jax.jit(jax.vmap(slateq.item_target, in_axes=(0, 0, None, None, None, None, None)))(
        jnp.array([4.0, 0.0]), jnp.array([0.9, 0.0]), next_q, weights, w0, jnp.ones(2), next_slate)
    np.testing.assert_allclose(targets, [4.0 + 0.9 * bootstrap, 0.0], rtol=1e-6)
    slate = jnp.array([[3, 7], [3, 7], [3, 7]])
    clicks = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    assert jax.vmap(slateq.chosen_item, in_axes=(0, 0, None))(slate, clicks, 10).tolist() == [7, 3, 10]


@pytest.mark.slow
def test_learned_choice_model_approaches_the_true_click_probabilities():
    """UserItemChoiceModel fitted by maximum likelihood (`choice_log_likelihood`, Adam) to 16,000
    picks of simulated shoppers (UserItemShopperRec, interest revealed, random slates of 3,
    position bias 0.7): on 256 other states and slates its choice probabilities are within
    0.02 of the env's on average, from over 0.1 unfitted."""
    env = UserItemShopperRec(slate_size=3, reveal_interest=True)
    params = env.make_params(jax.random.key(0), position_bias=0.7)
    N = 16_000

    def simulate(key):
        k_reset, k_slate, k_step = jax.random.split(key, 3)
        obs, state = env.reset(k_reset, params)
        slate = env.action_space(params).sample(k_slate)
        info = env.step(k_step, state, slate, params)[-1]
        return obs, slate, slateq.chosen_item(slate, info["slot_clicks"], env.num_candidates)

    obs, slates, chosen = jax.jit(jax.vmap(simulate))(jax.random.split(jax.random.key(1), N + 256))
    model = slateq.UserItemChoiceModel(3)
    tx = optax.adam(0.05)

    def nll(choice_params):
        item_logits, slot_logits = model.apply(choice_params, obs[:N])
        return -jnp.mean(jax.vmap(slateq.choice_log_likelihood, in_axes=(0, None, 0, 0))(
            item_logits, slot_logits, slates[:N], chosen[:N]))

    def fit_step(carry, _):
        choice_params, opt_state = carry
        updates, opt_state = tx.update(jax.grad(nll)(choice_params), opt_state)
        return (optax.apply_updates(choice_params, updates), opt_state), None

    def error(choice_params):
        def one(o, slate):
            learned = slateq.choice_weights(*model.apply(choice_params, o))
            return jnp.abs(slateq.slate_choice_probabilities(*learned, slate)
                           - slateq.slate_choice_probabilities(*env.choice_model(o, params), slate))
        return float(jnp.mean(jax.vmap(one)(obs[N:], slates[N:])))

    start = model.init(jax.random.key(2), obs[0])
    fitted = jax.jit(lambda p: jax.lax.scan(fit_step, (p, tx.init(p)), None, 300)[0][0])(start)
    assert error(start) > 0.1 and error(fitted) < 0.02


@pytest.mark.slow
def test_learned_choice_model_trains_where_the_env_has_none():
    """SlateQ with choice_model="learned" on UserItemShopperRec without the interest (no hook
    to call): a tiny run has finite metrics, a choice loss among them, and a policy."""
    env = UserItemShopperRec(num_items=50, slate_size=2)
    params = env.default_params
    config = slateq.SlateQConfig(total_timesteps=256, num_envs=4, learning_starts=32,
                                 buffer_size=128, batch_size=8, hidden_size=8,
                                 choice_model="learned")
    with pytest.raises(ValueError, match="reveal_interest=True"):
        jax.eval_shape(slateq.make_train(config.replace(choice_model="env"), env, params),
                       jax.random.key(0))
    state, metrics = jax.jit(slateq.make_train(config, env, params))(jax.random.key(0))
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert float(metrics["choice_loss"][-1]) > 0.0
    policy = slateq.make_policy(config, env, slateq.network_params(state), deterministic=True)
    obs, env_state = env.reset(jax.random.key(1), params)
    assert env.action_space(params).contains(policy(jax.random.key(2), obs, env_state, params))


def test_refuses_an_env_without_a_choice_model_and_bad_config_values():
    env, params = ecomrl_jax.make("ShopperRec-v0")
    with pytest.raises(ValueError, match="SlateQ needs a Box observation"):
        slateq.make_learner(slateq.SlateQConfig(), env, params)

    env, params = ecomrl_jax.make("InterestEvolution-v0")
    with pytest.raises(ValueError, match="slate_optimizer must be one of"):
        slateq.make_learner(slateq.SlateQConfig(slate_optimizer="lp"), env, params)
    with pytest.raises(ValueError, match="gamma must be in"):
        slateq.make_learner(slateq.SlateQConfig(gamma=1.0), env, params)
    with pytest.raises(ValueError, match=r"epsilon_end must be in \(0, 1\] for an exponential"):
        slateq.make_learner(slateq.SlateQConfig(epsilon_schedule="exponential", epsilon_end=0.0),
                            env, params)
    slateq.SlateQConfig(epsilon_end=0.0).validate()  # a linear schedule may end at 0
    slateq.SlateQConfig(gamma=0.0).validate()  # myopic SlateQ
    with pytest.raises(ValueError, match=r"must hold at least one sample's window = 2 steps"):
        slateq.SlateQConfig(num_envs=16, buffer_size=31).validate()


@pytest.mark.slow
@pytest.mark.parametrize("target, optimizer", [("sarsa", "greedy"), ("q_learning", "top_k")])
def test_variants_train_with_finite_metrics(target, optimizer):
    env, params = ecomrl_jax.make("InterestEvolution-v0", slate_size=3)
    config = slateq.SlateQConfig(total_timesteps=2_000, num_envs=8, learning_starts=200,
                                 target=target, slate_optimizer=optimizer, hidden_size=16)
    _, metrics = jax.jit(slateq.make_train(config, env, params))(jax.random.key(0))
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert float(metrics["loss"][-1]) > 0.0


@pytest.mark.slow
def test_slateq_beats_random_and_myopic_slateq_learns_the_immediate_watch_time():
    """SlateQ (gamma 0.99) and myopic SlateQ (gamma 0) trained together (vmap over gamma).
    SlateQ's greedy policy earns more watch time than random slates, intervals apart; myopic
    SlateQ's item values are its one-step targets: the watch time of a click, 4 minutes
    (less only when the budget runs out), and 0 for no click."""
    env, params = ecomrl_jax.make("InterestEvolution-v0")
    config = slateq.SlateQConfig(total_timesteps=50_000)
    states, _ = jax.jit(jax.vmap(lambda gamma: slateq.make_train(
        config.replace(gamma=gamma), env, params)(jax.random.key(0))))(jnp.array([0.99, 0.0]))
    weights = slateq.network_params(states)
    returns = {}
    for name, policy in [("slateq", slateq.make_policy(config, env, jax.tree.map(lambda x: x[0], weights),
                                                       deterministic=True)),
                         ("random", policies.random_policy(env, params))]:
        returns[name] = evaluate(env, params, policy, jax.random.key(1000), 200, max_steps=500)["return"]
    slateq_low = confidence_interval(np.asarray(returns["slateq"]))[1]
    assert slateq_low > confidence_interval(np.asarray(returns["random"]))[2]
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(5), 64), params)
    myopic_q = slateq.UserItemQNetwork(config.hidden_size).apply(
        jax.tree.map(lambda x: x[1], weights)["q"], obs)
    assert 3.5 < float(jnp.mean(myopic_q[:, :-1])) < 4.1
    assert abs(float(jnp.mean(myopic_q[:, -1]))) < 0.5
