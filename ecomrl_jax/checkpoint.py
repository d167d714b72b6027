"""Save and restore a runner state (any pytree of arrays) plus a JSON config, through orbax.

A checkpoint directory holds one sub-directory per step (`<directory>/<step>/state`, `.../config`);
orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous steps usable. Typed PRNG keys (`jax.random.key`) are stored as their
raw key data and rewrapped on restore with the implementation of the target's key. A state
sharded over devices is stored as global arrays and restored onto the target's shardings, so a
run saved on N devices resumes on any other number.
"""

import json
import logging
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

KEEP = 3  # checkpoints kept per directory, latest first


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the runner state it is restored into."""


def save(directory, step: int, runner_state, config: dict, keep: int = KEEP) -> None:
    """Write `runner_state` and a JSON-serialisable `config` as checkpoint `step`; keep the latest `keep`."""
    try:
        json.dumps(config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint config must be JSON-serialisable: {error}") from None
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
    with _manager(directory, options) as manager:
        latest = manager.latest_step()
        if latest is not None and step <= latest:  # orbax would skip such a save silently
            raise CheckpointError(f"cannot save step {step}: {directory} already has step {latest}, "
                                  "and checkpoint steps must increase")
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_unwrap_keys(runner_state)),
                                                   config=ocp.args.JsonSave(config)))


def latest_step(directory) -> int | None:
    """The newest complete checkpoint step in `directory`, or None if there is none."""
    if not Path(directory).is_dir():
        return None
    with _manager(directory, ocp.CheckpointManagerOptions(create=False)) as manager:
        return manager.latest_step()


def restore(directory, target_runner_state, step: int | None = None):
    """`(runner_state, config, step)` from checkpoint `step` (default: the latest) in `directory`.

    `target_runner_state` is a freshly initialised runner state: it fixes the tree structure, shapes,
    dtypes, devices and PRNG key implementations of the result.
    """
    if not Path(directory).is_dir():
        raise CheckpointError(f"no checkpoint directory {directory}")
    _quiet_failed_reads()
    with _manager(directory, ocp.CheckpointManagerOptions(create=False)) as manager:
        steps = manager.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {directory}")
        step = max(steps) if step is None else step
        if step not in steps:
            raise CheckpointError(f"no checkpoint step {step} in {directory}; it has steps {sorted(steps)}")
        where = f"checkpoint {Path(directory) / str(step)}"
        target = _unwrap_keys(target_runner_state)
        try:
            stored = manager.item_metadata(step).state
        except Exception as error:
            raise _unreadable(where, error) from None
        if not jax.tree.leaves(stored):
            raise CheckpointError(f"{where} is corrupt or truncated: its state metadata is missing")
        _check_fits(where, stored, target)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore()))
        except Exception as error:
            raise _unreadable(where, error) from None
    if not isinstance(restored.config, dict):
        raise CheckpointError(f"{where} is corrupt or truncated: its config is missing")
    state = jax.tree.map(_rewrap_key, target_runner_state, restored.state)
    return state, restored.config, step


def _manager(directory, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(Path(directory).absolute(), options=options, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler()})


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_keys(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _rewrap_key(target, value):
    return jax.random.wrap_key_data(value, impl=jax.random.key_impl(target)) if _is_key(target) else value


def _leaf_specs(tree) -> dict[str, str]:
    """`a.b.0.c` path -> `float32[3, 4]` for every leaf (orbax names stored arrays by such paths)."""
    def name(key):
        return str(getattr(key, "name", getattr(key, "key", getattr(key, "idx", key))))

    def spec(leaf):  # arrays, orbax metadata, or Python scalars (stored as 64-bit)
        dtype, shape = (leaf.dtype, leaf.shape) if hasattr(leaf, "shape") else (np.asarray(leaf).dtype, ())
        return f"{np.dtype(dtype).name}{list(shape)}"

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {".".join(name(k) for k in path): spec(leaf) for path, leaf in leaves}


def _check_fits(where: str, stored, target) -> None:
    """Raise CheckpointError listing every leaf where the stored tree differs from the target."""
    have, want = _leaf_specs(stored), _leaf_specs(target)
    problems = [f"{path}: checkpoint has {have[path]}, expected {want[path]}"
                for path in want if path in have and have[path] != want[path]]
    problems += [f"{path}: missing from checkpoint, expected {spec}" for path, spec in want.items()
                 if path not in have]
    problems += [f"{path}: in checkpoint ({spec}) but not expected" for path, spec in have.items()
                 if path not in want]
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise CheckpointError(f"{where} does not match the runner state it is restored into "
                              "(saved with a different config or learner?):\n  " + "\n  ".join(shown))


def _unreadable(where: str, error: Exception) -> CheckpointError:
    reason = (str(error).split(" [tensorstore_spec")[0].strip().splitlines() or [""])[0][:600]
    return CheckpointError(f"{where} is corrupt or truncated: {type(error).__name__}: {reason}")


def _quiet_failed_reads() -> None:
    """Drop the stderr noise of a failed read (installed once, before reading).

    Orbax reads arrays concurrently; when one read fails, the others report their errors into its
    closed event loop: asyncio's "exception was never retrieved" and unraisable "Event loop is closed".
    """
    if getattr(sys.unraisablehook, "_ecomrl_quiet", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)):
            previous(unraisable)

    hook._ecomrl_quiet = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_not_a_failed_read)


def _not_a_failed_read(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("exception was never retrieved" in message and "tensorstore" in message)
