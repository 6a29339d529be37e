"""Taking one seed out of a many-seed run: its state evaluates and acts like the run said it would."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.control import grpo, ppo
from purerl.control.evaluation import select_seed
from purerl.core.streams import split_streams
from purerl.io.run import ALGORITHMS, run_seeds, seed_keys

CONFIGS = {
    "ppo": ppo.PPOConfig(
        total_timesteps=4 * 32 * 3, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=1, eval_episodes=4
    ),
    "grpo": grpo.GRPOConfig(num_updates=2, num_groups=2, group_size=2, num_minibatches=2, eval_episodes=4),
}


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_selected_seed_evaluates_like_the_run_and_its_policy_acts(algorithm):
    config = CONFIGS[algorithm]
    module = ALGORITHMS[algorithm]
    result = run_seeds(algorithm, config, 3, base_seed=5, show_progress=False)
    state = select_seed(result.final_state, 1)
    evaluation = jax.jit(module.evaluate)(state)  # the seed's own evaluation stream
    np.testing.assert_array_equal(  # seed i of the run is the seed key split(key(5), 3)[i], and its streams
        jax.random.key_data(state.streams.evaluation), jax.random.key_data(split_streams(seed_keys(5, 3)[1]).evaluation)
    )
    np.testing.assert_allclose(evaluation["returns"], result.eval_returns[1], rtol=1e-6)
    policy = {"ppo": ppo.policy, "grpo": grpo.policy}[algorithm]
    dist = policy(state, jnp.zeros((7, config.spec.obs_dim)))
    actions = dist.sample(seed=jax.random.key(0))
    assert actions.shape == (7,) and np.all((np.asarray(actions) >= 0) & (np.asarray(actions) < 2))
