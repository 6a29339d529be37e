"""Reporting progress to the host from inside a jitted training loop that is split over devices.

The chunk runner (``purerl.io.chunked``) runs each device's seeds under ``jax.shard_map``: inside it, the
program is one device's program, and a host callback runs once per device with that device's own values.
No value crosses devices and no collective is added. (Under automatic sharding, ``jax.jit`` with sharded
inputs, JAX gives every host callback a maximal sharding on device 0: XLA then gathers every seed's value
to device 0 and broadcasts the result back, a collective inside a conditional inside the training loop.)

``emit_progress`` must be called outside ``jax.vmap``: ``jax.debug.callback`` under ``vmap`` unrolls one call
per mapped element, thousands of host calls for thousands of seeds. The chunk runner calls it in the body of
its scan over updates, after the vmapped update, with the values of all of the device's runs at once.
"""

from collections.abc import Callable

import jax
import numpy as np

ProgressFn = Callable[[int, np.ndarray, np.ndarray], None]
"""Host function ``fn(update, run_ids, values)``: ``update`` is the 0-based update index, ``run_ids`` the
runs of the calling device and ``values`` one value for each. Called from several device threads at once."""

MAX_REPORTS = 200


def report_every(num_updates: int) -> int:
    """Updates between reports: about ``MAX_REPORTS`` reports per run (and always the last update)."""
    return max(1, num_updates // MAX_REPORTS)


def emit_progress(fn: ProgressFn, update: jax.Array, run_ids: jax.Array, values: jax.Array, num_updates: int) -> None:
    """Calls ``fn(update, run_ids, values)`` on the host every ``report_every(num_updates)`` updates and at
    the last one. ``update`` is a scalar (the scan's index), ``run_ids`` and ``values`` are ``[R]`` arrays."""

    def call() -> None:
        jax.debug.callback(lambda u, r, v: fn(int(u), np.asarray(r), np.asarray(v)), update, run_ids, values)

    report = (update % report_every(num_updates) == 0) | (update == num_updates - 1)
    jax.lax.cond(report, call, lambda: None)
