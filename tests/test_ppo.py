"""PPO: loss against a hand computation, determinism, vmapped == single, config validation, learning."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from seed_checks import assert_vmapped_seed_equals_single_run

from purerl.control.policy import make_network
from purerl.control.ppo import PPOConfig, evaluate, make_train, ppo_loss

SMALL = PPOConfig(
    env="CartPole-v1",
    total_timesteps=4 * 32 * 6,
    num_envs=4,
    num_steps=32,
    num_minibatches=2,
    update_epochs=2,
    hidden_sizes=(16, 16),
)


def test_ppo_loss_matches_hand_computation():
    config = dataclasses.replace(SMALL, clip_eps=0.2, vf_coef=0.7, ent_coef=0.03)
    network = make_network(config)
    params = network.init(jax.random.key(0), jnp.zeros((1, 4)))
    rng = np.random.default_rng(0)
    n = 8
    obs = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    dist, value = network.apply(params, obs)
    action = jnp.asarray(rng.integers(0, 2, size=n))
    new_log_prob = np.asarray(dist.log_prob(action), np.float64)
    old_log_prob = new_log_prob + rng.normal(scale=0.3, size=n)  # ratios spread across the clip range
    old_value = np.asarray(value, np.float64) + rng.normal(scale=0.5, size=n)
    advantages, targets = rng.normal(size=n), rng.normal(size=n)
    minibatch = {
        "obs": obs,
        "action": action,
        "log_prob": jnp.asarray(old_log_prob, jnp.float32),
        "value": jnp.asarray(old_value, jnp.float32),
        "advantages": jnp.asarray(advantages, jnp.float32),
        "targets": jnp.asarray(targets, jnp.float32),
    }
    loss, stats = ppo_loss(params, network, config, minibatch)

    ratio = np.exp(new_log_prob - old_log_prob)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = np.mean(-np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv))
    v = np.asarray(value, np.float64)
    v_clipped = old_value + np.clip(v - old_value, -0.2, 0.2)
    value_loss = np.mean(0.5 * np.maximum((v - targets) ** 2, (v_clipped - targets) ** 2))
    probs = np.exp(np.asarray(dist.logits, np.float64))
    probs /= probs.sum(-1, keepdims=True)
    entropy = np.mean(-(probs * np.log(probs)).sum(-1))
    assert (np.abs(ratio - 1) > 0.2).any() and (np.abs(ratio - 1) < 0.2).any()
    assert float(stats["policy_loss"]) == pytest.approx(policy_loss, rel=1e-4)
    assert float(stats["value_loss"]) == pytest.approx(value_loss, rel=1e-4)
    assert float(stats["entropy"]) == pytest.approx(entropy, rel=1e-4)
    assert float(loss) == pytest.approx(policy_loss + 0.7 * value_loss - 0.03 * entropy, rel=1e-4)
    assert float(stats["clip_fraction"]) == pytest.approx(np.mean(np.abs(ratio - 1) > 0.2))
    log_ratio = new_log_prob - old_log_prob
    assert float(stats["approx_kl"]) == pytest.approx(np.mean(np.expm1(log_ratio) - log_ratio), rel=1e-4)
    assert float(stats["approx_kl_k1"]) == pytest.approx(np.mean(-log_ratio), rel=1e-4, abs=1e-6)


def test_first_minibatch_of_an_update_has_ratio_one():
    """At the first minibatch the policy equals the rollout policy: KL 0, no clipping."""
    config = dataclasses.replace(SMALL, total_timesteps=128, num_minibatches=1, update_epochs=1)
    _, metrics = jax.jit(make_train(config))(jax.random.key(0))
    assert float(metrics["approx_kl"][0]) == pytest.approx(0.0, abs=1e-7)
    assert float(metrics["clip_fraction"][0]) == 0.0


def test_same_key_same_result_and_vmapped_seed_equals_single_run():
    keys = jax.random.split(jax.random.key(42), 4)  # 4 seeds: the count that hung jax 0.10 on 2-core CPUs
    assert_vmapped_seed_equals_single_run(make_train(SMALL), keys, index=2)


def test_metrics_are_per_update_scalars_and_env_steps_count_up():
    state, metrics = jax.jit(make_train(SMALL))(jax.random.key(0))
    num_updates = SMALL.num_updates
    # Adam used the reported rate during the last update (the schedule is linear to 0 over updates).
    last_rate = state.train_state.opt_state[1].hyperparams["learning_rate"]
    assert float(last_rate) == pytest.approx(SMALL.learning_rate / num_updates, rel=1e-5)
    assert all(v.shape == (num_updates,) for v in metrics.values())
    np.testing.assert_array_equal(metrics["env_steps"], SMALL.batch_size * np.arange(1, num_updates + 1))
    np.testing.assert_allclose(
        metrics["learning_rate"], SMALL.learning_rate * (1 - np.arange(num_updates) / num_updates), rtol=1e-6
    )
    assert np.all(np.asarray(metrics["episodes_finished"]) > 0)
    assert np.all(np.asarray(metrics["episodes_truncated"]) == 0)  # poles fall long before CartPole's 500 steps
    assert np.all(np.isfinite(metrics["episode_return"]))


def test_episodes_that_a_time_limit_ends_are_counted_as_truncated():
    # Pendulum never terminates; its time limit ends every episode at step 200: in update 2 (steps 151-300).
    config = PPOConfig(env="Pendulum-v1", num_envs=2, num_steps=150, total_timesteps=600, num_minibatches=2,
                       update_epochs=1, hidden_sizes=(8,))  # fmt: skip
    _, metrics = jax.jit(make_train(config))(jax.random.key(0))
    np.testing.assert_array_equal(metrics["episodes_finished"], [0, 2])
    np.testing.assert_array_equal(metrics["episodes_truncated"], [0, 2])


def test_target_kl_stops_epochs_early():
    config = dataclasses.replace(SMALL, update_epochs=6, target_kl=1e-9, learning_rate=1e-2)
    _, metrics = jax.jit(make_train(config))(jax.random.key(0))
    assert np.all(np.asarray(metrics["epochs_run"]) == 1)  # every first epoch moves the policy past 1e-9
    _, unlimited = jax.jit(make_train(dataclasses.replace(config, target_kl=None)))(jax.random.key(0))
    assert np.all(np.asarray(unlimited["epochs_run"]) == 6)


def test_evaluation_runs_exactly_one_episode_per_env():
    config = dataclasses.replace(SMALL, eval_episodes=5)
    state, _ = jax.jit(make_train(config))(jax.random.key(0))
    result = jax.jit(evaluate)(state, jax.random.key(1))
    assert result["returns"].shape == (5,)
    # CartPole pays 1 per step, so an episode's return equals its length.
    np.testing.assert_array_equal(result["returns"], result["lengths"].astype(np.float32))
    assert np.all(np.asarray(result["lengths"]) >= 8)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"env": "CartPol-v1"}, "unknown env 'CartPol-v1'; supported: CartPole-v1, Acrobot-v1"),
        (
            {"num_envs": 3, "num_steps": 5, "num_minibatches": 4},
            "num_envs*num_steps=15 is not divisible by num_minibatches=4",
        ),
        ({"num_envs": 0}, "num_envs must be > 0, got 0"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0, got -1.0"),
        ({"total_timesteps": 10}, "total_timesteps=10 is less than one rollout"),
        ({"gamma": 1.5}, "gamma must be in [0.0, 1.0], got 1.5"),
        ({"log_std_init": -1.0}, "log_std_init is for continuous actions; CartPole-v1 has discrete actions"),
        ({"activation": "gelu"}, "activation must be one of tanh, relu; got 'gelu'"),
        ({"hidden_sizes": ()}, "hidden_sizes must be non-empty"),
        ({"compute_dtype": "float16"}, "compute_dtype must be one of float32, bfloat16; got 'float16'"),
        ({"scan_unroll": 0}, "scan_unroll must be > 0, got 0"),
        ({"scan_unroll": 200}, "scan_unroll=200 exceeds num_steps=128, the length of the scans it unrolls"),
    ],
)
def test_bad_config_gives_one_line_error(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        PPOConfig(**overrides)
    assert "\n" not in str(error.value)


def test_truncation_flag_changes_advantages_on_a_time_limited_env():
    """Pendulum only ever truncates (200-step limit, never terminates): with bootstrapping on, the value
    targets at the time limit differ from those that treat the cut as a termination."""
    base = PPOConfig(
        env="Pendulum-v1",
        total_timesteps=400,
        num_envs=2,
        num_steps=200,
        num_minibatches=1,
        update_epochs=1,
        hidden_sizes=(8,),
    )
    _, on = jax.jit(make_train(base))(jax.random.key(0))
    _, off = jax.jit(make_train(dataclasses.replace(base, bootstrap_truncation=False)))(jax.random.key(0))
    # Same rollout (same key, same initial params), different value targets -> different value losses.
    np.testing.assert_array_equal(on["episode_return"], off["episode_return"])
    assert not np.allclose(on["value_loss"], off["value_loss"])


@pytest.mark.parametrize("normalize_observations", [False, True])
def test_continuous_evaluation_with_and_without_observation_statistics(normalize_observations):
    config = PPOConfig(
        env="Pendulum-v1",
        total_timesteps=256,
        num_envs=2,
        num_steps=128,
        num_minibatches=1,
        update_epochs=1,
        hidden_sizes=(8,),
        eval_episodes=3,
        normalize_observations=normalize_observations,
    )
    state, _ = jax.jit(make_train(config))(jax.random.key(0))
    result = jax.jit(evaluate)(state, jax.random.key(1))
    np.testing.assert_array_equal(result["lengths"], [200, 200, 200])  # Pendulum always runs to its limit
    assert np.all(np.asarray(result["returns"]) < 0)


def test_unrolled_rollout_and_gae_give_the_same_run():
    """``scan_unroll`` (the GPU default: fewer kernel launches) changes the program, not the result."""
    config = dataclasses.replace(SMALL, scan_unroll=1)
    _, plain = jax.jit(make_train(config))(jax.random.key(0))
    _, unrolled = jax.jit(make_train(dataclasses.replace(config, scan_unroll=5)))(jax.random.key(0))
    for name in plain:
        np.testing.assert_allclose(unrolled[name], plain[name], rtol=1e-5, atol=1e-6, err_msg=name)
