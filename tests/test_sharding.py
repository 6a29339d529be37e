"""Seeds split over a device mesh give the same results as on one device (4 virtual CPU devices)."""

import os
import subprocess
import sys

import pytest

# Runs in a fresh interpreter: the device count is fixed when JAX starts its CPU backend.
SCRIPT = """
import dataclasses
import jax, numpy as np
import purerl
from purerl.control.grpo import GRPOConfig
from purerl.control.ppo import PPOConfig
from purerl.core.sharding import padded_count, seed_mesh, shard_seeds, unpad
from purerl.io.run import run_seeds

assert jax.device_count() == 4, jax.devices()
mesh = seed_mesh()
assert padded_count(6, mesh) == 8 and padded_count(8, mesh) == 8
placed = shard_seeds(np.arange(6.0), mesh)
np.testing.assert_array_equal(placed, [0, 1, 2, 3, 4, 5, 5, 5])  # padded by repeating the last seed
assert len(placed.sharding.device_set) == 4 and placed.addressable_shards[3].data.shape == (2,)
np.testing.assert_array_equal(unpad(placed, 6), np.arange(6.0))
configs = {
    "ppo": PPOConfig(total_timesteps=4 * 32 * 4, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2,
                     hidden_sizes=(16, 16), eval_episodes=4),
    "grpo": GRPOConfig(num_updates=2, num_groups=2, group_size=2, num_minibatches=2, update_epochs=1,
                       hidden_sizes=(16, 16), eval_episodes=4),
}
for algorithm, config in configs.items():
    one_device = run_seeds(algorithm, config, 6, show_progress=False, mesh=seed_mesh(jax.devices()[:1]))
    four_devices = run_seeds(algorithm, config, 6, show_progress=False)  # 6 seeds padded to 8, then dropped
    assert one_device.eval_returns.shape == four_devices.eval_returns.shape == (6, 4)
    np.testing.assert_allclose(four_devices.eval_returns, one_device.eval_returns, rtol=1e-5, atol=1e-5)
    for name, values in one_device.metrics.items():
        assert four_devices.metrics[name].shape == values.shape == (6, config.num_updates), name
        np.testing.assert_allclose(four_devices.metrics[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
print("sharded == unsharded")
"""


@pytest.mark.timeout(240)
def test_sharded_run_equals_single_device_run_seed_by_seed():
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=230)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded == unsharded" in result.stdout
