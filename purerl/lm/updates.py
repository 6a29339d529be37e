"""What PPO and GRPO on text share: epochs of shuffled minibatch steps over one rollout, and the shape of
what their ``make_*`` functions return."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from purerl.core.optim import gradient_step
from purerl.lm.model import CausalLM
from purerl.lm.rollout import Rollout


class PolicyGradientMethod(NamedTuple):
    """A PPO or GRPO trainer. ``train_step(state, step) -> (state, metrics)`` is ``collect`` then ``update``;
    the two phases are exposed apart so that benchmarks can time sampling and the update separately."""

    model: CausalLM  # the policy
    state: Any
    train_step: Callable[[Any, int], tuple[Any, dict]]
    collect: Callable[[Any, int], tuple[Rollout, jax.Array]]  # sampled, scored rollout and the update's key
    update: Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, dict]]  # jitted (state, batch, scores, key)


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
