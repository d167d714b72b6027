"""The learners package stays generic: no module under ecomrl_jax/learners imports domain code
(`ecomrl_jax.envs`), and every registered learner module provides the `LearnerModule` interface."""

import ast
from pathlib import Path

import ecomrl_jax.learners
from ecomrl_jax.learners import LEARNERS, LearnerModule

LEARNERS_DIR = Path(ecomrl_jax.learners.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_learners_import_no_domain_code():
    files = sorted(LEARNERS_DIR.glob("*.py"))
    assert len(files) > 10
    offenders = {f.name: sorted(m for m in _imported_modules(f)
                                if m == "ecomrl_jax.envs" or m.startswith("ecomrl_jax.envs."))
                 for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_sees_an_envs_import(tmp_path):
    """The check above would fail on a domain import (guards the guard)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ecomrl_jax.envs.recommendation import shopper_rec\nimport ecomrl_jax.envs\n")
    assert {"ecomrl_jax.envs.recommendation", "ecomrl_jax.envs"} <= _imported_modules(bad)


def test_registered_modules_follow_the_protocol():
    methods = [name for name in vars(LearnerModule) if not name.startswith("_")]
    assert set(methods) == {"make_learner", "make_train", "network_params", "make_policy"}
    for name, (config_cls, module) in LEARNERS.items():
        missing = [m for m in methods if not callable(getattr(module, m, None))]
        assert not missing, f"{name}: {missing}"
        config_cls().validate()
