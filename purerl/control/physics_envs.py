"""Physics environments behind purerl's env interface: Brax's (``--env brax/hopper``, ``pip install
'purerl[brax]'``) and MuJoCo Playground's DM Control Suite (``--env playground/WalkerWalk``, ``pip install
'purerl[playground]'``). Both have Brax's API: ``env.reset(key) -> State`` and ``env.step(State, action) ->
State``, with ``obs``, ``reward`` and ``done`` on the ``State``.

``PhysicsVecEnv`` has ``VecEnv``'s contract (``purerl.control.envs``): ``reset(key)``, ``step(key, state,
action) -> (obs, state, reward, terminated, truncated, info)`` with ``info["final_observation"]``, float32
``[num_envs, obs_dim]`` observations. It wraps the suite's raw environment itself instead of the suites'
``EpisodeWrapper`` / ``AutoResetWrapper`` (Playground's ``wrap_for_brax_training``):

- **Time limit**: a step counter per env; ``truncated`` when it reaches the episode length (1000 for every env
  here: Brax's and Gym-MuJoCo's, and the DM Control Suite's 1000 control steps) without the MDP terminating;
  ``terminated`` is the raw env's ``done`` (the hopper falling; in the DM Control Suite only a simulation
  gone non-finite), so a time limit bootstraps and a fall does not.
- **Auto-reset**: after ``terminated | truncated`` the env starts a new episode from a fresh initial state
  computed ahead (``PhysicsVecEnv``: not the wrappers' cached first state), and ``final_observation`` keeps
  the true last observation of the ended one, taken before the reset.
- **Keys**: the suites' ``reset`` takes raw ``uint32[2]`` keys (Brax's wrappers size counters from
  ``key.shape``), so typed keys are passed as ``jax.random.key_data``.

Brax envs run on Brax's default pipeline (``generalized``); Brax 0.14's envs are no longer maintained (its
README points to MuJoCo Playground), and their rewards are Gym-MuJoCo's. Playground envs are built with
``impl="jax"`` (MJX on XLA): Playground's default, MuJoCo Warp, is not pure XLA and ran 35x slower on a CPU
(``../shared/reference/anchors-2026-11.md`` section 2.2).
"""

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

EPISODE_LENGTH = 1000
REFRESH_PERIOD = 64  # steps in which every env's spare initial state is renewed once (PhysicsVecEnv)


@dataclass(frozen=True)
class Suite:
    prefix: str
    envs: tuple[str, ...]
    extra: str  # purerl's optional extra that installs it
    module: str  # what importing proves it is installed


BRAX = Suite("brax/", ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
             "inverted_double_pendulum", "pusher", "reacher", "swimmer", "walker2d"), "brax", "brax.envs")  # fmt: skip
PLAYGROUND = Suite(
    "playground/",
    (
        "AcrobotSwingup",
        "AcrobotSwingupSparse",
        "BallInCup",
        "CartpoleBalance",
        "CartpoleBalanceSparse",
        "CartpoleSwingup",
        "CartpoleSwingupSparse",
        "CheetahRun",
        "FingerSpin",
        "FingerTurnEasy",
        "FingerTurnHard",
        "FishSwim",
        "HopperHop",
        "HopperStand",
        "HumanoidStand",
        "HumanoidWalk",
        "HumanoidRun",
        "PendulumSwingup",
        "PointMass",
        "ReacherEasy",
        "ReacherHard",
        "SwimmerSwimmer6",
        "WalkerRun",
        "WalkerStand",
        "WalkerWalk",
    ),
    "playground",
    "mujoco_playground",
)  # fmt: skip  (playground 0.2.0's dm_control_suite.ALL_ENVS)
SUITES = (BRAX, PLAYGROUND)


def physics_suite(name: str) -> Suite | None:
    """The suite env ``name`` belongs to by its prefix (``brax/``, ``playground/``); None for a gymnax env."""
    return next((suite for suite in SUITES if name.startswith(suite.prefix)), None)


def is_physics_env(name: str) -> bool:
    return physics_suite(name) is not None


def check_physics_env_name(name: str) -> None:
    """A one-line error for an unknown env of a physics suite, or when the suite's extra is missing."""
    suite = physics_suite(name)
    if name.removeprefix(suite.prefix) not in suite.envs:
        known = ", ".join(suite.prefix + env for env in suite.envs)
        raise ValueError(f"unknown env {name!r}; {suite.prefix[:-1]} envs: {known}")
    try:
        __import__(suite.module)
    except ImportError:
        raise ValueError(f"env {name!r} needs {suite.extra}: pip install 'purerl[{suite.extra}]'") from None


@functools.cache
def make_physics_env(name: str) -> Any:
    """The suite's raw environment for ``name`` (no wrappers), made once per process."""
    check_physics_env_name(name)
    with jax.ensure_compile_time_eval():
        if physics_suite(name) is BRAX:
            from brax import envs

            return envs.get_environment(name.removeprefix(BRAX.prefix))
        from mujoco_playground import registry

        short = name.removeprefix(PLAYGROUND.prefix)
        config = registry.get_default_config(short)
        if config.episode_length != EPISODE_LENGTH or config.action_repeat != 1:  # what PhysicsVecEnv implements
            raise ValueError(f"env {name!r}: episode length {config.episode_length} and action repeat "
                             f"{config.action_repeat}; purerl implements {EPISODE_LENGTH} and 1")  # fmt: skip
        return registry.load(short, config_overrides={"impl": "jax"})


@struct.dataclass
class PhysicsState:
    inner: Any  # the suite's State of every env, batched [num_envs]
    steps: jax.Array  # int32 [num_envs]: steps taken in the running episode
    spares: Any  # [num_envs]: each env's next initial state, computed ahead
    waiting: jax.Array  # int32 [num_envs]: 0 if the env's spare is unused, else 1 + steps since it was used


class PhysicsVecEnv:
    """``num_envs`` copies of a physics env (``brax/<env>``, ``playground/<Env>``); ``group_size`` as
    ``VecEnv``'s (GRPO's groups share reset keys).

    **Resets ahead of time.** An env that ends its episode starts the next one from its *spare*, an initial
    state computed ahead; each step computes ``refresh_count = ceil(num_envs / REFRESH_PERIOD)`` new spares,
    for the envs whose spare has been used longest. A reset is not cheap (Playground's CheetahRun settles for
    200 physics steps), and under ``vmap`` a reset computed only for the envs that ended is computed for all
    (``lax.cond`` becomes a select): that cost CheetahRun 80x its step time, and renewing one spare per 64
    envs per step costs it 10x at 32 envs and 3x at 256 (2-core CPU; other envs' resets are cheap, a few
    percent of a step). So every episode starts from a fresh initial state unless its env ends twice before
    its spare is renewed (more than ``refresh_count`` envs ending per step for a while), and then it starts
    again from its previous initial state; Brax's and Playground's own wrappers restart every episode from
    the env's first state.
    """

    def __init__(self, name: str, num_envs: int, group_size: int = 1, episode_length: int = EPISODE_LENGTH):
        if num_envs % group_size != 0:
            raise ValueError(f"num_envs={num_envs} is not divisible by group_size={group_size}")
        self.env = make_physics_env(name)
        self.num_envs, self.group_size, self.episode_length = num_envs, group_size, episode_length
        self.refresh_count = -(-num_envs // REFRESH_PERIOD)

    def _initial_states(self, key: jax.Array, count: int, group_size: int = 1) -> Any:
        keys = jax.random.key_data(jax.random.split(key, count // group_size))
        inner = jax.vmap(self.env.reset)(keys)
        return jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), inner)

    def reset(self, key: jax.Array) -> tuple[jax.Array, PhysicsState]:
        start_key, spares_key = jax.random.split(key)
        inner = self._initial_states(start_key, self.num_envs, self.group_size)
        spares = self._initial_states(spares_key, self.num_envs)
        zeros = jnp.zeros(self.num_envs, jnp.int32)
        return inner.obs.astype(jnp.float32), PhysicsState(inner, zeros, spares, zeros)

    def step(self, key: jax.Array, state: PhysicsState, action: jax.Array):
        stepped = jax.vmap(self.env.step)(state.inner, action)
        steps = state.steps + 1
        terminated = stepped.done.astype(bool)
        truncated = (steps >= self.episode_length) & ~terminated
        done = terminated | truncated
        select = lambda new, old: jnp.where(done.reshape(-1, *([1] * (old.ndim - 1))), new, old)  # noqa: E731
        inner = jax.tree.map(select, state.spares, stepped)
        # Renew the spares used longest ago (ties: the lower index; lax.top_k keeps the first of equals).
        waiting = jnp.where(state.waiting > 0, state.waiting + 1, done.astype(jnp.int32))
        _, renewed = jax.lax.top_k(waiting, self.refresh_count)
        fresh = self._initial_states(key, self.refresh_count)
        spares = jax.tree.map(lambda spare, new: spare.at[renewed].set(new), state.spares, fresh)
        info = {"final_observation": stepped.obs.astype(jnp.float32)}
        reward = stepped.reward.astype(jnp.float32)
        state = PhysicsState(inner, jnp.where(done, 0, steps), spares, waiting.at[renewed].set(0))
        return inner.obs.astype(jnp.float32), state, reward, terminated, truncated, info

    def observation_stats(self, state: Any) -> None:
        return None
