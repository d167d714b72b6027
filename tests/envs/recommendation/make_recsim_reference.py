"""Writes tests/envs/recommendation/recsim_reference.json: RecSim 0.2.4's interest-evolution
choice probabilities and user-state updates on fixed cases, computed by RecSim's own classes.

Run with a Python that has recsim 0.2.4 (`pip install --no-deps recsim==0.2.4` plus numpy, gym,
absl-py; not a dependency of ecomrl_jax), from the repository root:

    PYTHONPATH=$PWD /work/scratch/recsimvenv/bin/python \
        tests/envs/recommendation/make_recsim_reference.py

Cases: a user whose interests are linspace(-1, 1, 20) rounded to 6 decimals; slates of one-hot
topic videos scored by `MultinomialProportionalChoiceModel` with the user's choice features; and
`IEvUserModel.update_state` after `_generate_click_response` (or no click), with numpy's global
RNG seeded so that the interest flip falls on either side of `(interest + 1) / 2`. The flip
drawn is stored, so the port's tests replay it. Not collected by pytest.
"""

import json
from pathlib import Path

import numpy as np

from benchmarks.recsim_agreement import import_recsim

OUT = Path(__file__).with_name("recsim_reference.json")
INTERESTS = np.round(np.linspace(-1.0, 1.0, 20), 6)
SLATES = ([0, 19], [10, 10], [5, 14], [19, 18], [0, 0], [7])
# (topic, quality, budget before, clicked slot, numpy seed of the flip); None: no click.
UPDATES = ((3, -2.307692, 200.0, 0, 7), (3, -2.307692, 200.0, 0, 0),
           (10, -0.692308, 57.3, 1, 1), (10, -0.692308, 57.3, 1, 0),
           (16, 1.2, 2.5, 0, 0), (16, 1.2, 2.5, 0, 4), (19, 3.05, 4.0, 1, 0),
           (0, -3.1, 1.0, 0, 0), (9, 0.0, 3.9, 0, 1), (None, 0.0, 0.3, None, 0))


def main() -> None:
    ie = import_recsim()
    from recsim import choice_model

    def user(budget):
        model = ie.IEvUserModel(
            2, choice_model_ctor=choice_model.MultinomialProportionalChoiceModel,
            response_model_ctor=ie.IEvResponse, user_state_ctor=ie.IEvUserState, seed=0)
        model._user_state.user_interests = INTERESTS.copy()
        model._user_state.time_budget = budget
        return model

    def video(topic, quality):
        return ie.IEvVideo(0, np.eye(20)[topic], cluster_id=topic, video_length=4.0,
                           quality=quality)

    model = user(200.0)
    state = model._user_state
    choices = []
    for slate in SLATES:
        model.choice_model.score_documents(state, [np.eye(20)[c] for c in slate])
        weights = np.append(model.choice_model.scores, model.choice_model.score_no_click)
        choices.append({"slate_clusters": slate, "u_at_clusters": INTERESTS[slate].tolist(),
                        "weights": weights.tolist(),
                        "probs_[slate..., no_click]": (weights / weights.sum()).tolist()})

    sampler = ie.UtilityModelVideoSampler(seed=0)
    user_sampler = ie.UtilityModelUserSampler(seed=0)
    sampled = user_sampler.sample_user()
    constants = {"cluster_means": sampler.cluster_means.tolist(),
                 "doc_video_length": sampler._video_length,
                 "time_budget_initial": sampled.time_budget,
                 **{k: sampled.choice_features[k] for k in ("no_click_mass", "min_normalizer")},
                 **{k: getattr(sampled, k) for k in ("step_penalty", "user_update_alpha",
                                                    "user_quality_factor",
                                                    "document_quality_factor")},
                 "alpha_x_intercept": model._alpha_x_intercept,
                 "alpha_y_intercept": model._alpha_y_intercept}

    updates = []
    for topic, quality, budget, slot, seed in UPDATES:
        model = user(budget)
        if topic is None:
            docs = [video(5, 0.0), video(6, 0.0)]
            responses = [ie.IEvResponse() for _ in docs]
            np.random.seed(seed)
            model.update_state(docs, responses)
            updates.append({"no_click": True, "budget_before": budget,
                            "budget_after": model._user_state.time_budget,
                            "interests_unchanged": bool(np.array_equal(
                                model._user_state.user_interests, INTERESTS)),
                            "terminal": bool(model.is_terminal()), "reward_clicked_watchtime": 0.0})
            continue
        docs = [video(5, 0.0), video(5, 0.0)]
        docs[slot] = video(topic, quality)
        responses = [ie.IEvResponse() for _ in docs]
        model._generate_click_response(docs[slot], responses[slot])
        np.random.seed(seed)
        flip = float(np.random.rand(1)[0])
        positive_prob = (INTERESTS[topic] + 1.0) / 2.0
        np.random.seed(seed)
        model.update_state(docs, responses)
        after = model._user_state.user_interests
        others = np.arange(20) != topic
        updates.append({
            "cluster": topic, "quality": quality, "budget_before": budget, "clicked_slot": slot,
            "u_c_before": float(INTERESTS[topic]), "watch_time": responses[slot].watch_time,
            "reward_clicked_watchtime": ie.clicked_watchtime_reward(responses),
            "positive_update_prob": float(positive_prob), "np_random_seed": seed, "flip": flip,
            "positive_branch": bool(flip < positive_prob), "u_c_after": float(after[topic]),
            "other_components_unchanged": bool(np.array_equal(after[others], INTERESTS[others])),
            "budget_after": model._user_state.time_budget, "terminal": bool(model.is_terminal())})

    OUT.write_text(json.dumps({"user_interests_used": INTERESTS.tolist(),
                               "constants_live": constants, "choice_probabilities": choices,
                               "state_updates": updates}, indent=1) + "\n")


if __name__ == "__main__":
    main()
