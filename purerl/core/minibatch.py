"""The one minibatch loop: epochs of gradient steps over one batch, each epoch a fresh shuffle split into
minibatches (PPO's detail 6, Huang et al. 2022), optionally stopping early once an epoch's statistics say
so (PPO's target-KL). Every on-policy update in purerl runs through it: control PPO and GRPO, LM PPO and GRPO.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

Carry = TypeVar("Carry")
Step = Callable[[Carry, Any], tuple[Carry, dict[str, jax.Array]]]


def shuffled_minibatches(batch: Any, key: jax.Array, num_minibatches: int, axis: int = 0) -> Any:
    """``batch`` (a pytree whose leaves share the size ``B`` of ``axis``) permuted along ``axis`` by ``key``
    and split into ``num_minibatches`` equal parts, stacked on a new leading axis: a leaf ``[..., B, ...]``
    becomes ``[num_minibatches, ..., B / num_minibatches, ...]``. ``axis=1`` keeps time-major episodes whole."""
    size = jax.tree.leaves(batch)[0].shape[axis]
    permutation = jax.random.permutation(key, size)

    def split(x: jax.Array) -> jax.Array:
        x = jnp.take(x, permutation, axis=axis)
        x = x.reshape(*x.shape[:axis], num_minibatches, size // num_minibatches, *x.shape[axis + 1 :])
        return jnp.moveaxis(x, axis, 0)

    return jax.tree.map(split, batch)


def minibatch_epochs(
    step: Step,
    carry: Carry,
    batch: Any,
    key: jax.Array,
    num_epochs: int,
    num_minibatches: int,
    axis: int = 0,
    stop: Callable[[dict[str, jax.Array]], jax.Array] | None = None,
) -> tuple[Carry, dict[str, jax.Array], jax.Array]:
    """``num_epochs`` passes of ``step(carry, minibatch) -> (carry, stats)`` over ``batch``, each pass with
    its own key from ``split(key, num_epochs)`` (``shuffled_minibatches``).

    With ``stop(epoch_stats) -> bool`` (``epoch_stats`` each ``[num_minibatches]``), the epochs after the
    first one for which it is true are skipped: their carry passes through and their stats are zeros.

    Returns ``(carry, stats, ran)``: every statistic ``[num_epochs, num_minibatches]`` (so the first
    minibatch, where the policy still equals the rollout policy, can be read apart) and ``ran [num_epochs]``,
    whether each epoch ran.
    """

    def run_epoch(carry: Carry, epoch_key: jax.Array):
        return jax.lax.scan(step, carry, shuffled_minibatches(batch, epoch_key, num_minibatches, axis))

    if stop is None:
        carry, stats = jax.lax.scan(run_epoch, carry, jax.random.split(key, num_epochs))
        return carry, stats, jnp.ones(num_epochs, bool)

    def skip_epoch(carry: Carry, epoch_key: jax.Array):
        shapes = jax.eval_shape(run_epoch, carry, epoch_key)[1]
        return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def epoch(state, epoch_key):
        carry, stopped = state
        carry, stats = jax.lax.cond(stopped, skip_epoch, run_epoch, carry, epoch_key)
        return (carry, stopped | stop(stats)), (stats, ~stopped)

    (carry, _), (stats, ran) = jax.lax.scan(epoch, (carry, jnp.asarray(False)), jax.random.split(key, num_epochs))
    return carry, stats, ran
