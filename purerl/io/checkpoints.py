"""Checkpoints of a many-seed run: the whole vmapped training state plus the metrics so far, with orbax.

A checkpoint is one orbax ``CheckpointManager`` step (the number of updates done) holding three items:
``state`` (every run's state: parameters, optimiser and schedule state, env states, normaliser statistics,
RNG keys, counters, the config with its swept fields), ``history`` (the per-update metrics so far) and
``meta`` (the run's description and a SHA-256 digest of the state). Restoring checks the state's structure
and shapes against the run being resumed, and the digest against the bytes read back, so a mismatched or
corrupt checkpoint stops with one line instead of resuming from garbage.
"""

import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from purerl.core.sharding import is_prng_key, to_host

# A checkpoint's meta holds the run's training seconds up to it over all its processes (older ones lack it).
TRAIN_SECONDS = "train_seconds"
FORMAT_VERSION = 3  # 2: random streams (purerl.core.streams); 3: states carry their config, LM PPO named params


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run (missing, mismatched or corrupt)."""


def _storable(state: Any) -> Any:
    """Typed PRNG keys become their raw ``uint32`` data, and arrays with no elements (MJX's ``act`` of a physics
    env without actuator states, ``[runs, envs, 0]``) a one-element zero of their dtype: orbax stores plain
    arrays, and refuses empty ones."""

    def storable(x: Any) -> Any:
        if is_prng_key(x):
            return jax.random.key_data(x)
        return jnp.zeros((1,), x.dtype) if x.size == 0 else x

    return jax.tree.map(storable, state)


def _from_storable(stored: Any, like: Any) -> Any:
    """Inverse of ``_storable``: leaves that are keys in ``like`` are wrapped back into typed keys, and empty
    ones are empty again."""

    def restore(x: Any, ref: Any) -> Any:
        if is_prng_key(ref):
            return jax.random.wrap_key_data(x)
        return jnp.zeros(ref.shape, ref.dtype) if ref.size == 0 else x

    return jax.tree.map(restore, stored, like)


def state_digest(state: Any) -> str:
    """SHA-256 over every leaf's shape, dtype and bytes, in tree order."""
    digest = hashlib.sha256()
    for array in jax.tree.leaves(to_host(_storable(state))):
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class RunCheckpoints:
    """The checkpoints of one run, under ``directory`` (``<run dir>/checkpoints``); keeps the newest
    ``max_to_keep``. Saving is synchronous: a step on disk is complete (orbax commits it atomically). A save cut
    short (a second Ctrl-C, a kill) leaves a ``<step>.orbax-checkpoint-tmp*`` directory that no resume reads.
    ``writer=True`` (a resumed run, the one that saves here) removes those (orbax begins when the
    checkpoints are opened and finishes before the first save); a reader leaves them, since one may be a save
    in progress in another process."""

    def __init__(self, directory: Path, max_to_keep: int = 2, writer: bool = False):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False, cleanup_tmp_directories=writer
        )
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "history": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, history: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        meta = meta | {"format_version": FORMAT_VERSION, "updates_done": step, "state_digest": state_digest(state)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_storable(state)),
                history=ocp.args.StandardSave(history),
                meta=ocp.args.JsonSave(meta),
            ),
        )
        self.manager.wait_until_finished()

    def restore(self, step: int, like_state: Any) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
        """The state, history and meta of ``step``. ``like_state`` (arrays or ``jax.ShapeDtypeStruct``, e.g.
        from ``jax.eval_shape``) is the state this run expects; any difference is a ``CheckpointError``."""
        where = f"checkpoint {self.directory}/{step}"
        try:
            return self._restore(step, like_state, where)
        except CheckpointError:
            raise
        except Exception as error:  # orbax and tensorstore raise many types for unreadable files
            raise CheckpointError(f"{where} is unreadable: {_first_line(error)}") from None

    def meta(self, step: int) -> dict[str, Any]:
        """The meta saved with ``step`` alone, read before its state: a resume compares it with its own run first,
        so that another run's checkpoint is refused for what differs (a config field, an input file), not for
        the state shape that difference implies. ``CheckpointError`` if unreadable or not purerl's."""
        where = f"checkpoint {self.directory}/{step}"
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as error:  # orbax and tensorstore raise many types for unreadable files
            raise CheckpointError(f"{where} is unreadable: {_first_line(error)}") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{where} is not a purerl checkpoint of format {FORMAT_VERSION}")
        return meta

    def _restore(self, step: int, like_state: Any, where: str) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
        meta = self.meta(step)
        expected = jax.eval_shape(_storable, like_state)
        stored = _shapes_by_path(self.manager.item_metadata(step).state)
        wanted = _shapes_by_path(expected)
        if stored != wanted:
            difference = next(
                f"{path}: {stored.get(path, 'missing')} stored, {wanted.get(path, 'none')} expected"
                for path in sorted(set(stored) | set(wanted))
                if stored.get(path) != wanted.get(path)
            )
            raise CheckpointError(f"{where} does not match this run's state: {difference}")
        # Onto one local device, whatever mesh saved it: the run places it on its own devices (``shard_seeds``),
        # so a run stopped on 4 devices resumes on 1, or on 8.
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        expected = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local), expected)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(expected), history=ocp.args.StandardRestore()),
        )
        state = _from_storable(restored.state, like_state)
        if state_digest(state) != meta.get("state_digest"):
            raise CheckpointError(f"{where} is corrupt: its state does not match the digest saved with it")
        history = {name: np.asarray(values) for name, values in restored.history.items()}
        return state, history, meta


def _shapes_by_path(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"train_state/params/...": (shape, dtype)}``: the same keys for a live state and orbax's metadata of
    it (which stores named tuples and dataclasses as dicts)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path): (
            tuple(leaf.shape),
            str(np.dtype(leaf.dtype)),
        )
        for path, leaf in leaves
    }


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip() and not line.startswith("Traceback")]
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text[:200]}{' ...' if len(text) > 200 else ''}"


def check_writable(directory: Path, name: str = "--out", hint: str = "") -> None:
    """Fails early, with one line naming ``name`` (the flag or variable that gave ``directory``) and ending in
    ``hint``, if ``directory`` is not one that can be created or written."""
    where = f"{name} {str(directory)!r}"
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{where} is not a directory{hint}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write_test_{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"{where} is not writable: {error.strerror or error}{hint}") from None


def new_run_checkpoints(out: Path, resume_command: str) -> RunCheckpoints:
    """The checkpoints of a new run in ``out`` (control or LM); refuses an unwritable directory and one that
    holds another run's checkpoints, naming ``resume_command`` to continue that one instead."""
    check_writable(out)
    checkpoints = RunCheckpoints(out / "checkpoints")  # not a writer yet: another run may be saving there
    if checkpoints.latest_step() is not None:
        raise ValueError(
            f"--out {str(out)!r} holds checkpoints of an earlier run; continue it with {resume_command}, "
            "or choose another --out (or delete that one)"
        )
    return checkpoints
