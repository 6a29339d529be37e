"""Training many runs in jitted chunks of updates, so that a long run can be checkpointed, interrupted and
resumed without losing anything.

``train(key)`` is ``init`` then a ``lax.scan`` of ``update`` over all updates. Here the same ``update`` is
scanned ``chunk_updates`` at a time by one compiled ``jit(vmap(...))`` (a shorter last chunk compiles once
more); the state of every run is carried from chunk to chunk on the devices. After each chunk the host
collects its metrics, stops on a non-finite loss or parameter, saves a checkpoint every ``checkpoint_every``
updates, and saves one and stops if SIGINT (Ctrl-C) or SIGTERM arrived during the chunk. The update index
is an argument of each chunk, so every update computes exactly what it computes in the single scan: a
resumed run is bitwise identical to an uninterrupted one with the same chunks.
"""

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from purerl.core.sharding import SEED_AXIS, any_process, barrier, shard_seeds, to_host, unpad
from purerl.io.checkpoints import CheckpointError, RunCheckpoints


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the run; the message says where it was saved and how to resume."""


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN or infinite; the message names the update and the run."""


@dataclass
class TrainOutput:
    padded_state: Any  # every run's final state, leading axis = run, padded to the mesh and on its devices
    metrics: dict[str, np.ndarray]  # name -> [runs, updates]
    compile_seconds: float
    train_seconds: float
    resumed_from: int  # updates already done when this process started (0 for a fresh run)


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``received``, so the running chunk finishes and the run is
    saved; a second Ctrl-C stops at once. Only the main thread can own signal handlers; elsewhere this is
    a no-op."""

    def __init__(self, unit: str = "the current chunk of updates") -> None:
        self.unit = unit
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        print(f"\n{self.received}: stopping after {self.unit} ...", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def first_non_finite(
    loss: np.ndarray, params_finite: np.ndarray, first_update: int, run_name: Callable[[int], str] = "run {}".format
) -> str | None:
    """Where a chunk went wrong, or None: ``loss [runs, updates]`` of the chunk whose first update is
    ``first_update``, ``params_finite [runs]`` after it. The earliest update wins, then the lowest run."""
    bad = ~np.isfinite(loss)
    if bad.any():
        offset, run = min((int(u), int(r)) for r, u in zip(*np.nonzero(bad), strict=True))
        return f"non-finite loss at update {first_update + offset} in {run_name(run)}"
    if not params_finite.all():
        run = int(np.argmin(params_finite))
        return f"non-finite parameters after update {first_update + loss.shape[1] - 1} in {run_name(run)}"
    return None


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train_in_chunks(
    init: Any,
    update: Any,
    num_updates: int,
    keys: jax.Array,
    hparams: dict[str, jax.Array],
    mesh: Any,
    chunk_updates: int | None = None,
    checkpoints: RunCheckpoints | None = None,
    checkpoint_every: int = 0,
    meta: dict[str, Any] | None = None,
    on_start: Callable[[int], None] | None = None,
    run_name: Callable[[int], str] = "run {}".format,
) -> TrainOutput:
    """Trains ``len(keys)`` runs (run ``r`` from ``keys[r]`` with hyperparameters ``hparams[...][r]``) with
    ``init(key, hparams)`` and ``update(state, index)`` of one algorithm, split over the devices of ``mesh``.

    ``chunk_updates=None`` scans all updates in one chunk. With ``checkpoints``, a run whose directory holds
    a checkpoint resumes from the newest one; checkpoints are saved every ``checkpoint_every`` updates
    (0: never periodically), at the end, and when a stop signal arrives. ``meta`` describes the run and
    is stored with every checkpoint. ``on_start(first_update)`` is called once compilation is done;
    ``run_name(r)`` names run ``r`` in errors.
    """
    num_runs = keys.shape[0]
    chunk_updates = num_updates if chunk_updates is None else min(chunk_updates, num_updates)
    sharded_keys, sharded_hparams = shard_seeds((keys, hparams), mesh)
    # Explicit shardings: every leaf of the state (and of the metrics) is split along its leading run axis,
    # so each compiled chunk takes exactly what the previous one returned, on one host or many.
    by_run, replicated = NamedSharding(mesh, PartitionSpec(SEED_AXIS)), NamedSharding(mesh, PartitionSpec())
    init_runs = jax.jit(jax.vmap(init), out_shardings=by_run)

    def run_chunk(state: Any, indices: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        return jax.lax.scan(update, state, indices)

    chunk = jax.jit(
        jax.vmap(run_chunk, in_axes=(0, None)),
        in_shardings=(by_run, replicated),
        out_shardings=(by_run, by_run),
        donate_argnums=0,
    )
    params_finite = jax.jit(jax.vmap(lambda state: _all_finite(state.train_state.params)))

    start, history = 0, {}
    step = checkpoints.latest_step() if checkpoints is not None else None
    if step is None:
        state = init_runs(sharded_keys, sharded_hparams)
    else:
        like = jax.eval_shape(init_runs, keys, hparams)
        restored, history, stored_meta = checkpoints.restore(step, like)
        for name, value in json.loads(json.dumps(meta or {})).items():
            if stored_meta.get(name) != value:
                raise CheckpointError(
                    f"checkpoint {checkpoints.directory}/{step} was saved by a different run: "
                    f"{name} is {stored_meta.get(name)!r} there and {value!r} here"
                )
        state, start = shard_seeds(restored, mesh), step

    # Compile every chunk length this run needs before the clock starts.
    compile_start = time.perf_counter()
    bounds = list(range(start, num_updates, chunk_updates)) + [num_updates]
    compiled = {}
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        if high - low not in compiled:
            compiled[high - low] = chunk.lower(state, np.arange(low, high)).compile()
    compile_seconds = time.perf_counter() - compile_start
    barrier(f"compiled chunks from update {start}")  # hosts finish compiling at different times

    def save(done: int) -> None:
        checkpoints.save(done, unpad(state, num_runs), history, meta or {})

    if on_start is not None:
        on_start(start)
    train_start = time.perf_counter()
    with StopSignals() as signals:
        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            state, metrics = compiled[high - low](state, np.arange(low, high))
            metrics = unpad(to_host(metrics), num_runs)
            finite = unpad(to_host(params_finite(state)), num_runs)
            problem = first_non_finite(metrics["loss"], finite, low, run_name)
            if problem is not None:
                kept = checkpoints.latest_step() if checkpoints is not None else None
                where = f"; the last good checkpoint is update {kept} in {checkpoints.directory}" if kept else ""
                raise NonFiniteError(problem + where)
            history = {
                name: np.concatenate([history[name], values], axis=1) if name in history else values
                for name, values in metrics.items()
            }
            stop = any_process(signals.received is not None)  # every process stops at the same chunk
            if checkpoints is None:
                if stop:
                    raise KeyboardInterrupt
                continue
            periodic = checkpoint_every > 0 and high // checkpoint_every > low // checkpoint_every
            if periodic or high == num_updates or stop:
                save(high)
            if stop and high < num_updates:
                where = checkpoints.directory
                raise Interrupted(f"{signals.received or 'stop'} at update {high}/{num_updates}; saved in {where}")
        jax.block_until_ready(state)
    train_seconds = time.perf_counter() - train_start
    return TrainOutput(state, history, compile_seconds, train_seconds, start)
