"""Brax environments behind purerl's env interface: ``--env brax/hopper`` (``pip install 'purerl[brax]'``).

``BraxVecEnv`` has ``VecEnv``'s contract (``purerl.control.envs``): ``reset(key)``, ``step(key, state, action)
-> (obs, state, reward, terminated, truncated, info)`` with ``info["final_observation"]``, float32
``[num_envs, obs_dim]`` observations. It wraps brax's raw environment itself instead of brax's
``EpisodeWrapper`` / ``AutoResetWrapper``:

- **Time limit**: a step counter per env; ``truncated`` when it reaches ``episode_length`` (1000, Brax's and
  Gym-MuJoCo's) without the MDP terminating; ``terminated`` is brax's ``done`` of the raw env (e.g. the hopper
  falling), so a time limit bootstraps and a fall does not.
- **Auto-reset**: after ``terminated | truncated`` the env starts a new episode from a fresh reset (a new
  initial state per episode, not brax's cached first state), and ``final_observation`` keeps the true last
  observation of the ended one, taken before the reset.
- **Keys**: brax's ``reset`` takes raw ``uint32[2]`` keys (its wrappers size counters from ``key.shape``), so
  typed keys are passed as ``jax.random.key_data``.

Every brax env runs on brax's default pipeline (``generalized``); brax 0.14's envs are no longer maintained
(its README points to MuJoCo Playground), and their rewards are Gym-MuJoCo's.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

PREFIX = "brax/"
EPISODE_LENGTH = 1000
ENVS = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
        "inverted_double_pendulum", "pusher", "reacher", "swimmer", "walker2d")  # fmt: skip


def is_brax(name: str) -> bool:
    return name.startswith(PREFIX)


def check_brax_name(name: str) -> None:
    """A one-line error for an unknown brax env, or when the brax extra is missing."""
    if name.removeprefix(PREFIX) not in ENVS:
        raise ValueError(f"unknown env {name!r}; brax envs: {', '.join(PREFIX + env for env in ENVS)}")
    try:
        import brax.envs  # noqa: F401
    except ImportError:
        raise ValueError(f"env {name!r} needs brax: pip install 'purerl[brax]'") from None


@functools.cache
def make_brax(name: str) -> Any:
    """brax's raw environment ``brax/<name>`` (no wrappers), made once per process."""
    check_brax_name(name)
    from brax import envs

    with jax.ensure_compile_time_eval():
        return envs.get_environment(name.removeprefix(PREFIX))


@struct.dataclass
class BraxState:
    inner: Any  # brax's State of every env, batched [num_envs]
    steps: jax.Array  # int32 [num_envs]: steps taken in the running episode


class BraxVecEnv:
    """``num_envs`` copies of ``brax/<name>``; ``group_size`` as ``VecEnv``'s (GRPO's groups share reset keys)."""

    def __init__(self, name: str, num_envs: int, group_size: int = 1, episode_length: int = EPISODE_LENGTH):
        if num_envs % group_size != 0:
            raise ValueError(f"num_envs={num_envs} is not divisible by group_size={group_size}")
        self.env = make_brax(name)
        self.num_envs, self.group_size, self.episode_length = num_envs, group_size, episode_length

    def _reset_all(self, key: jax.Array) -> Any:
        keys = jax.random.key_data(jax.random.split(key, self.num_envs // self.group_size))
        inner = jax.vmap(self.env.reset)(keys)
        return jax.tree.map(lambda x: jnp.repeat(x, self.group_size, axis=0), inner)

    def reset(self, key: jax.Array) -> tuple[jax.Array, BraxState]:
        inner = self._reset_all(key)
        return inner.obs.astype(jnp.float32), BraxState(inner, jnp.zeros(self.num_envs, jnp.int32))

    def step(self, key: jax.Array, state: BraxState, action: jax.Array):
        stepped = jax.vmap(self.env.step)(state.inner, action)
        steps = state.steps + 1
        terminated = stepped.done.astype(bool)
        truncated = (steps >= self.episode_length) & ~terminated
        done = terminated | truncated
        select = lambda new, old: jnp.where(done.reshape(-1, *([1] * (old.ndim - 1))), new, old)  # noqa: E731
        inner = jax.tree.map(select, self._reset_all(key), stepped)
        info = {"final_observation": stepped.obs.astype(jnp.float32)}
        reward = stepped.reward.astype(jnp.float32)
        state = BraxState(inner, jnp.where(done, 0, steps))
        return inner.obs.astype(jnp.float32), state, reward, terminated, truncated, info

    def observation_stats(self, state: Any) -> None:
        return None
