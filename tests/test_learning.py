"""Learning tests: real returns within a CI budget on 2 CPU cores, each under its own timeout.

The CartPole setting is experiments/ppo/CartPole-v1.json, which reached 500 on 32 of 32 seeds at 150k steps.

Random policies score about 22 on CartPole-v1 and about -1200 on Pendulum-v1.
"""

import jax
import numpy as np
import pytest

from purerl.control.ppo import PPOConfig, make_evaluate, make_train

pytestmark = pytest.mark.learning


def train_and_evaluate(config: PPOConfig, num_seeds: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    state, metrics = jax.jit(jax.vmap(make_train(config)))(keys)
    evaluation = jax.jit(jax.vmap(make_evaluate(config)))(state, keys)
    return np.asarray(evaluation["returns"]).mean(axis=1), metrics


@pytest.mark.timeout(240)
def test_ppo_solves_cartpole_in_150k_steps():
    config = PPOConfig(
        env="CartPole-v1", total_timesteps=150_000, num_envs=16, num_steps=32, learning_rate=2.5e-3, eval_episodes=32
    )
    returns, metrics = train_and_evaluate(config, num_seeds=2)
    assert returns.mean() >= 400, returns
    assert np.nanmean(np.asarray(metrics["episode_return"])[:, -10:]) >= 400  # training episodes agree


@pytest.mark.timeout(300)
def test_ppo_improves_clearly_on_continuous_pendulum():
    config = PPOConfig(
        env="Pendulum-v1",
        total_timesteps=100_000,
        num_envs=16,
        num_steps=128,
        num_minibatches=32,
        update_epochs=10,
        learning_rate=1e-3,
        gamma=0.9,
        ent_coef=0.0,
        normalize_observations=True,
        scale_rewards=True,
        eval_episodes=32,
    )
    returns, metrics = train_and_evaluate(config, num_seeds=2)
    first_episodes = np.nanmean(np.asarray(metrics["episode_return"])[:, :5])
    assert first_episodes < -900, first_episodes
    assert returns.mean() > -400, returns
