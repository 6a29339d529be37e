"""When a spread is zero: the one rule that every normalisation by a spread follows.

The spread (a standard deviation or a range) of float32 values that are all equal is often not 0 but a
rounding residue. The mean of eight copies of 1/3 is one rounding step away from 1/3, so every deviation from
it is about 3e-8, and so is their "std"; dividing by that residue turns rounding noise into advantages of
about +-0.03 (GRPO's group advantages), or +-1 after whitening. So purerl treats a spread no larger than
``SPREAD_RTOL`` times the values' magnitude as zero spread: centred values become exactly 0 and nothing is
divided by the residue. Every normalisation follows it: group advantages (control and LM GRPO) and their
zero-spread fraction, per-minibatch advantage whitening (PPO and LM PPO), observation normalisation, reward
scaling, explained variance, and the score range of a sweep.

Batch statistics use the range (max - min, exact for equal values: 0) against the largest magnitude; running
statistics, which keep no range, use their std against the magnitude of their mean.
"""

import jax
import jax.numpy as jnp

SPREAD_RTOL = 1e-6  # about 8 float32 rounding steps (eps 1.19e-7) of the largest magnitude


def has_spread(spread: jax.Array, magnitude: jax.Array) -> jax.Array:
    """True where ``spread`` (a std or a range, >= 0) exceeds ``SPREAD_RTOL * magnitude`` (both >= 0): the
    values really differ. False for equal values, whose computed spread is 0 or a rounding residue."""
    return spread > SPREAD_RTOL * magnitude


def range_has_spread(x: jax.Array, mask: jax.Array | None = None, axis=None, keepdims: bool = False) -> jax.Array:
    """``has_spread`` of the range of ``x`` over ``axis`` (all axes when None), counting only entries where
    ``mask`` is true; a reduction with no such entry, or a single one, has no spread."""
    mask = jnp.ones(x.shape, bool) if mask is None else mask
    high = jnp.max(jnp.where(mask, x, -jnp.inf), axis=axis, keepdims=keepdims)
    low = jnp.min(jnp.where(mask, x, jnp.inf), axis=axis, keepdims=keepdims)
    taking_part = jnp.any(mask, axis=axis, keepdims=keepdims)
    high, low = jnp.where(taking_part, high, 0.0), jnp.where(taking_part, low, 0.0)
    return has_spread(high - low, jnp.maximum(jnp.abs(high), jnp.abs(low)))
