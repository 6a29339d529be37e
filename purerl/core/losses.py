"""Policy-gradient loss pieces shared by every agent: clipped surrogate, clipped value loss, normalisation.

Each loss returns per-element values; the caller chooses how to aggregate them (a plain mean for PPO on
gymnax, ``aggregate_loss`` over the valid steps of whole sequences for GRPO and language models), so there
is one definition of each objective.
"""

from typing import Literal

import chex
import jax
import jax.numpy as jnp

from purerl.core.spread import range_has_spread


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``x`` over entries where ``mask`` is true (all entries when ``mask`` is None)."""
    if mask is None:
        return jnp.mean(x)
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def normalize(x: jax.Array, mask: jax.Array | None = None, eps: float = 1e-8) -> jax.Array:
    """``(x - mean) / (std + eps)`` over all (or the masked) entries; the std is the population std (ddof=0).
    Values with no spread (all equal up to rounding, ``purerl.core.spread``) give exactly 0."""
    mean = masked_mean(x, mask)
    centred = jnp.where(range_has_spread(x, mask), x - mean, 0.0)
    std = jnp.sqrt(masked_mean(jnp.square(centred), mask))
    return centred / (std + eps)


def clipped_surrogate_loss(
    log_ratio: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
    clip_eps_high: float | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """PPO's clipped surrogate, as a loss to minimise, per element.

    ``loss = -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A)`` with ``r = exp(log_ratio)`` and
    ``log_ratio = log pi_new(a|s) - log pi_old(a|s)``. ``clip_eps_high`` defaults to ``clip_eps``
    (symmetric clipping); DAPO's "clip-higher" sets it larger.

    Returns ``(loss, clipped)``, both shaped like ``advantages``; ``clipped`` is 1.0 where the ratio lies
    outside the clip range (its mean is the usual "clip fraction").
    """
    chex.assert_equal_shape((log_ratio, advantages))
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    loss = -jnp.minimum(unclipped, clipped_ratio * advantages)
    clipped = ((ratio < 1.0 - clip_eps) | (ratio > 1.0 + eps_high)).astype(ratio.dtype)
    return loss, clipped


def clipped_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    targets: jax.Array,
    clip_eps: float | jax.Array | None,
) -> jax.Array:
    """Squared-error value loss per element, ``0.5 * (V - target)^2``.

    With ``clip_eps`` set, the PPO value clipping of Baselines/CleanRL: the new value may move at most
    ``clip_eps`` from the rollout value, and the larger (pessimistic) of the clipped and unclipped errors is
    taken: ``0.5 * max((V - t)^2, (V_old + clip(V - V_old, -eps, eps) - t)^2)``.
    """
    chex.assert_equal_shape((values, old_values, targets))
    unclipped = jnp.square(values - targets)
    if clip_eps is None:
        return 0.5 * unclipped
    values_clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum(unclipped, jnp.square(values_clipped - targets))


LossAggregation = Literal["grpo", "dapo", "dr_grpo"]
LOSS_AGGREGATIONS: tuple[str, ...] = ("grpo", "dapo", "dr_grpo")


def aggregate_loss(
    loss: jax.Array, mask: jax.Array, mode: LossAggregation, horizon: int, time_axis: int = 0
) -> jax.Array:
    """Reduces a per-step loss over sequences ``loss``, ``mask``: ``[T, B]`` (``time_axis=0``, control
    rollouts) or ``[B, T]`` (``time_axis=1``, token sequences) to a scalar; only masked-in steps count.

    - ``grpo``: mean over each sequence's valid steps, then mean over sequences (GRPO paper, eq. 3): a step
      of a short sequence weighs more than a step of a long one.
    - ``dapo``: mean over all valid steps of the batch (DAPO, arXiv 2503.14476, "token-level loss"):
      every step weighs the same.
    - ``dr_grpo``: sum over valid steps divided by the constant ``B * horizon`` (Dr. GRPO, arXiv 2503.20783):
      no length normalisation at all, so the gradient scale does not depend on sequence lengths.
    """
    chex.assert_equal_shape((loss, mask))
    chex.assert_rank(loss, 2)
    if mode not in LOSS_AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {mode!r}; choose one of {LOSS_AGGREGATIONS}")
    weights = mask.astype(loss.dtype)
    masked = loss * weights
    if mode == "grpo":
        per_sequence = jnp.sum(masked, axis=time_axis) / jnp.maximum(jnp.sum(weights, axis=time_axis), 1.0)
        return jnp.mean(per_sequence)
    if mode == "dapo":
        return jnp.sum(masked) / jnp.maximum(jnp.sum(weights), 1.0)
    num_sequences = loss.shape[1 - time_axis]
    return jnp.sum(masked) / (num_sequences * horizon)
