"""Vectorised gymnax environments and the wrappers PPO needs, as pure functions over explicit state.

Every wrapper keeps its state (running statistics, episode counters) in the env state pytree, which the
agent carries in its train state: nothing lives in Python objects, so a whole run stays one ``jit`` and
vmaps over seeds. All observations are flattened to ``[num_envs, obs_dim]``.

Each ``step`` returns ``(obs, state, reward, terminated, truncated, info)`` in gymnax 1.0's convention:
the env auto-resets on ``terminated | truncated``, ``obs`` is then the first observation of the next
episode, and ``info["final_observation"]`` is the true next observation of this step (it equals ``obs``
when the episode did not end), processed by the same wrappers as ``obs``.
"""

import difflib
import functools
import math
from dataclasses import dataclass
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from purerl.control.physics_envs import (
    EPISODE_LENGTH,
    PhysicsVecEnv,
    check_physics_env_name,
    is_physics_env,
    make_physics_env,
)
from purerl.control.physics_envs import SUITES as PHYSICS_SUITES
from purerl.core.spread import has_spread

# Every environment gymnax 1.0 registers, by suite (tests check this against ``gymnax.registered_envs``).
SUITES: dict[str, tuple[str, ...]] = {
    "classic": ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"),
    "minatar": ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar"),
    "bsuite": (
        "Catch-bsuite",
        "DeepSea-bsuite",
        "MemoryChain-bsuite",
        "UmbrellaChain-bsuite",
        "DiscountingChain-bsuite",
        "SimpleBandit-bsuite",
    ),
    "misc": (
        "FourRooms-misc",
        "MetaMaze-misc",
        "PointRobot-misc",
        "BernoulliBandit-misc",
        "GaussianBandit-misc",
        "Reacher-misc",
        "Swimmer-misc",
        "Pong-misc",
        "FrozenLake-misc",
    ),
}
SUPPORTED_ENVS: tuple[str, ...] = tuple(name for names in SUITES.values() for name in names)
# Registered by gymnax but unable to run here, with the reason a user is told.
UNSUPPORTED_ENVS = {
    "MNISTBandit-bsuite": "gymnax downloads MNIST from the internet when it makes this env, and purerl makes no "
    "network calls at run time",
}


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment before building its networks."""

    name: str
    obs_dim: int
    discrete: bool
    action_dim: int
    action_low: float | None
    action_high: float | None
    max_steps_in_episode: int | None  # None: the env sets no time limit


def check_env_name(name: str) -> None:
    """A one-line error for an env purerl cannot run: unknown (with the nearest known name, if one is near),
    unsupported (with why), or a physics env without its suite's extra."""
    if is_physics_env(name):
        try:
            check_physics_env_name(name)
        except ValueError as error:
            raise ValueError(f"{error}{did_you_mean(name)}") from None
        return
    if name in UNSUPPORTED_ENVS:
        raise ValueError(f"env {name!r} cannot run in purerl: {UNSUPPORTED_ENVS[name]}")
    if name not in SUPPORTED_ENVS:
        suites = "brax/<env> (purerl[brax]) and playground/<Env> (purerl[playground])"
        raise ValueError(f"unknown env {name!r}; supported: {', '.join(SUPPORTED_ENVS)}, {suites}{did_you_mean(name)}")


def did_you_mean(name: str) -> str:
    """``"; did you mean 'X'?"`` for the known env nearest ``name`` (the same but for case, a physics env given
    without its suite's prefix, or a close spelling), else ``""``."""
    physics = [suite.prefix + env for suite in PHYSICS_SUITES for env in suite.envs]
    known = {env.lower(): env for env in (*SUPPORTED_ENVS, *physics)}
    if name in known.values():
        return ""
    short = {env.split("/", 1)[1].lower(): env for env in physics}
    key = name.lower()
    match = known.get(key) or short.get(key.split("/")[-1])
    if match is None:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
        match = known[close[0]] if close else None
    return f"; did you mean {match!r}?" if match else ""


def known_env(field: str, name: str) -> None:
    """``check_env_name`` as a config field's check (``purerl.core.config.doc``)."""
    check_env_name(name)


def make_gymnax(name: str) -> tuple[Any, Any]:
    """``gymnax.make(name)``, evaluated eagerly even inside a trace: some constructors (FourRooms-misc,
    MetaMaze-misc) branch in Python on arrays they compute, which fails on tracers (envs are made inside
    ``make_train``'s jitted function)."""
    check_env_name(name)
    with jax.ensure_compile_time_eval():
        return gymnax.make(name)


@functools.cache
def env_spec(name: str) -> EnvSpec:
    """The spec of env ``name``, computed eagerly even when first asked for inside a trace (a traced config's
    ``spec``): gymnax builds some spaces with jnp ops on its params (PointRobot-misc's action bounds), which
    a trace would turn into tracers."""
    if is_physics_env(name):
        env = make_physics_env(name)
        # The observation's size from the reset's shapes alone (their resets take raw uint32 keys), and outside
        # compile-time evaluation, which would run the reset op by op: Brax's observation_size does, about 15 s
        # for hopper on a CPU.
        obs_dim = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1]
        return EnvSpec(name, int(obs_dim), False, int(env.action_size), -1.0, 1.0, EPISODE_LENGTH)
    with jax.ensure_compile_time_eval():
        return _gymnax_spec(name)


def _gymnax_spec(name: str) -> EnvSpec:
    env, params = make_gymnax(name)
    action_space = env.action_space(params)
    obs_space = env.observation_space(params)
    obs_dim = int(obs_space.n) if isinstance(obs_space, spaces.Discrete) else math.prod(obs_space.shape)
    max_steps = getattr(params, "max_steps_in_episode", None)
    horizon = None if max_steps is None else int(max_steps)
    if isinstance(action_space, spaces.Discrete):
        return EnvSpec(name, obs_dim, True, int(action_space.n), None, None, horizon)
    return EnvSpec(
        name,
        obs_dim,
        False,
        int(action_space.shape[0]),
        float(np.min(action_space.low)),
        float(np.max(action_space.high)),
        horizon,
    )


def vec_env(name: str, num_envs: int, group_size: int = 1) -> "VecEnv | PhysicsVecEnv":
    """``num_envs`` copies of env ``name``: gymnax's (``VecEnv``) or a physics suite's (``brax/<env>``,
    ``playground/<Env>``: ``PhysicsVecEnv``), with the same contract."""
    if is_physics_env(name):
        return PhysicsVecEnv(name, num_envs, group_size)
    return VecEnv(name, num_envs, group_size)


def evaluation_env(name: str, num_envs: int) -> "Wrapper":
    """The env a policy is evaluated in: episode statistics on raw rewards and, for continuous actions, actions
    clipped to the box (PPO's and BC's; PPO's training wrappers go on top of it)."""
    env = EpisodeStatistics(vec_env(name, num_envs))
    spec = env_spec(name)
    return env if spec.discrete else ClipAction(env, spec.action_low, spec.action_high)


class VecEnv:
    """``num_envs`` copies of a gymnax env, stepped with one key each, observations flattened to float32
    ``[num_envs, obs_dim]`` (a discrete observation, FrozenLake-misc's state index, one-hot over its ``n`` values).

    With ``group_size`` G > 1, ``reset`` gives each consecutive block of G envs the same reset key, hence the
    same initial state (GRPO's groups); steps still use one key per env.
    """

    def __init__(self, name: str, num_envs: int, group_size: int = 1):
        if num_envs % group_size != 0:
            raise ValueError(f"num_envs={num_envs} is not divisible by group_size={group_size}")
        self.env, self.params = make_gymnax(name)
        self.num_envs, self.group_size = num_envs, group_size
        obs_space = self.env.observation_space(self.params)
        self.obs_values = int(obs_space.n) if isinstance(obs_space, spaces.Discrete) else None

    def _flat(self, obs: jax.Array) -> jax.Array:
        if self.obs_values is not None:
            return jax.nn.one_hot(obs.reshape(self.num_envs), self.obs_values, dtype=jnp.float32)
        return obs.reshape(self.num_envs, -1).astype(jnp.float32)

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        # One reset per group, repeated for its members: each key is used once.
        keys = jax.random.split(key, self.num_envs // self.group_size)
        obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)
        obs, state = jax.tree.map(lambda x: jnp.repeat(x, self.group_size, axis=0), (obs, state))
        return self._flat(obs), state

    def step(self, key: jax.Array, state: Any, action: jax.Array):
        keys = jax.random.split(key, self.num_envs)
        obs, state, reward, terminated, truncated, info = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
            keys, state, action, self.params
        )
        info = {"final_observation": self._flat(info["final_observation"])}
        return self._flat(obs), state, reward.astype(jnp.float32), terminated, truncated, info

    def observation_stats(self, state: Any) -> "RunningMeanStd | None":
        return None


class Wrapper:
    """Base wrapper: forwards everything to the inner env; subclasses override ``reset``/``step``."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name: str):
        return getattr(self.env, name)

    def observation_stats(self, state: Any) -> "RunningMeanStd | None":
        return self.env.observation_stats(state.inner)


@struct.dataclass
class EpisodeStatsState:
    inner: Any
    episode_return: jax.Array  # [num_envs] undiscounted return of the running episode, raw rewards
    episode_length: jax.Array  # [num_envs]


class EpisodeStatistics(Wrapper):
    """Tracks raw episode returns and lengths; ``info`` reports those of episodes that ended at this step."""

    def reset(self, key):
        obs, inner = self.env.reset(key)
        zeros = jnp.zeros(self.num_envs, jnp.float32)
        return obs, EpisodeStatsState(inner, zeros, zeros.astype(jnp.int32))

    def step(self, key, state, action):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action)
        done = terminated | truncated
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        info = info | {"episode_done": done, "episode_return": episode_return, "episode_length": episode_length}
        state = EpisodeStatsState(inner, episode_return * ~done, episode_length * ~done)
        return obs, state, reward, terminated, truncated, info


def finished_episode_means(
    done: jax.Array,
    episode_return: jax.Array,
    episode_length: jax.Array,
    last_return: jax.Array,
    last_length: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(mean return, mean length, count)`` of the episodes that ended in a rollout: ``done``,
    ``episode_return`` and ``episode_length`` are ``EpisodeStatistics``' per-step values ``[T, B]``; where no
    episode ended, the means are ``last_return`` and ``last_length`` (a run carries the last ones over)."""
    finished = jnp.sum(done)
    mean = lambda x, last: jnp.where(finished > 0, jnp.sum(x * done) / finished, last)  # noqa: E731
    return mean(episode_return, last_return), mean(episode_length, last_length), finished


class ClipAction(Wrapper):
    """Clips continuous actions to the action space for the env only; the agent keeps the unclipped sample."""

    def __init__(self, env, low: float, high: float):
        super().__init__(env)
        self.low, self.high = low, high

    def reset(self, key):
        return self.env.reset(key)

    def step(self, key, state, action):
        return self.env.step(key, state, jnp.clip(action, self.low, self.high))

    def observation_stats(self, state: Any) -> "RunningMeanStd | None":
        return self.env.observation_stats(state)  # this wrapper adds no state of its own


class MultiplyReward(Wrapper):
    """Rewards times a constant ``scale`` for learning (Brax's ``reward_scaling``); put outside
    ``EpisodeStatistics``, so reported episode returns stay raw."""

    def __init__(self, env, scale: float):
        super().__init__(env)
        self.scale = scale

    def reset(self, key):
        return self.env.reset(key)

    def step(self, key, state, action):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action)
        return obs, state, reward * self.scale, terminated, truncated, info

    def observation_stats(self, state: Any) -> "RunningMeanStd | None":
        return self.env.observation_stats(state)  # this wrapper adds no state of its own


@struct.dataclass
class RunningMeanStd:
    """Running mean and (population) variance over a stream of batches, per feature."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> "RunningMeanStd":
        # count starts at a tiny epsilon, as in Gym's RunningMeanStd, so the first update dominates.
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))

    @classmethod
    def of(cls, *parts: tuple[jax.Array, jax.Array]) -> "RunningMeanStd":
        """The mean and population variance of the rows of every ``(x [N_i, *shape], weights [N_i])`` part
        together, each row counted ``weights`` times (0 leaves it out); the count is the weights' sum."""
        total = sum(weights.sum() for _, weights in parts)
        mean = sum(weights @ x for x, weights in parts) / total
        var = sum(weights @ jnp.square(x - mean) for x, weights in parts) / total
        return cls(mean, var, jnp.asarray(total, jnp.float32))

    def update(self, batch: jax.Array) -> "RunningMeanStd":
        """Merge a batch ``[N, *shape]`` (Chan et al.'s parallel algorithm)."""
        batch_mean, batch_var = jnp.mean(batch, axis=0), jnp.var(batch, axis=0)
        batch_count = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + jnp.square(delta) * self.count * batch_count / total
        return RunningMeanStd(mean, m2 / total, total)

    @property
    def spread(self) -> jax.Array:
        """Per feature: whether the values seen differ beyond rounding (``purerl.core.spread``)."""
        return has_spread(jnp.sqrt(self.var), jnp.abs(self.mean))

    def normalize(self, x: jax.Array, clip: float) -> jax.Array:
        """``(x - mean) / sqrt(var + 1e-8)`` clipped to ``[-clip, clip]``; exactly 0 for a feature with no spread."""
        return jnp.clip(jnp.where(self.spread, x - self.mean, 0.0) / jnp.sqrt(self.var + 1e-8), -clip, clip)


@struct.dataclass
class NormalizeObservationState:
    inner: Any
    stats: RunningMeanStd


class NormalizeObservation(Wrapper):
    """Observations standardised by running per-feature statistics, then clipped to ``[-clip, clip]``.

    The statistics are updated with every batch of observations the agent sees (CleanRL/Gym behaviour),
    and ``final_observation`` is normalised with the same statistics as ``obs`` so bootstrapped values match.
    """

    def __init__(self, env, clip: float = 10.0):
        super().__init__(env)
        self.clip = clip

    def reset(self, key):
        obs, inner = self.env.reset(key)
        stats = RunningMeanStd.create(obs.shape[1:]).update(obs)
        return stats.normalize(obs, self.clip), NormalizeObservationState(inner, stats)

    def step(self, key, state, action):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action)
        stats = state.stats.update(obs)
        info = info | {"final_observation": stats.normalize(info["final_observation"], self.clip)}
        state = NormalizeObservationState(inner, stats)
        return stats.normalize(obs, self.clip), state, reward, terminated, truncated, info

    def observation_stats(self, state: NormalizeObservationState) -> RunningMeanStd:
        return state.stats


@struct.dataclass
class ScaleRewardState:
    inner: Any
    discounted_return: jax.Array  # [num_envs]
    stats: RunningMeanStd  # of the discounted return, scalar


class ScaleReward(Wrapper):
    """Rewards divided by the running std of the discounted return, then clipped to ``[-clip, clip]`` (left
    unscaled while that return has no spread: ``purerl.core.spread``).

    The return accumulates ``R_t = gamma * R_{t-1} + r_t`` and restarts after an episode ends. (Gym's and
    PureJaxRL's versions zero ``R`` with the done flag of the current step, dropping that step's history.)
    """

    def __init__(self, env, gamma: float, clip: float = 10.0):
        super().__init__(env)
        self.gamma, self.clip = gamma, clip

    def reset(self, key):
        obs, inner = self.env.reset(key)
        return obs, ScaleRewardState(inner, jnp.zeros(self.num_envs, jnp.float32), RunningMeanStd.create(()))

    def step(self, key, state, action):
        obs, inner, reward, terminated, truncated, info = self.env.step(key, state.inner, action)
        discounted_return = self.gamma * state.discounted_return + reward
        stats = state.stats.update(discounted_return)
        # A return with no spread (all equal up to rounding) gives no scale: its "std" is a rounding residue.
        scale = jnp.where(stats.spread, jnp.sqrt(stats.var + 1e-8), 1.0)
        scaled = jnp.clip(reward / scale, -self.clip, self.clip)
        done = terminated | truncated
        state = ScaleRewardState(inner, discounted_return * ~done, stats)
        return obs, state, scaled, terminated, truncated, info
