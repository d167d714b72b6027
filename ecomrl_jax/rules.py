"""Declarative validation: each params or config class keeps a table `{field: Rule}` next to
its definition, and `check` enforces it outside jit with one message format.

    RULES = {"price": POSITIVE, "alpha": in_range(0, 1), "max_steps_in_episode": int_at_least(1)}
    check(params, RULES, "EnvParams")   # ValueError: EnvParams.price must be > 0, got -1.0

Values are checked elementwise (arrays too). NaN fails every rule; +-inf fails every rule
unless the rule allows it (`allow_inf=True`). Traced values (a field vmapped over a grid) are
skipped: they can only be checked where they are concrete. Integer rules accept Python and
numpy integers (and integer arrays) and refuse `bool`.
"""

import dataclasses
from collections.abc import Callable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Rule:
    ok: Callable[[np.ndarray], np.ndarray]  # elementwise predicate on a float64 array
    text: str  # what the rule demands, e.g. "> 0"
    integer: bool = False  # the value must be an integer (not bool)
    allow_inf: bool = False  # +-inf passes where `ok` holds

    def describe(self) -> str:
        kind = "an int " if self.integer else ""
        return f"{kind}{self.text}" + (" (inf allowed)" if self.allow_inf else "")


def in_range(low: float, high: float, low_open: bool = False, high_open: bool = False,
             allow_inf: bool = False) -> Rule:
    """A float in [low, high]; `low_open`/`high_open` exclude the end."""
    def ok(x):
        return (x > low if low_open else x >= low) & (x < high if high_open else x <= high)
    return Rule(ok, f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}",
                allow_inf=allow_inf)


def at_least(low: float, allow_inf: bool = False) -> Rule:
    return Rule(lambda x: x >= low, f">= {low:g}", allow_inf=allow_inf)


def above(low: float, allow_inf: bool = False) -> Rule:
    return Rule(lambda x: x > low, f"> {low:g}", allow_inf=allow_inf)


def int_at_least(low: int) -> Rule:
    return Rule(lambda x: x >= low, f">= {low}", integer=True)


def one_of(*choices) -> Rule:
    """A value equal to one of `choices` (numbers)."""
    return Rule(lambda x: np.isin(x, choices), f"one of {list(choices)}")


FINITE = Rule(lambda x: np.ones_like(x, bool), "finite")
POSITIVE = above(0)
NON_NEGATIVE = at_least(0)
UNIT_INTERVAL = in_range(0, 1)  # probabilities, fractions
DISCOUNT = in_range(0, 1, low_open=True)  # (0, 1]
POSITIVE_INT = int_at_least(1)
NON_NEGATIVE_INT = int_at_least(0)


def _is_traced(value) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def _is_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and np.issubdtype(dtype, np.integer)


def check_value(value, rule: Rule, name: str) -> None:
    """ValueError naming `name` unless `value` satisfies `rule` (skipped when traced)."""
    if _is_traced(value):
        return
    if rule.integer and not _is_integer(value):
        raise ValueError(f"{name} must be {rule.describe()}, got {value!r} "
                         f"({type(value).__name__})")
    try:
        x = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number {rule.text}, got {value!r}") from None
    finite = np.isfinite(x) | (np.isinf(x) if rule.allow_inf else False)
    if not np.all(finite & rule.ok(x)):
        shown = value if x.size <= 8 else f"an array with {int(np.sum(~(finite & rule.ok(x))))} " \
                                          f"bad entries of {x.size}"
        raise ValueError(f"{name} must be {rule.describe()}, got {shown!r}")


def check(obj, rules: dict[str, Rule], where: str | None = None) -> None:
    """Check every field named in `rules` on the dataclass `obj`; the first failure raises a
    ValueError `"<where>.<field> must be <rule>, got <value>"`."""
    where = where or type(obj).__name__
    for name, rule in rules.items():
        check_value(getattr(obj, name), rule, f"{where}.{name}")


def unruled_fields(cls, rules: dict[str, Rule], exempt: tuple[str, ...] = ()) -> list[str]:
    """Fields of the dataclass `cls` that `rules` does not cover (for a coverage test)."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in rules and f.name not in exempt]
