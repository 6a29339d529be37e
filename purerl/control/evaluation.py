"""Evaluating a policy: every environment plays exactly one episode.

A fixed-length scan of ``max_steps`` (the env's ``max_steps_in_episode``) steps, with everything after an
environment's first ``terminated | truncated`` masked out, so auto-resets never start a second episode.
"""

from collections.abc import Callable
from typing import Any

import distrax
import jax
import jax.numpy as jnp


def select_seed(tree: Any, seed: int) -> Any:
    """Seed ``seed``'s slice of a vmapped run's state (or metrics): every leaf indexed on its leading axis.
    The result works with a single-seed ``policy``/``evaluate``, unbatched."""
    return jax.tree.map(lambda x: x[seed], tree)


PolicyFn = Callable[[jax.Array], distrax.Distribution]
"""``policy(obs [E, obs_dim]) -> distribution over actions``, with any observation preprocessing applied."""


def evaluate_episodes(
    policy: PolicyFn, env: Any, key: jax.Array, max_steps: int, greedy: bool = False
) -> dict[str, jax.Array]:
    """Returns ``{"returns": [E], "lengths": [E]}`` of one episode in each of ``env.num_envs`` fresh envs, with
    actions sampled from ``policy`` (or its mode if ``greedy``)."""
    episodes = play_episodes(policy, env, key, max_steps, greedy)
    return {"returns": episodes["returns"], "lengths": episodes["lengths"]}


def play_episodes(
    policy: PolicyFn,
    env: Any,
    key: jax.Array,
    max_steps: int,
    greedy: bool = False,
    record: bool = False,
    action_box: tuple[float, float] | None = None,
) -> dict[str, jax.Array]:
    """One episode in each of E = ``env.num_envs`` fresh envs: ``{"returns": [E], "lengths": [E] int32,
    "terminated": [E] bool}`` (the episode ended by termination, not by its time limit or ``max_steps``), and
    with ``record`` the steps, time-major: ``"observations" [max_steps, E, obs_dim]`` (what the policy saw),
    ``"actions" [max_steps, E(, A)]`` (what was executed: clipped to ``action_box`` if given), ``"rewards"
    [max_steps, E]`` and ``"active" [max_steps, E]`` (the step belongs to the env's first episode)."""
    num_episodes = env.num_envs
    reset_key, steps_key = jax.random.split(key)
    obs, env_state = env.reset(reset_key)

    def step(carry, step_key):
        obs, env_state, returns, lengths, active, terminated_first = carry
        action_key, env_key = jax.random.split(step_key)
        dist = policy(obs)
        action = dist.mode() if greedy else dist.sample(seed=action_key)
        if action_box is not None:
            action = jnp.clip(action, *action_box)
        next_obs, env_state, reward, terminated, truncated, _ = env.step(env_key, env_state, action)
        recorded = {"observations": obs, "actions": action, "rewards": reward, "active": active} if record else None
        returns = returns + reward * active
        lengths = lengths + active
        terminated_first = terminated_first | (active & terminated)
        active = active & ~(terminated | truncated)
        return (next_obs, env_state, returns, lengths, active, terminated_first), recorded

    zeros = jnp.zeros(num_episodes, jnp.float32)
    flags = jnp.ones(num_episodes, bool)
    carry = (obs, env_state, zeros, zeros.astype(jnp.int32), flags, ~flags)
    (_, _, returns, lengths, _, terminated), steps = jax.lax.scan(step, carry, jax.random.split(steps_key, max_steps))
    return {"returns": returns, "lengths": lengths, "terminated": terminated} | (steps if record else {})


def random_policy_returns(env_name: str, num_episodes: int, key: jax.Array) -> dict[str, jax.Array]:
    """``{"returns": [E], "lengths": [E]}`` of the uniformly random policy, one episode in each of E envs:
    uniform over the actions (discrete) or over the action box (continuous). The 0 of normalised scores."""
    from purerl.control.envs import EpisodeStatistics, env_spec, vec_env

    spec = env_spec(env_name)
    env = EpisodeStatistics(vec_env(env_name, num_episodes))

    def policy(obs: jax.Array) -> distrax.Distribution:
        batch = obs.shape[0]
        if spec.discrete:
            return distrax.Categorical(logits=jnp.zeros((batch, spec.action_dim)))
        low = jnp.full((batch, spec.action_dim), spec.action_low)
        return distrax.Independent(distrax.Uniform(low, jnp.full_like(low, spec.action_high)), 1)

    return evaluate_episodes(policy, env, key, spec.max_steps_in_episode)
