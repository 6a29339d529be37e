"""Generalised Advantage Estimation (Schulman et al. 2016), truncation-aware.

One implementation, used by every agent in purerl (PPO on gymnax, KL-penalised PPO on text).
"""

import chex
import jax
import jax.numpy as jnp


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
    unroll: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets for a time-major rollout.

    All arrays are ``[T, ...]`` (time first, any batch shape after it) and share one shape.

    Args:
      rewards: r_t, the reward of step t.
      values: V(s_t), the value of the observation the action was taken in.
      next_values: V(s'_t), the value of the *true* next observation of step t. After an auto-reset this is the
        value of the final observation of the finished episode, not of the first observation of the next one.
      terminated: 1 where step t ended the episode in a terminal state (no future reward: no bootstrap).
      done: ``terminated | truncated``: 1 where the episode ended for any reason. The recursion is cut here,
        because step t+1 belongs to another episode.
      gamma: discount.
      gae_lambda: GAE lambda.
      unroll: steps per iteration of the backward scan (fewer kernel launches on a GPU; the same result).

    Returns:
      ``(advantages, targets)`` with ``targets = advantages + values`` (the value-function regression target).

    With ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t``,
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``. A time-limit truncation therefore still
    bootstraps from V(final observation), while a real termination does not.
    """
    chex.assert_equal_shape((rewards, values, next_values, terminated, done))
    dtype = values.dtype
    not_terminated = 1.0 - terminated.astype(dtype)
    not_done = 1.0 - done.astype(dtype)
    deltas = rewards.astype(dtype) + gamma * not_terminated * next_values - values

    def backward_step(next_advantage: jax.Array, step: tuple[jax.Array, jax.Array]):
        delta, continues = step
        advantage = delta + gamma * gae_lambda * continues * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward_step, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True, unroll=unroll
    )
    return advantages, advantages + values
