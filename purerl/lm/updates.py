"""Epochs of shuffled minibatch steps over one rollout: the update loop PPO and GRPO on text share."""

from collections.abc import Callable
from typing import Any

import jax
import optax

from purerl.lm.training import gradient_step


def minibatch_epochs(
    loss_fn: Callable[[Any, Any], tuple[jax.Array, dict[str, jax.Array]]],
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    data: Any,
    key: jax.Array,
    epochs: int,
    minibatches: int,
) -> tuple[Any, Any, dict[str, jax.Array]]:
    """``epochs`` passes over ``data`` (a pytree of ``[B, ...]`` arrays), each reshuffled and split into
    ``minibatches`` gradient steps of ``loss_fn(params, minibatch) -> (loss, metrics)``.

    Returns ``(params, opt_state, metrics)`` with every metric shaped ``[epochs, minibatches]``, so the
    caller can read the first minibatch (where the policy still equals the rollout policy) apart.
    """

    def minibatch_step(carry, minibatch):
        params, opt_state, metrics = gradient_step(loss_fn, optimizer, *carry, minibatch)
        return (params, opt_state), metrics

    def epoch(carry, epoch_key):
        size = jax.tree.leaves(data)[0].shape[0]
        order = jax.random.permutation(epoch_key, size)
        shuffled = jax.tree.map(lambda x: x[order].reshape(minibatches, -1, *x.shape[1:]), data)
        return jax.lax.scan(minibatch_step, carry, shuffled)

    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
    return params, opt_state, metrics
