"""Learning tests: real returns within a CI budget on 2 CPU cores, each under its own timeout.

The settings are the shipped experiment configs (PPO's CartPole one reached 500 on 32 of 32 seeds at
150k steps), some with a CI budget. Another CPU or jax version rounds differently and makes each seed another
draw, so a test must pass on seeds it was not written on: experiments/learning_tests/calibrate.py runs each
one's settings on 16 held-out seeds, and the comments cite the share of seed pairs that pass
(experiments/learning_tests/results/calibration.md).

Random policies score about 22 on CartPole-v1 and about -1200 on Pendulum-v1.
"""

from types import ModuleType

import jax
import numpy as np
import pytest

from purerl.control import grpo, ppo, sac
from purerl.io.tuned import tuned_config

pytestmark = pytest.mark.learning


def train_and_evaluate(config, num_seeds: int, algorithm: ModuleType = ppo) -> tuple[np.ndarray, dict]:
    keys = jax.random.split(jax.random.key(0), num_seeds)
    state, metrics = jax.jit(jax.vmap(algorithm.make_train(config)))(keys)
    evaluation = jax.jit(jax.vmap(algorithm.evaluate))(state)  # each seed's evaluation stream
    return np.asarray(evaluation["returns"]).mean(axis=1), metrics


def experiment_config(env: str, algorithm: str = "ppo", **overrides):
    """The shipped tuned config of ``env`` (purerl/configs/<algorithm>/<env>.json) with a CI-sized budget."""
    return tuned_config(algorithm, env, **overrides)


@pytest.mark.timeout(240)
def test_ppo_solves_cartpole_in_150k_steps():
    config = experiment_config("CartPole-v1", eval_episodes=32)
    assert config.total_timesteps == 150_000
    returns, metrics = train_and_evaluate(config, num_seeds=2)  # every held-out seed reached 500
    assert returns.mean() >= 400, returns
    assert np.nanmean(np.asarray(metrics["episode_return"])[:, -10:]) >= 400  # training episodes agree


@pytest.mark.timeout(300)
def test_ppo_improves_clearly_on_continuous_pendulum():
    config = experiment_config("Pendulum-v1", total_timesteps=100_000, eval_episodes=32)
    returns, metrics = train_and_evaluate(config, num_seeds=2)  # 98.4% of held-out pairs pass (not -466, -409)
    first_episodes = np.nanmean(np.asarray(metrics["episode_return"])[:, :5])
    assert first_episodes < -900, first_episodes
    assert returns.mean() > -400, returns


@pytest.mark.timeout(300)
def test_grpo_learns_cartpole_without_a_critic():
    # The shipped config at its 300k env steps: every held-out pair passes (the lowest of 16 seeds 485). A cut
    # to 26 updates passed on these two seeds on one CPU and failed on another (271 and 500): 4 of 16 held-out
    # seeds had not learned by then.
    config = experiment_config("CartPole-v1", "grpo", eval_episodes=32)
    returns, metrics = train_and_evaluate(config, num_seeds=2, algorithm=grpo)
    episode_return = np.asarray(metrics["episode_return"])
    assert episode_return[:, 0].mean() < 40, episode_return[:, 0]  # a near-uniform policy at the start
    assert returns.mean() >= 400, returns
    assert episode_return[:, -3:].mean() >= 300  # the last updates' 32 episodes per seed agree


@pytest.mark.timeout(240)
def test_sac_swings_pendulum_up_in_8k_steps():
    # CleanRL's settings with (64, 64) networks and 1000 random steps: a CI budget (PPO above needs 100k steps
    # to pass -400). 98.4% of held-out pairs pass (not -383 with -315).
    config = sac.SACConfig(total_timesteps=8000, learning_starts=1000, hidden_sizes=(64, 64), eval_episodes=32)
    returns, metrics = train_and_evaluate(config, num_seeds=2, algorithm=sac)
    assert np.nanmean(np.asarray(metrics["episode_return"])[:, 200:1000]) < -900  # the random episodes
    assert returns.mean() > -300 and returns.min() > -500, returns
