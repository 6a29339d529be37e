"""SAC: each piece against a plain reference (numeric change of variables, a loop over transitions, the Polyak
formula, the sign of the temperature's gradient), the replay buffer's transitions at time limits, seeds, bad
settings, and learning Pendulum within CI time."""

import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.control import sac
from purerl.core.distributions import TanhSquashedGaussian
from purerl.io import cli

TINY = sac.SACConfig(
    total_timesteps=64, num_envs=2, num_steps=4, learning_starts=16, batch_size=8, hidden_sizes=(16,), eval_episodes=2
)


def test_squashed_log_prob_is_the_numeric_change_of_variables():
    mean, log_std = np.array([[0.3, -1.2], [2.5, 0.0]]), np.array([[-0.5, 0.2], [0.1, -1.0]])
    low, high = -2.0, 3.0
    dist = TanhSquashedGaussian(jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32), low, high)
    actions, log_probs = dist.sample_and_log_prob(seed=jax.random.key(0), sample_shape=64)
    actions, log_probs = np.asarray(actions, np.float64), np.asarray(log_probs, np.float64)
    assert np.all((actions > low) & (actions < high))
    mid, half = (high + low) / 2, (high - low) / 2
    squash = lambda u: mid + half * np.tanh(u)  # noqa: E731
    u = np.arctanh((actions - mid) / half)
    h = 1e-6
    jacobian = (squash(u + h) - squash(u - h)) / (2 * h)  # da/du per dimension, by central differences
    std = np.exp(log_std)
    gaussian = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = np.sum(gaussian - np.log(jacobian), axis=-1)
    # Where |tanh(u)| is near 1 float32 cannot tell u apart; compare where the inverse is well-conditioned.
    ok = np.all(np.abs(actions - mid) / half < 0.999, axis=-1)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(log_probs[ok], expected[ok], rtol=1e-4, atol=1e-3)


def test_squashed_density_integrates_to_one_and_its_mode_is_the_squashed_mean():
    dist = TanhSquashedGaussian(jnp.array([0.4]), jnp.array([-0.3]), -1.0, 1.0)
    grid = np.linspace(-1 + 1e-6, 1 - 1e-6, 200_001)
    density = np.exp(np.asarray(dist.log_prob(jnp.asarray(grid[:, None], jnp.float32)), np.float64))
    assert abs(np.trapezoid(density, grid) - 1.0) < 2e-3
    np.testing.assert_allclose(np.asarray(dist.mode()), np.tanh([0.4]), rtol=1e-6)


def soft_target_loop(reward, terminated, truncated, next_q, next_log_prob, alpha, gamma, bootstrap_truncation):
    """The soft TD target written the plain way, one transition at a time."""
    targets = []
    for i in range(len(reward)):
        stop = terminated[i] or (truncated[i] and not bootstrap_truncation)
        future = 0.0 if stop else gamma * (min(next_q[0][i], next_q[1][i]) - alpha * next_log_prob[i])
        targets.append(reward[i] + future)
    return np.array(targets)


@pytest.mark.parametrize("bootstrap_truncation", [True, False])
def test_the_critic_target_bootstraps_at_time_limits_and_not_at_termination(bootstrap_truncation):
    config = sac.SACConfig(hidden_sizes=(8,), gamma=0.9, alpha=0.3, bootstrap_truncation=bootstrap_truncation)
    state = sac.init(jax.random.key(1), config).train_state
    rng = np.random.default_rng(0)
    n = 6
    terminated = np.array([False, True, False, False, True, False])
    truncated = np.array([False, False, True, False, False, True])
    batch = sac.Transition(
        obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        action=jnp.asarray(rng.uniform(-2, 2, size=(n, 1)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        terminated=jnp.asarray(terminated),
        done=jnp.asarray(terminated | truncated),
    )
    key = jax.random.key(2)
    _, stats = sac.critic_loss(state.critic.params, state, config, batch, key)
    # The same next actions as the loss draws: the actor sampled with the same key.
    actor, critic = sac.make_networks(config)
    next_action, next_log_prob = actor.apply(state.actor.params, batch.next_obs).sample_and_log_prob(seed=key)
    next_q = np.asarray(critic.apply(state.target_critic_params, batch.next_obs, next_action))
    expected = soft_target_loop(
        np.asarray(batch.reward), terminated, truncated, next_q, np.asarray(next_log_prob), 0.3, 0.9,
        bootstrap_truncation,
    )  # fmt: skip
    np.testing.assert_allclose(float(stats["q_target"]), expected.mean(), rtol=1e-5)
    q = np.asarray(critic.apply(state.critic.params, batch.obs, batch.action))
    np.testing.assert_allclose(float(stats["q_loss"]), 0.5 * np.sum(np.mean((q - expected) ** 2, axis=1)), rtol=1e-5)


def test_a_gradient_step_moves_the_targets_by_polyak_averaging():
    config = sac.SACConfig(hidden_sizes=(8,), tau=0.05)
    state = sac.init(jax.random.key(3), config)
    rng = np.random.default_rng(1)
    batch = sac.Transition(
        *(jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), jnp.asarray(rng.uniform(-2, 2, (5, 1)), jnp.float32)),
        jnp.asarray(rng.normal(size=5), jnp.float32),
        jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        jnp.zeros(5, bool),
        jnp.zeros(5, bool),
    )
    old = state.train_state
    new, _ = sac.gradient_step(old, config, batch, jax.random.key(4))
    expected = jax.tree.map(lambda c, t: 0.05 * np.asarray(c) + 0.95 * np.asarray(t), new.critic.params,
                            old.target_critic_params)  # fmt: skip
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-7),
                 new.target_critic_params, expected)  # fmt: skip
    assert not np.allclose(np.asarray(new.critic.params["params"]["VmapQNetwork_0"]["q"]["bias"]),
                           np.asarray(old.critic.params["params"]["VmapQNetwork_0"]["q"]["bias"]))  # fmt: skip


@pytest.mark.parametrize(("entropy", "alpha_moves"), [(-3.0, "up"), (1.0, "down")])
def test_the_temperature_rises_below_the_target_entropy_and_falls_above(entropy, alpha_moves):
    log_prob = jnp.full(32, -entropy)  # entropy = -E[log pi]
    grad = jax.grad(sac.temperature_loss)({"log_alpha": jnp.log(0.2)}, log_prob, -1.0)["log_alpha"]
    # Gradient descent moves log alpha against the gradient.
    assert (grad < 0) if alpha_moves == "up" else (grad > 0)
    # dJ/dlog(alpha) = -alpha (log pi + target) exactly.
    np.testing.assert_allclose(float(grad), -0.2 * (-entropy - 1.0), rtol=1e-6)


@pytest.mark.parametrize("reward_scale", [1.0, 10.0])
def test_the_buffer_keeps_the_true_next_observation_at_a_time_limit(reward_scale):
    # Pendulum-v1 truncates after 200 steps: one update of 210 steps in one env crosses the limit.
    config = sac.SACConfig(total_timesteps=210, num_steps=210, learning_starts=210, batch_size=8, hidden_sizes=(8,),
                           reward_scale=reward_scale, normalize_observations=reward_scale != 1.0)  # fmt: skip
    state, metrics = jax.jit(sac.update)(sac.init(jax.random.key(5), config), jnp.asarray(0))
    stored = jax.tree.map(lambda x: np.asarray(x[0, :210]), state.buffer.experience)
    # The buffer holds the scaled rewards; the reported return is the raw one.
    np.testing.assert_allclose(stored.reward[:200].sum() / reward_scale, float(metrics["episode_return"]), rtol=1e-5)
    # Raw observations are stored; the statistics saw the reset one and every step's.
    assert float(state.obs_stats.count) == pytest.approx(211, abs=1e-3)
    np.testing.assert_allclose(state.obs_stats.mean, np.mean(np.r_[stored.obs, state.obs], axis=0), rtol=1e-4)
    done = np.flatnonzero(stored.done)
    assert done.tolist() == [199] and not stored.terminated.any()  # a time limit, not a termination
    assert int(metrics["episodes_finished"]) == int(metrics["episodes_truncated"]) == 1
    np.testing.assert_array_equal(stored.next_obs[:199], stored.obs[1:200])  # within the episode
    assert not np.allclose(stored.next_obs[199], stored.obs[200])  # the final observation, not the reset one
    cos, sin = stored.next_obs[199, :2]
    np.testing.assert_allclose(cos**2 + sin**2, 1.0, rtol=1e-5)  # a real Pendulum observation


def test_a_vmapped_seed_equals_its_single_run():
    keys = jax.random.split(jax.random.key(7), 3)
    train = sac.make_train(TINY)
    batched_state, batched = jax.jit(jax.vmap(train))(keys)
    single_program = jax.jit(train)
    single_state, single = single_program(keys[1])
    for name, values in single_program(keys[1])[1].items():  # the same key, the same bits
        np.testing.assert_array_equal(values, single[name], err_msg=name)
    for name in single:
        np.testing.assert_allclose(batched[name][1], single[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert float(single["q_loss"][-1]) > 0 and np.isnan(float(single["q_loss"][0]))  # trained after learning_starts
    assert float(single["loss"][0]) == 0 and float(single["alpha"][0]) == pytest.approx(TINY.alpha)
    evaluation = jax.vmap(sac.evaluate)(batched_state)
    np.testing.assert_allclose(evaluation["returns"][1], sac.evaluate(single_state)["returns"], rtol=1e-5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"env": "CartPole-v1"}, "SAC needs continuous actions; CartPole-v1 has 2 discrete actions"),
        ({"utd_ratio": 0.3, "num_envs": 4}, "utd_ratio=0.3 gives 1.2 gradient steps per update"),
        ({"target_entropy": float("nan")}, "target_entropy must be finite"),
        ({"total_timesteps": 3, "num_envs": 4}, "total_timesteps=3 is less than one update"),
        ({"learning_starts": 500, "total_timesteps": 400}, "learning_starts=500 exceeds the run's 400 env steps"),
        ({"total_timesteps": 100, "learning_starts": 10}, "batch_size=256 exceeds the replay capacity of 100"),
        ({"utd_ratio": float("inf")}, "utd_ratio must be finite, got inf"),
        ({"utd_ratio": 1e300}, "a whole number up to 65,536 is needed"),
        ({"reward_scale": float("inf")}, "reward_scale must be finite, got inf"),
    ],
)
def test_bad_settings_are_one_line_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        sac.SACConfig(**fields)


def test_the_cli_refuses_a_discrete_env_in_one_line_before_compiling(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "purerl.io.launch", "train", "sac", "--env", "CartPole-v1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "purerl: error: SAC needs continuous actions; CartPole-v1 has 2 discrete actions (train it with ppo or grpo)"
    ]


def test_a_stopped_run_resumes_bitwise_and_a_sweep_traces_the_learning_rates(tmp_path):
    run = ["train", "sac", "--seeds", "2", "--total-timesteps", "120", "--num-envs", "2", "--learning-starts", "40",
           "--batch-size", "8", "--hidden-sizes", "8", "--eval-episodes", "2", "--chunk-updates", "10",
           "--checkpoint-every", "20"]  # fmt: skip
    assert cli.main([*run, "--out", str(tmp_path / "whole")]) == 0
    shutil.copytree(tmp_path / "whole", tmp_path / "stopped")
    # Killed after update 40 of 60: the last checkpoint and the results never got written.
    shutil.rmtree(tmp_path / "stopped" / "checkpoints" / "60")
    for name in ("metrics.csv", "summary.json", "eval.npz"):
        (tmp_path / "stopped" / name).unlink()
    assert cli.main(["train", "sac", "--resume", str(tmp_path / "stopped")]) == 0
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["resumed_from_update"] == 40
    assert (tmp_path / "stopped" / "metrics.csv").read_text() == (tmp_path / "whole" / "metrics.csv").read_text()
    np.testing.assert_array_equal(
        np.load(tmp_path / "stopped" / "eval.npz")["returns"], np.load(tmp_path / "whole" / "eval.npz")["returns"]
    )
    sweep = ["sweep", *run[1:], "--grid", "q_lr=1e-3,3e-3", "--grid", "tau=0.005,0.01", "--out", str(tmp_path / "sw")]
    assert cli.main(sweep) == 0
    assert len(json.loads((tmp_path / "sw" / "sweep.json").read_text())["points"]) == 4
