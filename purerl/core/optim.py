"""Every optimiser purerl builds, its learning-rate schedules and the one gradient step.

- ``clipped_adam``: global-norm clipping, then Adam whose learning rate is a hyperparameter of the optimiser
  state, set by the training loop at the start of every update (``set_learning_rate``) so that a schedule
  over updates or env steps stays exact even when an update skips epochs (the control agents).
- ``clipped_adamw``: global-norm clipping, then AdamW (weight decay on matrices only, as nanoGPT) following
  a schedule of optimiser steps, e.g. ``warmup_cosine`` (the language-model methods).
- ``gradient_step``: one optimiser step on a loss with metrics, reporting the gradient norm.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState


def clipped_adam(learning_rate: float, max_grad_norm: float | None, eps: float) -> optax.GradientTransformation:
    """``clip_by_global_norm(max_grad_norm)`` (none: no clipping, as SAC) then Adam (``eps``) with an injected
    ``learning_rate``."""
    return optax.chain(
        optax.identity() if max_grad_norm is None else optax.clip_by_global_norm(max_grad_norm),
        optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, eps=eps),
    )


def set_learning_rate(train_state: TrainState, learning_rate: jax.Array) -> TrainState:
    """Sets the Adam learning rate of an optimiser built by ``clipped_adam``."""
    clip_state, adam_state = train_state.opt_state
    adam_state = adam_state._replace(hyperparams=adam_state.hyperparams | {"learning_rate": learning_rate})
    return train_state.replace(opt_state=(clip_state, adam_state))


def linear_annealing(learning_rate: float | jax.Array, done: jax.Array, total: int, anneal: bool) -> jax.Array:
    """The learning rate once ``done`` of ``total`` units of training (updates, or env steps) have passed:
    decays linearly from ``learning_rate`` (at ``done = 0``) towards 0 (reached at ``done = total``, after the
    last update) if ``anneal``, else constant (PureJaxRL's and CleanRL's annealing)."""
    if not anneal:
        return jnp.asarray(learning_rate, jnp.float32)
    return learning_rate * (1.0 - done / total)


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int, floor_fraction: float) -> optax.Schedule:
    """The rate of optimiser step ``s`` (0-based; ``N = total_steps``, ``W = warmup_steps``):
    ``peak * (s + 1) / W`` during the warm-up, so the first step already learns and step ``W - 1`` is at the
    peak; then a cosine from the peak at step ``W`` towards ``floor_fraction * peak``, reached at step ``N``,
    one past the last, so the last step still learns (a decay to 0 gives it
    ``peak * (1 + cos(pi * (N - W - 1) / (N - W))) / 2``). Warm-up then cosine as Loshchilov & Hutter (2017)
    and nanoGPT; neither end has a step at rate 0, as ``linear_annealing`` (first ``lr``, last ``lr / N``)."""
    cosine = optax.cosine_decay_schedule(peak, total_steps - warmup_steps, alpha=floor_fraction)
    if warmup_steps == 0:
        return cosine
    linear = optax.linear_schedule(peak / warmup_steps, peak * (warmup_steps + 1) / warmup_steps, warmup_steps)
    return optax.join_schedules([linear, cosine], [warmup_steps])


def clipped_adamw(
    schedule: optax.Schedule, max_grad_norm: float, weight_decay: float, b1: float = 0.9, b2: float = 0.99
) -> optax.GradientTransformation:
    """``clip_by_global_norm(max_grad_norm)`` then AdamW following ``schedule``, decaying matrices only."""
    decay_matrices = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_matrices),
    )


def gradient_step(
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    *args: Any,
) -> tuple[Any, Any, dict[str, jax.Array]]:
    """One optimiser step on ``loss_fn(params, *args) -> (loss, metrics)``: ``(params, opt_state, metrics)``,
    the metrics with the gradient's global norm (before clipping) added as ``grad_norm``."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics | {"grad_norm": optax.tree.norm(grads)}


def optimizer_step(
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]], optimizer: optax.GradientTransformation
) -> Callable[[tuple[Any, Any], Any], tuple[tuple[Any, Any], dict[str, jax.Array]]]:
    """``gradient_step`` as ``step((params, opt_state), minibatch) -> ((params, opt_state), metrics)``, the
    form ``purerl.core.minibatch.minibatch_epochs`` scans."""

    def step(carry: tuple[Any, Any], minibatch: Any):
        params, opt_state, metrics = gradient_step(loss_fn, optimizer, *carry, minibatch)
        return (params, opt_state), metrics

    return step
