"""Group-relative advantages (GRPO; Shao et al., DeepSeekMath, arXiv 2402.03300).

A group is G samples drawn from the same starting point (an initial state in control, a prompt for a
language model). Each sample's score is compared with the rest of its group instead of with a learned
critic: ``A_i = (R_i - mean_G R) / (std_G R + eps)``, or only ``R_i - mean_G R`` with ``scale="none"``
(Dr. GRPO; Liu et al., arXiv 2503.20783, which argues the std division biases updates towards groups whose
answers are nearly all right or all wrong).
"""

from typing import Literal

import jax
import jax.numpy as jnp

AdvantageScale = Literal["std", "none"]
ADVANTAGE_SCALES: tuple[str, ...] = ("std", "none")


def group_advantages(
    scores: jax.Array,
    mask: jax.Array | None = None,
    scale: AdvantageScale = "std",
    eps: float = 1e-6,
) -> jax.Array:
    """Advantages of ``scores [..., G]`` relative to their group, the last axis.

    ``mask [..., G]`` (optional) marks the members that take part; the others are left out of the group's
    mean and std and get advantage 0. The std is the sample std (ddof=1), as in the GRPO paper and TRL; a
    group with fewer than two members has std 0. Members of a group whose scores are all equal get exactly
    zero advantage, so such a group contributes no policy gradient.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {ADVANTAGE_SCALES}")
    if mask is None:
        mask = jnp.ones(scores.shape, bool)
    weights = mask.astype(scores.dtype)
    count = jnp.sum(weights, axis=-1, keepdims=True)
    mean = jnp.sum(scores * weights, axis=-1, keepdims=True) / jnp.maximum(count, 1.0)
    centred = (scores - mean) * weights
    if scale == "none":
        return centred
    variance = jnp.sum(jnp.square(centred), axis=-1, keepdims=True) / jnp.maximum(count - 1.0, 1.0)
    return centred / (jnp.sqrt(variance) + eps)


def zero_spread_fraction(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of groups (last axis of ``scores [..., G]``) whose taking-part members all scored the same."""
    if mask is None:
        mask = jnp.ones(scores.shape, bool)
    high = jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1)
    low = jnp.min(jnp.where(mask, scores, jnp.inf), axis=-1)
    return jnp.mean((high <= low).astype(jnp.float32))
