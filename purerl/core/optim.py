"""The optimiser shared by the policy-gradient agents: global-norm clipping, then Adam with a learning rate
that the training loop sets at the start of every update (so a schedule stays exact even when updates skip
epochs or minibatches)."""

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState


def make_optimizer(learning_rate: float, max_grad_norm: float, adam_eps: float) -> optax.GradientTransformation:
    """``clip_by_global_norm`` then Adam whose ``learning_rate`` is an injected hyperparameter."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, eps=adam_eps),
    )


def linear_annealing(learning_rate: float, done: jax.Array, total: int, anneal: bool) -> jax.Array:
    """The learning rate once ``done`` of ``total`` units of training (updates, or env steps) have passed:
    decays linearly from ``learning_rate`` to 0 if ``anneal``, else constant."""
    if not anneal:
        return jnp.asarray(learning_rate, jnp.float32)
    return learning_rate * (1.0 - done / total)


def with_learning_rate(train_state: TrainState, learning_rate: jax.Array) -> TrainState:
    """Sets the Adam learning rate of an optimiser built by ``make_optimizer``."""
    clip_state, adam_state = train_state.opt_state
    adam_state = adam_state._replace(hyperparams=adam_state.hyperparams | {"learning_rate": learning_rate})
    return train_state.replace(opt_state=(clip_state, adam_state))
