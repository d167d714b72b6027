"""Environment ids -> factories; every id is also registered with gymnax."""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import gymnax
from gymnax import registration as gymnax_registration

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(env_id: str, factory: Callable[..., Any]) -> None:
    """Register `factory(**constructor_kwargs) -> env` under `env_id` here and in gymnax."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id must be a non-empty string, got {env_id!r}")
    if not callable(factory):
        raise TypeError(f"factory for {env_id} must be callable, got {type(factory).__name__}")
    if env_id in _REGISTRY:
        raise ValueError(f"{env_id} is already registered")
    if env_id in gymnax_registration.registered_envs:
        raise ValueError(f"{env_id} is already a gymnax environment id; pick a new id "
                         f"(registered here: {list_envs()})")
    _REGISTRY[env_id] = factory
    gymnax.register(env_id, factory)


def list_envs() -> list[str]:
    """All registered environment ids, sorted."""
    return sorted(_REGISTRY)


def make(env_id: str, **kwargs: Any):
    """Build `env_id` and return `(env, env_params)`, like `gymnax.make`.

    Keyword arguments are constructor arguments (static sizes) or scalar fields of the
    env's params (overriding the defaults); anything else raises `ValueError`.
    """
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown env id {env_id!r}; registered ids: {list_envs()}")
    factory = _REGISTRY[env_id]
    ctor_names = {name for name, p in inspect.signature(factory).parameters.items()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    ctor_kwargs = {k: v for k, v in kwargs.items() if k in ctor_names}
    env = factory(**ctor_kwargs)
    params = env.default_params
    param_names = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(kwargs) - ctor_names - param_names)
    if unknown:
        raise ValueError(f"unknown arguments {unknown} for {env_id}; constructor arguments: "
                         f"{sorted(ctor_names)}; params: {sorted(param_names)}")
    params = params.replace(**{k: v for k, v in kwargs.items() if k not in ctor_names})
    if hasattr(env, "validate_params"):
        env.validate_params(params)
    return env, params
