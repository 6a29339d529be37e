"""What PPO and GRPO on text return from their ``make_*`` functions."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

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
