"""Training many runs in jitted chunks of updates, so that a long run can be checkpointed, interrupted and
resumed without losing anything.

``train(key)`` is ``init`` then a ``lax.scan`` of ``update`` over all updates. Here the same ``update``,
vmapped over runs, is scanned ``chunk_updates`` at a time by one compiled program per chunk length (a
shorter last chunk compiles once more), which every device runs on its own slice of the runs
(``purerl.core.sharding.on_each_device``); the state of every run is carried from chunk to chunk on the
devices. After each chunk the host collects its metrics, stops on a non-finite loss or parameter, saves a
checkpoint every ``checkpoint_every`` updates, and saves one and stops if SIGINT (Ctrl-C) or SIGTERM arrived
during the chunk (or exits after a grace period if the chunk does not end). The update index is an argument
of each chunk, so every update computes exactly what it computes in the single scan: a resumed run is
bitwise identical to an uninterrupted one with the same chunks.
"""

import json
import os
import select
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

from purerl.core.progress import ProgressFn, emit_progress
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
from purerl.io.checkpoints import CheckpointError, RunCheckpoints


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the run; the message says where it was saved and how to resume. The process
    exits with ``128 + signum``, as a process killed by the signal would."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN or infinite; the message names the update and the run."""


@dataclass
class TrainOutput:
    padded_state: Any  # every run's final state, leading axis = run, padded to the mesh and on its devices
    metrics: dict[str, np.ndarray]  # name -> [runs, updates]
    compile_seconds: float
    train_seconds: float
    resumed_from: int  # updates already done when this process started (0 for a fresh run)


DEFAULT_STOP_GRACE = 20.0  # seconds a stop request waits for the running chunk (schedulers SIGKILL after ~30 s)


def check_stop_grace(seconds: float) -> None:
    """``--stop-grace`` must be a positive, finite number of seconds that a thread can wait."""
    if not 0 < seconds <= threading.TIMEOUT_MAX:
        raise ValueError(f"--stop-grace must be > 0 and at most {threading.TIMEOUT_MAX:g} seconds, got {seconds!r}")


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``received``, so the running chunk finishes and the run is
    saved; a second Ctrl-C stops at once. Only the main thread can own signal handlers; elsewhere this is
    a no-op.

    The main thread may be blocked inside a computation, where Python signal handlers cannot run, so a
    watchdog thread does the rest. It learns of every signal from ``signal.set_wakeup_fd``, which the
    interpreter's C-level handler writes to at once, even then: it prints one line acknowledging the first
    stop signal; on a second SIGINT it exits at once (status 130); and if the process is still inside this
    context ``grace_seconds`` after the first signal (a chunk that does not finish, a save that hangs), it
    prints one line naming ``last_saved`` and exits with status 128 + the signal's number."""

    def __init__(self, unit: str = "the current chunk of updates", grace_seconds: float = DEFAULT_STOP_GRACE) -> None:
        check_stop_grace(grace_seconds)
        self.unit, self.grace_seconds = unit, grace_seconds
        self.received: str | None = None
        self.signum = signal.SIGINT
        self.last_saved = "none was saved"  # the loop keeps it current: "update 20 in DIR"
        self.previous: dict[int, Any] = {}
        self.finished = threading.Event()
        self.pipe: tuple[int, int] | None = None
        self.previous_wakeup_fd = -1

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received, self.signum = signal.Signals(signum).name, signum

    def _watch(self, read_fd: int) -> None:
        """Reads the signals written to the wakeup pipe until it is closed, acting on them (class docstring)."""
        first, deadline = None, None
        try:
            while not self.finished.is_set():
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                if not select.select([read_fd], [], [], timeout)[0]:  # the grace period ran out
                    self._exit(
                        first,
                        f"{signal.Signals(first).name}, and {self.unit} did not finish within the "
                        f"{self.grace_seconds:g} s grace period (--stop-grace); exiting without saving it",
                    )
                data = os.read(read_fd, 64)
                if not data:  # the pipe was closed: the context is done
                    return
                for signum in data:
                    if signum not in (signal.SIGINT, signal.SIGTERM):
                        continue
                    if first is None:
                        first, deadline = signum, time.monotonic() + self.grace_seconds
                        self._print(
                            f"\n{signal.Signals(signum).name}: stopping after {self.unit} (at most "
                            f"{self.grace_seconds:g} s; Ctrl-C again to stop at once) ..."
                        )
                    elif signum == signal.SIGINT:
                        self._exit(signum, "a second SIGINT; stopping at once without saving")
        finally:
            os.close(read_fd)

    def _exit(self, signum: int, why: str) -> None:
        if not self.finished.is_set():
            self._print(f"\npurerl: stopped: {why}; the last good checkpoint: {self.last_saved}")
            os._exit(128 + signum)

    @staticmethod
    def _print(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            self.pipe = (read_fd, write_fd)
            self.previous_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            threading.Thread(target=self._watch, args=(read_fd,), name="purerl-stop-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finished.set()
        if self.pipe is not None:
            signal.set_wakeup_fd(self.previous_wakeup_fd)
            os.close(self.pipe[1])  # the watchdog reads end-of-file, closes the read end and returns
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


def chunk_program(update: Any, num_updates: int, mesh: Any, progress: ProgressFn | None = None) -> Any:
    """The jitted ``chunk(state, indices, run_ids) -> (state, metrics, params_finite)``: every device scans
    ``update`` (vmapped over its runs) over the update ``indices``, reporting ``metrics["episode_return"]`` to
    ``progress`` in between; ``metrics`` come out ``[runs, updates]``. ``state`` is donated."""

    def run_chunk(state: Any, indices: jax.Array, run_ids: jax.Array):
        vmapped_update = jax.vmap(update, in_axes=(0, None))

        def body(state: Any, index: jax.Array):
            state, metrics = vmapped_update(state, index)
            if progress is not None:  # outside the vmap: one host call per device and report
                emit_progress(progress, index, run_ids, metrics["episode_return"], num_updates)
            return state, metrics

        state, metrics = jax.lax.scan(body, state, indices)  # the same program as vmap of the scan
        finite = jax.vmap(lambda runner: _all_finite(runner.train_state.params))(state)
        return state, jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics), finite

    in_specs = (BY_SEED, REPLICATED, BY_SEED)
    return jax.jit(on_each_device(run_chunk, mesh, in_specs, BY_SEED), donate_argnums=0)


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
    meta: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    on_start: Callable[[int], None] | None = None,
    run_name: Callable[[int], str] = "run {}".format,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> TrainOutput:
    """Trains ``len(keys)`` runs (run ``r`` from ``keys[r]`` with config ``configs[r]``: one config, whose
    swept fields, if any, are traced with one value per run) with ``init(key, config)`` and
    ``update(state, index) -> (state, metrics)`` of one algorithm, every device of
    ``mesh`` training its own slice of the runs.

    ``chunk_updates=None`` scans all updates in one chunk. With ``checkpoints``, a run whose directory holds
    a checkpoint resumes from the newest one; checkpoints are saved every ``checkpoint_every`` updates
    (0: never periodically), at the end, and when a stop signal arrives (``StopSignals``, with
    ``stop_grace``). ``meta`` describes the run and is stored with every checkpoint. ``progress(update,
    run_ids, values)`` receives ``metrics["episode_return"]`` from inside the chunks (``emit_progress``, per
    device); ``on_start(first_update)`` is called once compilation is done; ``run_name(r)`` names run ``r`` in
    errors.
    """
    num_runs = keys.shape[0]
    chunk_updates = num_updates if chunk_updates is None else min(chunk_updates, num_updates)
    run_ids = shard_seeds(np.arange(num_runs, dtype=np.int32), mesh)
    chunk = chunk_program(update, num_updates, mesh, progress)

    start, history = 0, {}
    step = checkpoints.latest_step() if checkpoints is not None else None
    if step is None:
        state = init_runs(init, keys, configs, mesh)
    else:
        like = jax.eval_shape(jax.vmap(init), keys, configs)
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
            compiled[high - low] = chunk.lower(state, np.arange(low, high), run_ids).compile()
    compile_seconds = time.perf_counter() - compile_start
    barrier(f"compiled chunks from update {start}")  # hosts finish compiling at different times

    if on_start is not None:
        on_start(start)
    train_start = time.perf_counter()
    with StopSignals(grace_seconds=stop_grace) as signals:
        if checkpoints is not None and start:
            signals.last_saved = f"update {start} in {checkpoints.directory}"

        def save(done: int) -> None:
            checkpoints.save(done, unpad(state, num_runs), history, meta or {})
            signals.last_saved = f"update {done} in {checkpoints.directory}"

        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            state, metrics, finite = compiled[high - low](state, np.arange(low, high), run_ids)
            metrics, finite = unpad(to_host((metrics, finite)), num_runs)
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
                raise Interrupted(
                    f"{signals.received or 'stop'} at update {high}/{num_updates}; saved in {where}", signals.signum
                )
        jax.block_until_ready(state)
    train_seconds = time.perf_counter() - train_start
    return TrainOutput(state, history, compile_seconds, train_seconds, start)
