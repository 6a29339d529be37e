"""Reporting progress to the host from inside a jitted, vmapped training loop.

``jax.debug.callback`` unrolls one host call per vmapped seed (thousands of ops for thousands of seeds),
so progress goes through ``jax.pure_callback`` with ``vmap_method="expand_dims"``: one host call per
report, receiving the values of every seed at once. A pure callback whose result is unused would be
dead-code-eliminated, so it returns a zero "token" that the caller adds to a value it returns.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ProgressFn = Callable[[int, np.ndarray], None]
"""Host function ``fn(update, values)``: ``update`` is the 0-based update index, ``values`` one value per seed."""


MAX_REPORTS = 200


def emit_progress(fn: ProgressFn | None, update: jax.Array, value: jax.Array, num_updates: int) -> jax.Array:
    """Calls ``fn`` on the host about ``MAX_REPORTS`` times per run, always at the last update; returns a
    float32 zero to add to an output. ``update`` must not be batched (use the scan's ``jnp.arange`` index),
    ``value`` is a scalar per seed."""
    if fn is None:
        return jnp.zeros((), jnp.float32)

    def host(update_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        fn(int(np.ravel(update_idx)[0]), np.ravel(values))
        return np.zeros(np.shape(values), np.float32)

    def call(u: jax.Array, v: jax.Array) -> jax.Array:
        result = jax.ShapeDtypeStruct(jnp.shape(v), jnp.float32)
        return jax.pure_callback(host, result, u, v.astype(jnp.float32), vmap_method="expand_dims")

    every = max(1, num_updates // MAX_REPORTS)
    report = (update % every == 0) | (update == num_updates - 1)
    return jax.lax.cond(report, call, lambda u, v: jnp.zeros_like(v, jnp.float32), update, value)
