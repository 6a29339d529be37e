"""Training many runs in jitted chunks of updates, so that a long run can be checkpointed, interrupted and
resumed without losing anything.

``train(key)`` is ``init`` then a ``lax.scan`` of ``update`` over all updates. Here the same ``update``,
vmapped over runs, is scanned ``chunk_updates`` at a time by one compiled program per chunk length (a
shorter last chunk compiles once more), which every device runs on its own slice of the runs
(``purerl.core.sharding.on_each_device``); the state of every run is carried from chunk to chunk on the
devices. After each chunk the host collects its metrics, reports progress, stops on a non-finite loss or
parameter, saves a checkpoint every ``checkpoint_every`` updates and whenever ``checkpoint_minutes`` of wall
time passed since the last save (so a SIGKILL loses at most that much), and saves one and stops if SIGINT (Ctrl-C)
or SIGTERM arrived during the chunk (or exits after a grace period if the chunk does not end). The update
index is an argument of each chunk, so every update computes exactly what it computes in the single scan: a
resumed run is bitwise identical to an uninterrupted one with the same chunks.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from purerl.core.sharding import (
    BY_SEED,
    REPLICATED,
    any_process,
    barrier,
    on_each_device,
    shard_seeds,
    to_host,
    unpad,
)
from purerl.io.checkpoints import TRAIN_SECONDS, CheckpointError, RunCheckpoints
from purerl.io.stopping import DEFAULT_STOP_GRACE, Interrupted, NonFiniteError, StopSignals


@dataclass
class TrainOutput:
    padded_state: Any  # every run's final state, leading axis = run, padded to the mesh and on its devices
    metrics: dict[str, np.ndarray]  # name -> [runs, updates]
    compile_seconds: float
    train_seconds: float  # this process's
    resumed_from: int  # updates already done when this process started (0 for a fresh run)
    restored_train_seconds: float | None = 0.0  # the earlier processes' (None: saved before purerl kept it)


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


def learned_params(state: Any) -> list[Any]:
    """The parameters of every ``TrainState`` in a run's state (PPO's network; SAC's actor, critics and
    temperature; PbRL's policy and reward model)."""
    is_train_state = lambda x: isinstance(x, TrainState)  # noqa: E731
    return [x.params for x in jax.tree.leaves(state, is_leaf=is_train_state) if is_train_state(x)]


def init_runs(init: Any, keys: jax.Array, configs: Any, mesh: Any) -> Any:
    """Every run's initial state (``init(keys[r], configs[r])``, the config traced per run for a sweep,
    ``purerl.core.config``), computed on one device of this process
    and then split over ``mesh``, padded (``shard_seeds``).

    Not on every device at once: on the CPU, the orthogonal initialisation's batched QR (jaxlib's LAPACK
    kernel) fans its batch out into XLA's intra-op thread pool and blocks its pool thread until the parts are
    done; with one such kernel running per device, every pool thread can be waiting for a free one, and the
    process hangs at 0% CPU (3 runs in 4 with 4 virtual devices on 2 cores). Initialisation is cheap, so one
    device does it for every run."""
    one_device = jax.local_devices()[0]
    state = jax.jit(jax.vmap(init))(*jax.device_put((keys, configs), one_device))
    return shard_seeds(state, mesh)


def chunk_program(update: Any, mesh: Any) -> Any:
    """The jitted ``chunk(state, indices) -> (state, metrics, params_finite)``: every device scans ``update``
    (vmapped over its runs) over the update ``indices``; ``metrics`` come out ``[runs, updates]``. ``state``
    is donated. The program holds no host callback, so the compilation cache can keep it."""

    def run_chunk(state: Any, indices: jax.Array):
        state, metrics = jax.lax.scan(jax.vmap(update, in_axes=(0, None)), state, indices)
        finite = jax.vmap(lambda run: _all_finite(learned_params(run)))(state)
        return state, jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics), finite

    return jax.jit(on_each_device(run_chunk, mesh, (BY_SEED, REPLICATED), BY_SEED), donate_argnums=0)


def entry_differences(meta: dict[str, Any], stored_meta: dict[str, Any]) -> list[str]:
    """``"NAME is A there and B here"`` for each entry of ``meta`` (as JSON reads it back) ``stored_meta`` holds
    otherwise."""
    return [
        f"{name} is {stored_meta.get(name)!r} there and {value!r} here"
        for name, value in json.loads(json.dumps(meta)).items()
        if stored_meta.get(name) != value
    ]


def extend_history(history: dict[str, np.ndarray], metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``history`` (name -> ``[runs, updates so far]``) followed by a chunk's ``metrics`` (name -> ``[runs,
    chunk]``). A metric the earlier updates lack (a checkpoint saved before purerl reported it) is NaN there, so
    that every column keeps one value per update; one the chunk lacks (no longer reported) is dropped."""
    if not history:
        return dict(metrics)
    done = next(iter(history.values())).shape[1]
    return {
        name: np.concatenate([history.get(name, np.full((values.shape[0], done), np.nan)), values], axis=1)
        for name, values in metrics.items()
    }


def train_in_chunks(
    init: Any,
    update: Any,
    num_updates: int,
    keys: jax.Array,
    configs: Any,
    mesh: Any,
    chunk_updates: int | None = None,
    checkpoints: RunCheckpoints | None = None,
    checkpoint_every: int = 0,
    checkpoint_minutes: float = 0.0,
    meta: dict[str, Any] | None = None,
    meta_differences: Callable[[dict[str, Any]], list[str]] | None = None,
    progress: Callable[[int, np.ndarray], None] | None = None,
    on_compile: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    run_name: Callable[[int], str] = "run {}".format,
    stop_grace: float = DEFAULT_STOP_GRACE,
    progress_metric: str = "episode_return",
) -> TrainOutput:
    """Trains ``len(keys)`` runs (run ``r`` from ``keys[r]`` with config ``configs[r]``: one config, whose
    swept fields, if any, are traced with one value per run) with ``init(key, config)`` and
    ``update(state, index) -> (state, metrics)`` of one algorithm, every device of
    ``mesh`` training its own slice of the runs.

    ``chunk_updates=None`` scans all updates in one chunk. With ``checkpoints``, a run whose directory holds
    a checkpoint resumes from the newest one; checkpoints are saved every ``checkpoint_every`` updates
    (0: never periodically), after the first chunk that ends ``checkpoint_minutes`` or more after the last save
    or the start of training (0: never by time), at the end, and when a stop signal arrives (``StopSignals``, with
    ``stop_grace``). ``meta`` describes the run and is stored with every checkpoint, with the run's training
    seconds so far over all its processes (``TRAIN_SECONDS``; a resumed run reports them apart); a
    resume refuses a checkpoint for which ``meta_differences(stored_meta)`` names differences (default: the
    entries of ``meta`` stored otherwise). ``progress(done,
    values)`` is called after each chunk with the updates done and every run's last ``progress_metric``;
    ``on_compile()`` before anything compiles (after a resumed run's checkpoint is accepted);
    ``on_start(first_update)`` once compilation is done; ``on_chunk(first_update, metrics)`` after
    each chunk with its metrics (name -> ``[runs, updates]``), before its checkpoint, and once with the restored
    metrics of a resumed run; ``run_name(r)`` names run ``r`` in errors.
    """
    num_runs = keys.shape[0]
    chunk_updates = num_updates if chunk_updates is None else min(chunk_updates, num_updates)
    chunk = chunk_program(update, mesh)

    start, history, restored_seconds = 0, {}, 0.0
    step = checkpoints.latest_step() if checkpoints is not None else None
    if step is not None:
        like = jax.eval_shape(jax.vmap(init), keys, configs)
        differences = (meta_differences or partial(entry_differences, meta or {}))(checkpoints.meta(step))
        if differences:
            raise CheckpointError(
                f"checkpoint {checkpoints.directory}/{step} was saved by a different run: " + "; ".join(differences)
            )
        restored, history, stored_meta = checkpoints.restore(step, like)
        state, start = shard_seeds(restored, mesh), step
        restored_seconds = stored_meta.get(TRAIN_SECONDS)
        if on_chunk is not None:
            on_chunk(0, history)  # the restored updates, for a tracker added at this resume (the others rewrite)
    if on_compile is not None:
        on_compile()
    if step is None:
        state = init_runs(init, keys, configs, mesh)

    # Compile every chunk length this run needs before the clock starts.
    compile_start = time.perf_counter()
    bounds = list(range(start, num_updates, chunk_updates)) + [num_updates]
    compiled = {}
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        if high - low not in compiled:
            compiled[high - low] = chunk.lower(state, np.arange(low, high)).compile()
    compile_seconds = time.perf_counter() - compile_start
    barrier(f"compiled chunks from update {start}")  # hosts finish compiling at different times

    if on_start is not None:
        on_start(start)
    train_start = time.perf_counter()
    with StopSignals(grace_seconds=stop_grace) as signals:
        if checkpoints is not None and start:
            signals.last_saved = f"update {start} in {checkpoints.directory}"

        last_save, train_end = time.monotonic(), None

        def save(done: int) -> None:
            nonlocal last_save, train_end
            now = time.perf_counter()
            if done == num_updates:  # training ends here, so the summary's time is the one this checkpoint records
                train_end = now
            so_far = None if restored_seconds is None else restored_seconds + now - train_start
            checkpoints.save(done, unpad(state, num_runs), history, (meta or {}) | {TRAIN_SECONDS: so_far})
            signals.last_saved = f"update {done} in {checkpoints.directory}"
            last_save = time.monotonic()

        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            state, metrics, finite = compiled[high - low](state, np.arange(low, high))
            metrics, finite = unpad(to_host((metrics, finite)), num_runs)
            problem = first_non_finite(metrics["loss"], finite, low, run_name)
            if problem is not None:
                kept = checkpoints.latest_step() if checkpoints is not None else None
                where = f"; the last good checkpoint is update {kept} in {checkpoints.directory}" if kept else ""
                raise NonFiniteError(problem + where)
            if progress is not None:
                progress(high, metrics[progress_metric][:, -1])
            if on_chunk is not None:
                on_chunk(low, metrics)
            history = extend_history(history, metrics)
            stop = any_process(signals.received is not None)  # every process stops at the same chunk
            if checkpoints is None:
                if stop:
                    raise KeyboardInterrupt
                continue
            periodic = checkpoint_every > 0 and high // checkpoint_every > low // checkpoint_every
            # every process decides alike: a save is collective
            timely = checkpoint_minutes > 0 and any_process(time.monotonic() - last_save >= 60 * checkpoint_minutes)
            if periodic or timely or high == num_updates or stop:
                save(high)
            if stop and high < num_updates:
                where = checkpoints.directory
                raise Interrupted(
                    f"{signals.received or 'stop'} at update {high}/{num_updates}; saved in {where}", signals.signum
                )
        jax.block_until_ready(state)
    train_seconds = (time.perf_counter() if train_end is None else train_end) - train_start
    return TrainOutput(state, history, compile_seconds, train_seconds, start, restored_seconds)
