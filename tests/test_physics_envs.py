"""Brax and MuJoCo Playground behind purerl's env interface: time limits apart from terminations, the true final
observation before the auto-reset, the spec, the suites' names and extras, and one update of PPO and SAC.

The rollouts and updates run on brax/inverted_pendulum: the adapter is the same for every brax env, and its
programs compile in about 20 s on 2 CPU cores, against 50-90 s for hopper's contacts."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.control import ppo, sac
from purerl.control.envs import check_env_name, env_spec
from purerl.control.physics_envs import PLAYGROUND, PhysicsVecEnv

ENV = "brax/inverted_pendulum"


def rollout(env: PhysicsVecEnv, steps: int, action_scale: float, key: jax.Array) -> dict[str, np.ndarray]:
    def step(carry, key):
        obs, state = carry
        action_key, env_key = jax.random.split(key)
        shape = (env.num_envs, env.env.action_size)
        action = action_scale * jax.random.uniform(action_key, shape, minval=-1, maxval=1)
        next_obs, state, reward, terminated, truncated, info = env.step(env_key, state, action)
        out = {"obs": obs, "next_obs": next_obs, "final": info["final_observation"], "reward": reward,
               "terminated": terminated, "truncated": truncated, "steps": state.steps}  # fmt: skip
        return (next_obs, state), out

    reset_key, steps_key = jax.random.split(key)
    program = jax.jit(lambda k1, k2: jax.lax.scan(step, env.reset(k1), jax.random.split(k2, steps))[1])
    return jax.tree.map(np.asarray, program(reset_key, steps_key))


@pytest.mark.timeout(300)
def test_time_limits_truncate_falls_terminate_and_the_final_observation_survives_the_reset():
    env = PhysicsVecEnv(ENV, 16, episode_length=20)
    out = rollout(env, 60, action_scale=0.1, key=jax.random.key(0))
    terminated, truncated = out["terminated"], out["truncated"]
    assert terminated.any() and truncated.any()  # small random forces let some poles fall within 20 steps
    assert not (terminated & truncated).any()
    done = terminated | truncated
    for env_index in range(16):  # the plain way: walk each env's episodes
        length = 0
        for t in range(60):
            length += 1
            if done[t, env_index]:
                # Truncated exactly at the limit unless the pole fell on that very step: a fall always terminates.
                assert truncated[t, env_index] == (length == 20 and not terminated[t, env_index])
                assert out["steps"][t, env_index] == 0
                length = 0
            else:
                assert length < 20 and out["steps"][t, env_index] == length
    # At an episode's end the next observation is the reset one; the final observation is the true last one.
    np.testing.assert_array_equal(out["final"][~done], out["next_obs"][~done])
    assert np.all(np.abs(out["final"][done] - out["next_obs"][done]).max(axis=-1) > 1e-3)
    assert_fresh_starts_as_the_spares_rule_says(env, out)
    # The reward of an ending step is the step's own, not the reset state's 0.
    assert np.all(out["reward"][terminated] != 0)


def assert_fresh_starts_as_the_spares_rule_says(env: PhysicsVecEnv, out: dict[str, np.ndarray]) -> int:
    """Walks the rule of ``PhysicsVecEnv``'s spare initial states in plain numpy: an episode starts fresh (a
    state no other episode started from) unless its env's spare was used and not yet renewed, and then from
    its previous start; each step renews the ``refresh_count`` spares used longest ago, lower index first.
    Returns how many episodes started again from their env's previous start."""
    done = out["terminated"] | out["truncated"]
    waiting = np.zeros(env.num_envs, int)
    previous = [out["obs"][0, i] for i in range(env.num_envs)]
    fresh, stale = [*out["obs"][0]], 0
    for t in range(done.shape[0]):
        for i in np.flatnonzero(done[t]):
            start = out["next_obs"][t, i]
            if waiting[i] > 0:
                np.testing.assert_array_equal(start, previous[i])
                stale += 1
            else:
                fresh.append(start)
            previous[i] = start
        waiting = np.where(waiting > 0, waiting + 1, done[t].astype(int))
        renewed = sorted(range(env.num_envs), key=lambda i: (-waiting[i], i))[: env.refresh_count]
        waiting[renewed] = 0
    assert len(np.unique(np.round(fresh, 6), axis=0)) == len(fresh)  # every fresh start a new initial state
    assert stale < len(fresh)
    return stale


def test_the_spec_and_unknown_or_missing_brax_envs(monkeypatch):
    spec = env_spec("brax/hopper")
    assert (spec.obs_dim, spec.action_dim, spec.discrete, spec.max_steps_in_episode) == (11, 3, False, 1000)
    assert (spec.action_low, spec.action_high) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="unknown env 'brax/hoper'; brax envs: brax/ant, "):
        check_env_name("brax/hoper")
    for module in ("brax", "brax.envs"):  # as if not installed: importing it raises ImportError
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ValueError, match=r"^env 'brax/walker2d' needs brax: pip install 'purerl\[brax\]'$"):
        check_env_name("brax/walker2d")


@pytest.mark.timeout(300)
def test_playground_truncates_at_the_limit_from_spare_initial_states_with_the_true_final_observation():
    env = PhysicsVecEnv("playground/CartpoleBalance", 32, episode_length=4)  # 1 spare renewed per step
    out = rollout(env, 13, action_scale=1.0, key=jax.random.key(1))
    assert not out["terminated"].any()  # the DM Control Suite ends episodes by time only (or a broken simulation)
    expected = np.zeros((13, 32), bool)
    expected[[3, 7, 11]] = True  # the plain count: steps 4, 8 and 12 of every env end an episode
    np.testing.assert_array_equal(out["truncated"], expected)
    done = out["truncated"]
    np.testing.assert_array_equal(out["final"][~done], out["next_obs"][~done])
    assert np.all(np.abs(out["final"][done] - out["next_obs"][done]).max(axis=-1) > 1e-3)
    # The first 32 ends take the 32 spares of the reset; 4 are renewed before each later burst of 32 ends.
    assert assert_fresh_starts_as_the_spares_rule_says(env, out) == 2 * (32 - 4)
    assert np.all((out["reward"] >= 0) & (out["reward"] <= 1))  # the Suite's rewards lie in [0, 1]


def test_the_playground_spec_names_and_extra(monkeypatch):
    from mujoco_playground import registry

    assert PLAYGROUND.envs == tuple(registry.dm_control_suite.ALL_ENVS)  # the list the one-line error names
    spec = env_spec("playground/WalkerWalk")
    assert (spec.obs_dim, spec.action_dim, spec.discrete, spec.max_steps_in_episode) == (24, 6, False, 1000)
    with pytest.raises(ValueError, match="unknown env 'playground/WalkerWlak'; playground envs: playground/Acrobot"):
        check_env_name("playground/WalkerWlak")
    for typed, meant in (("Playground/CartpoleBalance", "playground/CartpoleBalance"),  # case
                         ("CartpoleSwingup", "playground/CartpoleSwingup"),  # no prefix
                         ("playground/PendulumSwingUp", "playground/PendulumSwingup"),  # Playground's params' spelling
                         ("brax/Hopper", "brax/hopper"), ("Cartpole-v1", "CartPole-v1")):  # fmt: skip
        with pytest.raises(ValueError, match=f"did you mean '{meant}'\\?$"):
            check_env_name(typed)
    monkeypatch.setitem(sys.modules, "mujoco_playground", None)
    with pytest.raises(
        ValueError, match=r"^env 'playground/HopperHop' needs playground: pip install 'purerl\[playground\]'$"
    ):
        check_env_name("playground/HopperHop")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_one_update_on_brax(algorithm):
    if algorithm == "ppo":
        config = ppo.PPOConfig(env=ENV, num_envs=4, num_steps=8, total_timesteps=32, num_minibatches=2,
                               update_epochs=1, hidden_sizes=(16,), normalize_observations=True)  # fmt: skip
        module = ppo
    else:
        config = sac.SACConfig(env=ENV, num_envs=4, num_steps=8, total_timesteps=32, learning_starts=0,
                               batch_size=16, hidden_sizes=(16,))  # fmt: skip
        module = sac
    state = jax.jit(module.init, static_argnums=1)(jax.random.key(0), config)  # eagerly, a reset runs op by op
    state, metrics = jax.jit(module.update)(state, jnp.asarray(0))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) != 0
    assert jax.tree.leaves(state.obs)[0].shape == (4, 4)
