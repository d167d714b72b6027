"""InterestEvolution: a port of RecSim's interest-evolution environment (Ie et al. 2019).

RecSim 0.2.4's `recsim.environments.interest_evolution.create_environment`, step for step: a
user with interests in 20 topics and a time budget of 200 minutes is shown slates of videos
picked from freshly drawn candidates; a video's topic is observed, its quality is hidden. The
user clicks at most one video by a multinomial proportional choice, watches it, which spends
budget (high-quality videos give some back), and moves its interest in the video's topic up
or down. Reward is the clicked watch time; the session ends when the budget is spent.
See docs/envs/interest_evolution.md, which cites each constant's place in RecSim's source.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ecomrl_jax.envs._base import CompareByArgs, check_shapes
from ecomrl_jax.rules import FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Rule, check, check_value
from ecomrl_jax.spaces import Slate, check_action, shown_slots

NUM_TOPICS = 20  # IEvVideo.NUM_FEATURES = IEvUserState.NUM_FEATURES


@struct.dataclass
class EnvState(environment.EnvState):
    interest: jax.Array  # (NUM_TOPICS,) in [-1, 1], observed (RecSim's user observation)
    time_budget: jax.Array  # () minutes left; the session ends when it is <= 0; hidden
    candidate_topic: jax.Array  # (num_candidates,) int32, observed as one-hots
    candidate_quality: jax.Array  # (num_candidates,) hidden


@struct.dataclass
class EnvParams:
    # UtilityModelVideoSampler: topic k's mean quality; trashy topics 0-13 from -3 to 0,
    # nutritious topics 14-19 from 0 to 3.
    topic_quality_mean: jax.Array = dataclasses.field(default_factory=lambda: jnp.asarray(
        np.concatenate([np.linspace(-3.0, 0.0, 14), np.linspace(0.0, 3.0, 6)]), jnp.float32))
    quality_std: float = 0.1  # UtilityModelVideoSampler (named quality_variance, used as scale)
    video_length: float = 4.0  # UtilityModelVideoSampler, minutes
    time_budget: float = 200.0  # UtilityModelUserSampler, minutes
    step_penalty: float = 0.5  # UtilityModelUserSampler: budget spent by a step without a click
    no_click_mass: float = 1.0  # IEvUserModel / UtilityModelUserSampler
    min_normalizer: float = -1.0  # UtilityModelUserSampler: subtracted from every choice score
    # UtilityModelUserSampler: budget gained per minute watched and unit of utility, and the
    # weights of the user's own score and of the video's quality in that utility.
    user_update_alpha: float = 0.9 / 3.4
    user_quality_factor: float = 0.0
    document_quality_factor: float = 1.0
    alpha_x_intercept: float = 1.0  # IEvUserModel: interest step shrinks to 0 at |interest| = this
    alpha_y_intercept: float = 0.3  # IEvUserModel: interest step at interest 0
    max_steps_in_episode: int = 1000  # RecSim has no limit; the budget ends every session first


# Valid values of every field (checked by `validate_params`, outside jit). RecSim asserts that
# every normalised choice score is >= 0, hence min_normalizer <= -1 (scores are interests in
# [-1, 1]); `validate_params` also asks for a positive no-click weight.
PARAM_RULES = {
    "topic_quality_mean": FINITE,
    "quality_std": NON_NEGATIVE,
    "video_length": POSITIVE,
    "time_budget": POSITIVE,
    "step_penalty": NON_NEGATIVE,
    "no_click_mass": FINITE,
    "min_normalizer": Rule(lambda x: x <= -1.0, "<= -1 (the lowest interest)"),
    "user_update_alpha": FINITE,
    "user_quality_factor": FINITE,
    "document_quality_factor": FINITE,
    "alpha_x_intercept": POSITIVE,
    "alpha_y_intercept": FINITE,
    "max_steps_in_episode": POSITIVE_INT,
}


class InterestEvolution(CompareByArgs, environment.Environment[EnvState, EnvParams]):
    """RecSim's interest-evolution env: slates of `slate_size` of `num_candidates` videos.

    Observation: a `(1 + num_candidates, 20)` Box, as RecSim's DQN agent stacks it: row 0 the
    user's interests, row 1 + i candidate i's topic one-hot. Action: `Discrete(num_candidates)`
    for `slate_size=1`, else a `Slate` of distinct candidate indices.
    """

    out_of_range_action = "ignore"  # an invalid or repeated slot is shown empty (not clickable)
    param_rules = PARAM_RULES

    def __init__(self, num_candidates: int = 10, slate_size: int = 2):
        check_value(num_candidates, POSITIVE_INT, "InterestEvolution.num_candidates")
        check_value(slate_size, POSITIVE_INT, "InterestEvolution.slate_size")
        if slate_size > num_candidates:
            raise ValueError(f"InterestEvolution.slate_size must be <= num_candidates "
                             f"({num_candidates}), got {slate_size}")
        self.num_candidates = num_candidates
        self.slate_size = slate_size

    @property
    def name(self) -> str:
        return "InterestEvolution-v0"

    @property
    def num_actions(self) -> int:
        return self.num_candidates

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def validate_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the first invalid field; call outside jit."""
        check_shapes(params, {"topic_quality_mean": (NUM_TOPICS,)}, "InterestEvolution.params",
                     f"{NUM_TOPICS} topics")
        check(params, PARAM_RULES, "InterestEvolution.params")
        if not params.no_click_mass > params.min_normalizer:
            raise ValueError(f"InterestEvolution.params.no_click_mass must be > min_normalizer "
                             f"({params.min_normalizer}) so that not clicking keeps a positive "
                             f"weight, got {params.no_click_mass}")

    def reset_env(self, key: jax.Array, params: EnvParams):
        """UtilityModelUserSampler.sample_user: interests uniform on [-1, 1], a full budget."""
        k_user, k_docs = jax.random.split(key)
        state = EnvState(time=jnp.int32(0),
                         interest=jax.random.uniform(k_user, (NUM_TOPICS,), minval=-1.0, maxval=1.0),
                         time_budget=jnp.asarray(params.time_budget, jnp.float32),
                         **self._draw_candidates(k_docs, params))
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        k_choice, k_flip, k_docs = jax.random.split(key, 3)
        expected = () if self.slate_size == 1 else (self.slate_size,)
        action = check_action(f"{self.name} with slate_size={self.slate_size}", action, expected,
                              integer=True)
        slots, shown, num_invalid = shown_slots(action, self.num_candidates)
        topics = state.candidate_topic[slots]
        probs = choice_probabilities(state.interest, topics, shown, params)
        choice = jax.random.categorical(k_choice, jnp.log(probs))
        clicked = choice < self.slate_size
        slot = jnp.minimum(choice, self.slate_size - 1)
        interest, time_budget, watch_time = user_transition(
            state.interest, state.time_budget, clicked, topics[slot],
            state.candidate_quality[slots[slot]], jax.random.uniform(k_flip), params)
        state = EnvState(time=state.time + 1, interest=interest, time_budget=time_budget,
                         **self._draw_candidates(k_docs, params))
        info = {"clicks": clicked.astype(jnp.float32), "invalid_actions": num_invalid,
                "slot_clicks": (jnp.arange(self.slate_size) == choice).astype(jnp.float32)}
        return (self.get_obs(state, params), state, watch_time, self.is_terminated(state, params),
                info)

    def get_obs(self, state: EnvState, params: EnvParams, key=None) -> jax.Array:
        docs = jax.nn.one_hot(state.candidate_topic, NUM_TOPICS, dtype=jnp.float32)
        return jnp.concatenate([state.interest[None].astype(jnp.float32), docs])

    def choice_model(self, obs: jax.Array, params: EnvParams):
        """`(candidate weights (num_candidates,), no-click weight, slot weights (slate_size,))`
        of the user's choice at `obs`: a slate's slot j is clicked with probability
        w_j / (w_0 + sum of the slate's w), as `choice_probabilities` (positions do not matter:
        every slot weight is 1). The hook a choice-model-based learner (SlateQ) reads."""
        weights = obs[1:] @ obs[0] - params.min_normalizer
        return (weights, jnp.asarray(params.no_click_mass - params.min_normalizer, jnp.float32),
                jnp.ones(self.slate_size, jnp.float32))

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """IEvUserModel.is_terminal."""
        return state.time_budget <= 0.0

    def action_space(self, params: EnvParams | None = None):
        if self.slate_size == 1:
            return spaces.Discrete(self.num_candidates)
        return Slate(self.num_candidates, self.slate_size)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1 + self.num_candidates, NUM_TOPICS), jnp.float32)

    def _draw_candidates(self, key: jax.Array, params: EnvParams) -> dict:
        """UtilityModelVideoSampler.sample_document, `num_candidates` times: a uniform topic and
        quality ~ N(topic_quality_mean[topic], quality_std)."""
        k_topic, k_quality = jax.random.split(key)
        topic = jax.random.randint(k_topic, (self.num_candidates,), 0, NUM_TOPICS)
        quality = (params.topic_quality_mean[topic]
                   + params.quality_std * jax.random.normal(k_quality, (self.num_candidates,)))
        return {"candidate_topic": topic, "candidate_quality": quality.astype(jnp.float32)}


def choice_probabilities(interest: jax.Array, topics: jax.Array, shown: jax.Array,
                         params: EnvParams) -> jax.Array:
    """P(click slot j) for each slot, then P(no click): MultinomialProportionalChoiceModel.

    A video's score is `interest . one_hot(topic) = interest[topic]`; weights are the scores and
    `no_click_mass`, each minus `min_normalizer`; an empty slot weighs 0.
    """
    weights = jnp.append(jnp.where(shown, interest[topics] - params.min_normalizer, 0.0),
                         params.no_click_mass - params.min_normalizer)
    return weights / jnp.sum(weights)


def user_transition(interest: jax.Array, time_budget: jax.Array, clicked: jax.Array,
                    topic: jax.Array, quality: jax.Array, flip: jax.Array, params: EnvParams):
    """`(interest, time_budget, watch_time)` after a step: IEvUserModel._generate_click_response
    and update_state.

    On a click the user watches `min(time_budget, video_length)`; its interest in `topic`
    moves by `alpha * (1 - interest)`, `alpha = y0 - (y0 / x0) * |interest|`, up if `flip`
    (uniform on [0, 1)) is below `(interest + 1) / 2`, else down, clipped to [-1, 1]; the budget
    loses the watch time and gains `user_update_alpha * watch_time * utility`, utility =
    `user_quality_factor * (interest - min_normalizer) + document_quality_factor * quality`.
    Without a click the budget loses `step_penalty`.
    """
    watch_time = jnp.where(clicked, jnp.minimum(time_budget, params.video_length), 0.0)
    mask = jax.nn.one_hot(topic, NUM_TOPICS, dtype=interest.dtype)
    alpha = (-params.alpha_y_intercept / params.alpha_x_intercept) * jnp.abs(interest) \
        + params.alpha_y_intercept
    update = alpha * mask * (mask - interest)
    positive = flip < jnp.dot((interest + 1.0) / 2.0, mask)
    moved = jnp.clip(interest + jnp.where(positive, update, -update), -1.0, 1.0)
    utility = (params.user_quality_factor * (interest[topic] - params.min_normalizer)
               + params.document_quality_factor * quality)
    watched_budget = time_budget - watch_time + params.user_update_alpha * watch_time * utility
    return (jnp.where(clicked, moved, interest),
            jnp.where(clicked, watched_budget, time_budget - params.step_penalty).astype(jnp.float32),
            watch_time.astype(jnp.float32))
