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

from purerl.core.spread import range_has_spread

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
    group with fewer than two members has std 0. Members of a group with no spread (all scores equal, up to
    rounding: ``purerl.core.spread``) get exactly zero advantage, so such a group contributes no policy
    gradient, and ``zero_spread_fraction`` counts it.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {ADVANTAGE_SCALES}")
    if mask is None:
        mask = jnp.ones(scores.shape, bool)
    weights = mask.astype(scores.dtype)
    count = jnp.sum(weights, axis=-1, keepdims=True)
    mean = jnp.sum(scores * weights, axis=-1, keepdims=True) / jnp.maximum(count, 1.0)
    spread = range_has_spread(scores, mask, axis=-1, keepdims=True)
    centred = jnp.where(spread, scores - mean, 0.0) * weights
    if scale == "none":
        return centred
    variance = jnp.sum(jnp.square(centred), axis=-1, keepdims=True) / jnp.maximum(count - 1.0, 1.0)
    return centred / (jnp.sqrt(variance) + eps)


def zero_spread_fraction(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of groups (last axis of ``scores [..., G]``) whose taking-part members have no spread: the
    groups that ``group_advantages`` gives zero advantage."""
    return jnp.mean(1.0 - range_has_spread(scores, mask, axis=-1).astype(jnp.float32))
