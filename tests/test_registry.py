"""ecomrl_jax.make / list_envs / register (ecomrl_jax/registry.py) and the gymnax bridge."""

import uuid

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax import registration as gymnax_registration
from gymnax.environments import environment, spaces

import ecomrl_jax
from ecomrl_jax import registry
from ecomrl_jax.envs.recommendation.shopper_rec import EnvParams, ShopperRec


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made in a test vanish afterwards, here and in gymnax."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(gymnax_registration, "_registry", dict(gymnax_registration._registry))
    monkeypatch.setattr(gymnax_registration, "registered_envs",
                        list(gymnax_registration.registered_envs))


# One small set of sizes for every non-default make(): each new set of shapes costs seconds of
# op-by-op compilation in make_params.
SMALL = dict(num_items=20, num_candidates=6, slate_size=2, history_len=3, embed_dim=4,
             num_shoppers=7, num_categories=2)


def _unique_id():
    return f"TestCounter{uuid.uuid4().hex[:8]}-v0"


@struct.dataclass
class CounterState(environment.EnvState):
    count: jax.Array


@struct.dataclass
class CounterParams(environment.EnvParams):
    max_steps_in_episode: int = 5
    step_reward: float = 1.0


class Counter(environment.Environment):
    """Adds the action (0 or 1) to a counter; terminates when the counter reaches `target`."""

    def __init__(self, target: int = 3):
        self.target = target

    @property
    def default_params(self):
        return CounterParams()

    def step_env(self, key, state, action, params):
        count = state.count + action
        state = CounterState(time=state.time + 1, count=count)
        reward = params.step_reward * action
        return self.get_obs(state), state, reward, count >= self.target, {"count": count}

    def reset_env(self, key, params):
        state = CounterState(time=jnp.int32(0), count=jnp.int32(0))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.array([state.count], jnp.float32)

    @property
    def name(self):
        return "Counter"

    @property
    def num_actions(self):
        return 2

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(0.0, jnp.inf, (1,), jnp.float32)


# --------------------------------------------------------------------------- make / list_envs


def test_list_envs():
    ids = ecomrl_jax.list_envs()
    assert isinstance(ids, list) and "ShopperRec-v0" in ids and ids == sorted(ids)
    ids.append("mutating-the-copy-v0")
    assert "mutating-the-copy-v0" not in ecomrl_jax.list_envs()


def test_public_api():
    assert {"make", "list_envs", "register", "__version__"} <= set(ecomrl_jax.__all__)
    assert isinstance(ecomrl_jax.__version__, str)


def test_make_returns_env_and_default_params():
    env, params = ecomrl_jax.make("ShopperRec-v0")
    assert isinstance(env, ShopperRec) and isinstance(params, EnvParams)
    assert env.name == "ShopperRec-v0"
    fresh = env.default_params
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(fresh), strict=True):
        np.testing.assert_array_equal(x, y)


def test_make_unknown_id_lists_registered_ids():
    with pytest.raises(ValueError, match="NoSuchEnv-v0") as err:
        ecomrl_jax.make("NoSuchEnv-v0")
    assert "ShopperRec-v0" in str(err.value)


def test_make_is_case_and_version_exact():
    for wrong in ("shopperrec-v0", "ShopperRec-v1", "ShopperRec"):
        with pytest.raises(ValueError, match="ShopperRec-v0"):
            ecomrl_jax.make(wrong)


def test_make_unknown_kwarg_lists_constructor_args_and_params():
    with pytest.raises(ValueError) as err:
        ecomrl_jax.make("ShopperRec-v0", slate_sise=3)
    msg = str(err.value)
    assert "slate_sise" in msg
    for name in ("slate_size", "num_items", "num_candidates", "history_len"):  # constructor
        assert name in msg
    for name in ("patience_init", "position_bias", "item_price", "max_steps_in_episode"):
        assert name in msg  # params


def test_make_constructor_kwargs():
    env, params = ecomrl_jax.make("ShopperRec-v0", **SMALL)
    assert (env.num_items, env.num_candidates, env.slate_size, env.history_len, env.embed_dim,
            env.num_shoppers, env.num_categories) == (20, 6, 2, 3, 4, 7, 2)
    assert params.item_embedding.shape == (20, 4) and params.shopper_interest.shape == (7, 4)
    assert env.action_space(params).shape == (2,)


def test_make_param_overrides_together_with_constructor_kwargs():
    env, params = ecomrl_jax.make("ShopperRec-v0", patience_init=2.5, revenue_weight=0.1,
                                  max_steps_in_episode=7, **SMALL)
    assert env.num_items == 20
    assert (params.patience_init, params.revenue_weight, params.max_steps_in_episode) == (
        2.5, 0.1, 7)
    default = env.default_params
    assert default.patience_init == 1.0 and default.max_steps_in_episode == 50  # not mutated
    np.testing.assert_array_equal(params.item_price, default.item_price)


def test_make_array_param_override_is_validated():
    quality = jnp.linspace(0.0, 1.0, 20)
    _, params = ecomrl_jax.make("ShopperRec-v0", item_quality=quality, **SMALL)
    np.testing.assert_array_equal(params.item_quality, quality)
    with pytest.raises(ValueError, match="item_quality"):
        ecomrl_jax.make("ShopperRec-v0", item_quality=quality + 1.0, **SMALL)
    with pytest.raises(ValueError, match="item_quality"):
        ecomrl_jax.make("ShopperRec-v0", item_quality=jnp.full(21, 0.5), **SMALL)


def test_make_rejects_invalid_param_values():
    with pytest.raises(ValueError, match="patience_init"):
        ecomrl_jax.make("ShopperRec-v0", patience_init=-1.0)


def test_gymnax_make_builds_the_same_env():
    env, params = gymnax.make("ShopperRec-v0")
    assert isinstance(env, ShopperRec)
    ours_env, ours = ecomrl_jax.make("ShopperRec-v0")
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(ours), strict=True):
        np.testing.assert_array_equal(x, y)
    slate_env, _ = gymnax.make("ShopperRec-v0", slate_size=3)
    assert slate_env.slate_size == 3
    assert "ShopperRec-v0" in gymnax_registration.registered_envs


# --------------------------------------------------------------------------- register


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        ecomrl_jax.register("ShopperRec-v0", ShopperRec)


def test_register_rejects_duplicates_of_a_user_env(isolated_registry):
    env_id = _unique_id()
    ecomrl_jax.register(env_id, Counter)
    with pytest.raises(ValueError, match="already registered"):
        ecomrl_jax.register(env_id, Counter)


@pytest.mark.parametrize("factory", [None, 3, "Counter", Counter()])
def test_register_rejects_non_callables(isolated_registry, factory):
    env_id = _unique_id()
    with pytest.raises(TypeError, match="callable"):
        ecomrl_jax.register(env_id, factory)
    assert env_id not in ecomrl_jax.list_envs()
    assert env_id not in gymnax_registration.registered_envs


@pytest.mark.parametrize("env_id", ["", None, 3])
def test_register_rejects_bad_ids(isolated_registry, env_id):
    with pytest.raises(ValueError, match="env_id"):
        ecomrl_jax.register(env_id, Counter)


def test_user_env_can_be_registered_and_made(isolated_registry):
    env_id = _unique_id()
    ecomrl_jax.register(env_id, Counter)
    assert env_id in ecomrl_jax.list_envs()

    env, params = ecomrl_jax.make(env_id, target=2, step_reward=0.5)
    assert isinstance(env, Counter) and env.target == 2 and params.step_reward == 0.5
    obs, state = env.reset(jax.random.key(0), params)
    rewards, dones = [], []
    for t in range(3):
        obs, state, reward, term, trunc, info = env.step(jax.random.key(t), state, 1, params)
        rewards.append(float(reward))
        dones.append(bool(term))
    assert rewards == [0.5, 0.5, 0.5] and dones == [False, True, False]  # auto-reset after 2

    g_env, g_params = gymnax.make(env_id, target=4)  # visible to gymnax too
    assert isinstance(g_env, Counter) and g_env.target == 4 and g_params == CounterParams()

    with pytest.raises(ValueError, match="target") as err:
        ecomrl_jax.make(env_id, targett=2)
    assert "step_reward" in str(err.value) and "max_steps_in_episode" in str(err.value)


def test_user_registration_does_not_leak():
    """Runs after the test above in file order: its id is gone from both registries."""
    assert not any(i.startswith("TestCounter") for i in ecomrl_jax.list_envs())
    assert not any(i.startswith("TestCounter") for i in gymnax_registration.registered_envs)


def test_function_factory_with_keyword_args(isolated_registry):
    env_id = _unique_id()

    def factory(target: int = 3, *, scale: int = 1):
        return Counter(target * scale)

    ecomrl_jax.register(env_id, factory)
    env, _ = ecomrl_jax.make(env_id, target=2, scale=3)
    assert env.target == 6


def test_register_refuses_an_id_that_gymnax_already_maps_elsewhere(isolated_registry):
    with pytest.raises(ValueError, match="CartPole-v1"):
        ecomrl_jax.register("CartPole-v1", Counter)
