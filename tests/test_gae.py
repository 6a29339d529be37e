"""purerl.gae against a plain Python loop, and the time-limit truncation case it exists to get right."""

import jax.numpy as jnp
import numpy as np
import pytest

from purerl import gae


def gae_reference(rewards, values, next_values, terminated, done, gamma, lam):
    """The textbook recursion, one env and one step at a time."""
    T, B = rewards.shape
    advantages = np.zeros((T, B))
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, b] else gamma * next_values[t, b]
            delta = rewards[t, b] + bootstrap - values[t, b]
            running = delta + (0.0 if done[t, b] else gamma * lam * running)
            advantages[t, b] = running
    return advantages, advantages + values


@pytest.mark.parametrize("seed, unroll", [(0, 1), (1, 1), (2, 1), (0, 8)])  # 37 steps: 4 unrolled + 5
def test_gae_matches_python_loop_with_mixed_terminations_and_truncations(seed, unroll):
    rng = np.random.default_rng(seed)
    T, B = 37, 5
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    next_values = rng.normal(size=(T, B))
    terminated = rng.random((T, B)) < 0.1
    truncated = (rng.random((T, B)) < 0.1) & ~terminated
    done = terminated | truncated
    assert terminated.any() and truncated.any()
    expected_adv, expected_targets = gae_reference(rewards, values, next_values, terminated, done, 0.97, 0.9)
    adv, targets = gae(
        jnp.asarray(rewards, jnp.float32),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(next_values, jnp.float32),
        jnp.asarray(terminated),
        jnp.asarray(done),
        0.97,
        0.9,
        unroll,
    )
    np.testing.assert_allclose(adv, expected_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected_targets, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_from_final_observation_value():
    """A 3-step episode cut by a time limit at t=2, then a new episode starts at t=3.

    Hand computation with gamma=0.5, lambda=1, rewards 1, V(s_t)=0 for all t, V(final obs of t=2)=10,
    V(first obs of next episode)=100 (what a naive implementation would bootstrap from at t=2):
      correct:   A_2 = 1 + 0.5*10 = 6;  A_1 = 1 + 0.5*6 = 4;  A_0 = 1 + 0.5*4 = 3
      treating truncation as termination: A_2 = 1, A_1 = 1.5, A_0 = 1.75
    """
    rewards = jnp.ones(4)
    values = jnp.zeros(4)
    # next_values[t] is V(true next obs of step t): t=2's is the final obs (10); t=3 bootstraps from 0.
    next_values = jnp.array([0.0, 0.0, 10.0, 0.0])
    truncated = jnp.array([False, False, True, False])
    terminated = jnp.zeros(4, bool)
    adv, _ = gae(rewards, values, next_values, terminated, truncated, 0.5, 1.0)
    np.testing.assert_allclose(adv[:3], [3.0, 4.0, 6.0])
    adv_as_terminal, _ = gae(rewards, values, next_values, truncated, truncated, 0.5, 1.0)
    np.testing.assert_allclose(adv_as_terminal[:3], [1.75, 1.5, 1.0])


def test_termination_does_not_bootstrap_and_cuts_recursion():
    rewards = jnp.array([1.0, 2.0, 3.0])
    values = jnp.array([0.5, 0.5, 0.5])
    next_values = jnp.array([0.5, 99.0, 0.5])  # 99 must be ignored: step 1 terminated
    terminated = jnp.array([False, True, False])
    adv, targets = gae(rewards, values, next_values, terminated, terminated, 0.9, 0.8)
    a2 = 3.0 + 0.9 * 0.5 - 0.5
    a1 = 2.0 - 0.5
    a0 = 1.0 + 0.9 * 0.5 - 0.5 + 0.9 * 0.8 * a1
    np.testing.assert_allclose(adv, [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(targets, np.array([a0, a1, a2]) + 0.5, rtol=1e-6)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(AssertionError):
        gae(jnp.ones(3), jnp.ones(4), jnp.ones(3), jnp.zeros(3, bool), jnp.zeros(3, bool), 0.99, 0.95)
