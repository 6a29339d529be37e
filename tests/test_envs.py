"""Env wrappers: running statistics, episode bookkeeping, reward scaling and action clipping."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from purerl.control import grpo, ppo
from purerl.control.envs import (
    SUPPORTED_ENVS,
    UNSUPPORTED_ENVS,
    ClipAction,
    EpisodeStatistics,
    NormalizeObservation,
    RunningMeanStd,
    ScaleReward,
    VecEnv,
    env_spec,
)


def test_running_mean_std_matches_numpy_over_the_stream():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (1, 7, 20, 4)]
    stats = RunningMeanStd.create((3,))
    for batch in batches:
        stats = stats.update(jnp.asarray(batch, jnp.float32))
    data = np.concatenate(batches)
    # The epsilon prior count (1e-4 at mean 0, var 1) is negligible at this tolerance.
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-3)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-3)
    assert float(stats.count) == pytest.approx(len(data), abs=1e-3)


def rollout(env, steps, action_fn, key=0):
    key = jax.random.key(key)
    obs, state = env.reset(key)
    outs = []
    for t in range(steps):
        key, k = jax.random.split(key)
        obs, state, reward, terminated, truncated, info = env.step(k, state, action_fn(t))
        outs.append((obs, reward, terminated, truncated, info))
    return state, outs


def test_episode_statistics_report_raw_returns_and_lengths():
    env = EpisodeStatistics(VecEnv("CartPole-v1", 2))
    _, outs = rollout(env, 60, lambda t: jnp.zeros(2, jnp.int32))  # always push left: short episodes
    running, length, finished = np.zeros(2), np.zeros(2), 0
    for _, reward, terminated, truncated, info in outs:
        running += np.asarray(reward)
        length += 1
        done = np.asarray(terminated | truncated)
        np.testing.assert_array_equal(info["episode_done"], done)
        np.testing.assert_allclose(np.asarray(info["episode_return"])[done], running[done])
        np.testing.assert_array_equal(np.asarray(info["episode_length"])[done], length[done])
        finished += done.sum()
        running[done], length[done] = 0, 0
    assert finished >= 4


def test_final_observation_is_pre_reset_and_equals_obs_otherwise():
    env = VecEnv("CartPole-v1", 3)
    _, outs = rollout(env, 40, lambda t: jnp.zeros(3, jnp.int32))
    saw_done = False
    for obs, _, terminated, truncated, info in outs:
        done = np.asarray(terminated | truncated)
        np.testing.assert_array_equal(np.asarray(info["final_observation"])[~done], np.asarray(obs)[~done])
        if done.any():
            saw_done = True
            assert not np.allclose(np.asarray(info["final_observation"])[done], np.asarray(obs)[done])
    assert saw_done


def test_normalize_observation_applies_same_stats_to_final_observation():
    env = NormalizeObservation(VecEnv("CartPole-v1", 4), clip=10.0)
    state, outs = rollout(env, 30, lambda t: jnp.ones(4, jnp.int32))
    obs, _, _, _, info = outs[-1]
    assert env.observation_stats(state) is state.stats
    raw_env = VecEnv("CartPole-v1", 4)
    _, raw_outs = rollout(raw_env, 30, lambda t: jnp.ones(4, jnp.int32))
    raw_obs, _, _, _, raw_info = raw_outs[-1]
    np.testing.assert_allclose(obs, state.stats.normalize(raw_obs, 10.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        info["final_observation"], state.stats.normalize(raw_info["final_observation"], 10.0), rtol=1e-5, atol=1e-6
    )


def test_scale_reward_divides_by_std_of_discounted_return_and_resets_after_done():
    gamma = 0.9
    env = ScaleReward(VecEnv("CartPole-v1", 2), gamma=gamma, clip=10.0)
    _, outs = rollout(env, 40, lambda t: jnp.zeros(2, jnp.int32))
    ret, stats, unclipped_seen = np.zeros(2), RunningMeanStd.create(()), False
    for _, scaled, terminated, truncated, _ in outs:
        ret = gamma * ret + 1.0  # CartPole pays 1 per step
        stats = stats.update(jnp.asarray(ret, jnp.float32))
        expected = min(1.0 / np.sqrt(float(stats.var) + 1e-8), 10.0)  # early on the std is small: clipped
        assert bool(stats.spread)  # the epsilon prior keeps a spread far above rounding residues here
        np.testing.assert_allclose(scaled, expected, rtol=1e-5)
        ret = ret * ~np.asarray(terminated | truncated)
        unclipped_seen = unclipped_seen or expected < 10.0
    assert unclipped_seen


def test_normalisers_treat_a_spread_of_rounding_residues_as_none():
    third = np.float32(1 / 3)
    # A feature seen constant for 1e9 steps: its mean one rounding step off, its variance a residue.
    stats = RunningMeanStd(jnp.array([np.nextafter(third, 1), 0.0]), jnp.array([1e-15, 4.0]), jnp.asarray(1e9))
    normalized = np.asarray(stats.normalize(jnp.array([[third, 1.0]]), clip=10.0))
    assert normalized[0, 0] == 0.0  # was -3e-4: a rounding step divided by sqrt(1e-8)
    assert normalized[0, 1] == pytest.approx(0.5)
    # Every return equal (the fixed point 0.9 * 10 + 1 = 10 of CartPole's reward): no scale, not 1e4 clipped to 10.
    env = ScaleReward(VecEnv("CartPole-v1", 2), gamma=0.9, clip=10.0)
    _, state = env.reset(jax.random.key(0))
    fixed = RunningMeanStd(jnp.asarray(10.0), jnp.asarray(0.0), jnp.asarray(1e9))
    state = state.replace(discounted_return=jnp.full(2, 10.0), stats=fixed)
    _, state, scaled, *_ = env.step(jax.random.key(1), state, jnp.zeros(2, jnp.int32))
    np.testing.assert_array_equal(scaled, [1.0, 1.0])


def test_clip_action_clips_for_the_env_only():
    spec = env_spec("Pendulum-v1")
    assert (spec.action_low, spec.action_high, spec.discrete) == (-2.0, 2.0, False)
    clipped = EpisodeStatistics(ClipAction(VecEnv("Pendulum-v1", 1), -2.0, 2.0))
    reference = EpisodeStatistics(VecEnv("Pendulum-v1", 1))
    _, a = rollout(clipped, 5, lambda t: jnp.full((1, 1), 50.0))
    _, b = rollout(reference, 5, lambda t: jnp.full((1, 1), 2.0))
    for (obs_a, r_a, *_), (obs_b, r_b, *_) in zip(a, b, strict=True):
        np.testing.assert_allclose(obs_a, obs_b)
        np.testing.assert_allclose(r_a, r_b)


def test_minatar_observations_are_flattened():
    env = VecEnv("Breakout-MinAtar", 2)
    obs, _ = env.reset(jax.random.key(0))
    assert obs.shape == (2, env_spec("Breakout-MinAtar").obs_dim) == (2, 400)


def test_every_gymnax_env_is_supported_or_refused_with_its_reason():
    assert set(SUPPORTED_ENVS) | set(UNSUPPORTED_ENVS) == set(gymnax.registered_envs)
    assert not set(SUPPORTED_ENVS) & set(UNSUPPORTED_ENVS)
    assert len(SUPPORTED_ENVS) == len(set(SUPPORTED_ENVS))
    with pytest.raises(ValueError, match="^env 'MNISTBandit-bsuite' cannot run in purerl: gymnax downloads MNIST") as e:
        ppo.PPOConfig(env="MNISTBandit-bsuite")
    assert "\n" not in str(e.value)


GRPO_SMOKE_ENVS = ("CartPole-v1", "Pendulum-v1", "Catch-bsuite", "Breakout-MinAtar", "FourRooms-misc")


@pytest.mark.parametrize("name", SUPPORTED_ENVS)
def test_every_supported_env_steps_in_its_spaces_and_trains_one_update(name):
    """Reset and step with the spaces checked (gymnax's own observations inside its observation space, actions
    drawn from its action space, flat float32 observations of the spec's size), then one PPO update with a
    finite loss and, on one env of each suite, one GRPO update too (every env has the finite horizon GRPO needs;
    GRPO steps the same VecEnv as PPO, with group resets, so the others would only add compile time)."""
    spec = env_spec(name)
    env = EpisodeStatistics(VecEnv(name, 2))
    gym_env, params = env.env.env, env.env.params
    obs_space, action_space = gym_env.observation_space(params), gym_env.action_space(params)

    @jax.jit
    def gymnax_steps(key):  # gymnax's own env, as it declares its spaces
        reset_key, action_key, step_key = jax.random.split(key, 3)
        raw_obs, raw_state = gym_env.reset(reset_key, params)
        raw_action = action_space.sample(action_key)
        raw_next = gym_env.step(step_key, raw_state, raw_action, params)[0]
        return raw_obs, raw_action, raw_next

    @jax.jit
    def vec_steps(key, actions):  # what the agents see
        obs, state = env.reset(key)
        next_obs, _, reward, terminated, truncated, info = env.step(key, state, actions)
        return obs, next_obs, info["final_observation"], reward, terminated, truncated

    raw_obs, raw_action, raw_next = gymnax_steps(jax.random.key(0))
    assert raw_obs.shape == raw_next.shape == obs_space.shape
    # gymnax declares Box bounds (low=0) that these two envs' observations can leave (a -1 for "no context").
    if name not in ("MemoryChain-bsuite", "GaussianBandit-misc"):
        assert obs_space.contains(raw_obs) and obs_space.contains(raw_next)
    assert action_space.contains(raw_action)
    assert spec.discrete == isinstance(action_space, spaces.Discrete)
    if spec.discrete:
        assert spec.action_dim == action_space.n
    else:
        assert spec.action_dim == action_space.shape[0] and spec.action_low < spec.action_high
    obs, next_obs, final_obs, reward, terminated, truncated = vec_steps(jax.random.key(1), jnp.stack([raw_action] * 2))
    for x in (obs, next_obs, final_obs):
        assert x.shape == (2, spec.obs_dim) and x.dtype == jnp.float32
    assert reward.shape == terminated.shape == truncated.shape == (2,)
    assert spec.max_steps_in_episode > 0

    small = {"hidden_sizes": (8,), "eval_episodes": 2}
    ppo_config = ppo.PPOConfig(env=name, total_timesteps=32, num_envs=2, num_steps=16, update_epochs=1, **small)
    grpo_config = grpo.GRPOConfig(env=name, num_updates=1, num_groups=2, group_size=2, num_minibatches=1, **small)
    for algorithm, config in ((ppo, ppo_config), (grpo, grpo_config))[: 2 if name in GRPO_SMOKE_ENVS else 1]:
        _, metrics = jax.jit(algorithm.make_train(config))(jax.random.key(0))
        assert metrics["loss"].shape == (1,) and np.isfinite(metrics["loss"]).all(), (algorithm.__name__, metrics)


@pytest.mark.parametrize("name", [name for name in SUPPORTED_ENVS if not env_spec(name).discrete])
def test_a_spec_first_asked_for_inside_a_trace_is_concrete(name):
    """A traced config computes its spec inside jit (PointRobot-misc's action bounds are jnp ops on params)."""
    expected = env_spec(name)
    env_spec.cache_clear()
    seen = []
    jax.jit(lambda x: seen.append(env_spec(name)) or x)(1.0)
    assert seen == [expected]


def test_a_discrete_observation_is_one_hot():
    """FrozenLake-misc observes its state index: the agent sees it one-hot over the 16 cells."""
    env = VecEnv("FrozenLake-misc", 3)
    assert env_spec("FrozenLake-misc").obs_dim == 16
    obs, state = env.reset(jax.random.key(0))
    positions = []
    for t in range(6):
        np.testing.assert_array_equal(obs, np.eye(16)[np.asarray(state.position)])
        positions.append(np.asarray(state.position))
        obs, state, *_ = env.step(jax.random.key(t), state, jnp.array([1, 2, 2]))
    assert len(np.unique(positions)) > 1  # the agents moved, so the check saw more than the start cell
