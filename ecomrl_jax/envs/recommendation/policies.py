"""Rule-based policies: random (any env), popularity and a myopic oracle (exact over valid
slates) for ShopperRec-v0, a quality oracle for InterestEvolution-v0.

Each factory returns `policy_fn(key, obs, env_state, env_params) -> action` for one
unbatched env, as `ecomrl_jax.evaluation.evaluate` expects. An action is a candidate slot
(`slate_size=1`) or an ordered slate of distinct slots.
"""

import jax
import jax.numpy as jnp

from ecomrl_jax.envs.recommendation.interest_evolution import InterestEvolution
from ecomrl_jax.envs.recommendation.shopper_rec import ShopperRec


def random_policy(env, env_params):
    """Uniform over the action space (slates of distinct slots); works for any gymnax env."""
    space = env.action_space(env_params)

    def policy_fn(key, obs, env_state, params):
        return space.sample(key)

    return policy_fn


def popularity_policy(env, env_params):
    """Show the candidates with the highest population click probability, best first.

    An item's popularity is the mean over `env_params.shopper_interest` of its single-item
    click probability sigmoid(click_logit - no_click_logit), computed once here for
    `env_params`; the returned policy uses this table whatever params it is called with.
    """
    _require_shopper_rec(env, "popularity_policy")
    items = jnp.arange(env.num_items)
    logits = jax.vmap(lambda interest: env.click_logits(interest, items, env_params)[0])(
        env_params.shopper_interest)
    popularity = jnp.mean(jax.nn.sigmoid(logits - env_params.no_click_logit), axis=0)

    def policy_fn(key, obs, env_state, params):
        return _as_action(env, jax.lax.top_k(popularity[env_state.candidates], env.slate_size)[1])

    return policy_fn


def myopic_oracle(env, env_params):
    """Maximise the expected immediate reward over valid slates (distinct in-range slots),
    knowing the hidden `env_state.interest`.

    Exact over valid slates under the env's choice model (multinomial logit with position
    bias). Not over every action: an invalid slot is shown empty at no cost, and an empty last
    slot can earn slightly more than a weak item there (see the env card). Shown item i
    has weight a_i = exp(click_logit_i) times beta_j = exp(-position_bias * j) at slot j and
    value v_i = click_weight + P(buy_i) * (purchase_weight + revenue_weight * price_i), so a
    slate earns R = sum_j beta_j a_j v_j / (exp(no_click_logit) + sum_j beta_j a_j); for one
    item that is sigmoid(click_logit_i - no_click_logit) * v_i. R is maximised by Dinkelbach's
    iteration: for the current best R, the slate maximising sum_j beta_j a_j (v_j - R) is the
    top `slate_size` candidates by a_i (v_i - R) in descending order (rearrangement
    inequality, beta decreasing); its R is the next R; stop when R no longer rises.
    """
    _require_shopper_rec(env, "myopic_oracle")

    def policy_fn(key, obs, env_state, params):
        items = env_state.candidates
        logits, affinity = env.click_logits(env_state.interest, items, params)
        price = params.item_price[items]
        value = params.click_weight + env.purchase_prob(affinity, price, params) * (
            params.purchase_weight + params.revenue_weight * price)
        weight = jnp.exp(logits - jnp.max(logits))
        slot_logit = -params.position_bias * jnp.arange(env.slate_size)

        def best_slate(r):
            return jax.lax.top_k(weight * (value - r), env.slate_size)[1]

        def expected_reward(slots):
            probs = jax.nn.softmax(jnp.append(logits[slots] + slot_logit, params.no_click_logit))
            return jnp.sum(probs[:-1] * value[slots])

        def improve(carry):
            r, slots, _ = carry
            new_slots = best_slate(r)
            new_r = expected_reward(new_slots)
            better = new_r > r
            return jnp.where(better, new_r, r), jnp.where(better, new_slots, slots), better

        slots = best_slate(0.0)
        _, slots, _ = jax.lax.while_loop(
            lambda carry: carry[2], improve, (expected_reward(slots), slots, jnp.bool_(True)))
        return _as_action(env, slots)

    return policy_fn


def quality_oracle(env, env_params):
    """Show the `slate_size` candidates of highest hidden quality, best first
    (InterestEvolution-v0): quality lengthens the session, whatever the user's interests."""
    if not isinstance(env, InterestEvolution):
        raise ValueError(f"quality_oracle supports only an unwrapped InterestEvolution-v0 env "
                         f"(it reads the hidden video quality), got {type(env).__name__}")

    def policy_fn(key, obs, env_state, params):
        return _as_action(env, jax.lax.top_k(env_state.candidate_quality, env.slate_size)[1])

    return policy_fn


def _require_shopper_rec(env, name: str) -> None:
    if not isinstance(env, ShopperRec):
        raise ValueError(f"{name} supports only an unwrapped ShopperRec-v0 env "
                         f"(it reads its catalogue and state), got {type(env).__name__}")


def _as_action(env, slots: jax.Array) -> jax.Array:
    """Slots as the env's action: a scalar for `slate_size=1`, else the ordered slate."""
    slots = slots.astype(jnp.int32)
    return slots[0] if env.slate_size == 1 else slots
