"""Generic learners (one module each); they import no domain code.

`LEARNERS` maps a learner's name (the CLI's `--algo`) to its config class and module; every
module follows `LearnerModule`, so the CLI, sweeps and tests handle a newly registered learner
with no learner-specific code. Traced under `jax.set_mesh(loop.make_mesh(n))`, any learner splits
its env batch over n devices (`loop.shard_envs`: the one place that does it).
"""

from typing import Any, NamedTuple, Protocol

from ecomrl_jax.learners import a2c, dqn, ppo, reinforce, slateq, tabular
from ecomrl_jax.learners.loop import Learner


class LearnerModule(Protocol):
    """What a learner module provides (config classes are the registry's, one module may
    serve several, as `tabular` serves Q-learning and SARSA)."""

    def make_learner(self, config, env, env_params) -> Learner:
        """The learner (init, update, sizes); ValueError for a bad config or a mismatched env."""

    def make_train(self, config, env, env_params):
        """`train(key) -> (final runner state, metrics)`: the whole run in one `lax.scan`."""

    def network_params(self, runner_state) -> Any:
        """The learned parameters (network weights or Q-table) of a runner state."""

    def make_policy(self, config, env, params, deterministic: bool = False):
        """`policy_fn(key, obs, env_state, env_params) -> action` of learned `params` for one
        unbatched env; greedy where `deterministic`."""


class Registered(NamedTuple):
    config: type  # the config class (a frozen dataclass with `validate()`)
    module: LearnerModule


LEARNERS: dict[str, Registered] = {
    "ppo": Registered(ppo.PPOConfig, ppo),
    "a2c": Registered(a2c.A2CConfig, a2c),
    "dqn": Registered(dqn.DQNConfig, dqn),
    "slateq": Registered(slateq.SlateQConfig, slateq),
    "reinforce": Registered(reinforce.REINFORCEConfig, reinforce),
    "q_learning": Registered(tabular.QLearningConfig, tabular),
    "sarsa": Registered(tabular.SARSAConfig, tabular),
}
