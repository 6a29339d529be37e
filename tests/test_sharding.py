"""Seeds split over devices and processes, run the way users run them: the CLI with its progress bar on.

Each multi-device run happens in a fresh interpreter (the device count is fixed when JAX starts its CPU
backend) under a hard timeout, since the failure this guards against is a hang: with 4 virtual devices on 2
cores, a sharded run used to sit at 0% CPU forever (the orthogonal initialisation's batched QR, run on every
device at once, starved XLA's intra-op thread pool; see ``purerl.io.chunked.init_runs``).
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from purerl.io import cli
from purerl.io.run import read_metrics_csv

# The command of the report (PPO's defaults on CartPole, 8 seeds, the bar on) at 60 updates instead of its 97:
# still two chunks (50, then 10); the bar is drawn after each (83%, then 100%).
CLI = ["train", "ppo", "--env", "CartPole-v1", "--seeds", "8", "--total-timesteps", "30720"]
NUM_UPDATES = 60
HARD_TIMEOUT = 240  # seconds; the run takes about 15 s here


def devices_env(count: int) -> dict[str, str]:
    return os.environ | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={count}", "PYTHONUNBUFFERED": "1"}


def run_cli(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "purerl.io.launch", *CLI, "--out", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HARD_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


SHARES_THE_RUNS = pytest.mark.xdist_group("cli_runs")  # one test worker runs every test that reads them


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one_device") / "run"
    run_cli(out, os.environ | {"PYTHONUNBUFFERED": "1"})
    return out


@pytest.fixture(scope="module")
def four_device_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("four_devices") / "run"
    return out, run_cli(out, devices_env(4)).stderr


@SHARES_THE_RUNS
@pytest.mark.timeout(2 * HARD_TIMEOUT)
def test_cli_on_four_devices_with_the_bar_finishes_and_agrees_with_one_device(one_device_run, four_device_run):
    out, stderr = four_device_run
    assert "8 seeds on 4 devices" in stderr
    bar_lines = [line for line in stderr.splitlines() if "steps/seed" in line]
    assert [line.split("]")[1].split()[0] for line in bar_lines] == ["83%", "100%"]  # after each chunk
    sharded, single = read_metrics_csv(out / "metrics.csv"), read_metrics_csv(one_device_run / "metrics.csv")
    assert sharded["loss"].shape == single["loss"].shape == (8, NUM_UPDATES)
    # Every seed trains from the same keys and state; XLA compiles a device's slice of the seeds into a program
    # that rounds a few sums differently (last bit), so the runs agree to float rounding while those differences
    # stay small, and then drift apart like any chaotic system (README, "Many devices, many hosts").
    for name in ("loss", "value_loss", "entropy", "episode_return", "explained_variance"):
        np.testing.assert_allclose(sharded[name][:, :10], single[name][:, :10], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(sharded["env_steps"], single["env_steps"])


@SHARES_THE_RUNS
def test_a_run_saved_on_four_devices_resumes_on_one(four_device_run, tmp_path, capsys):
    """A requeued job may land on another device count: the checkpoint restores onto this process's one
    device, and the finished run's resume re-evaluates it, as on four."""
    out = tmp_path / "run"
    shutil.copytree(four_device_run[0], out)
    four_device_eval = np.load(out / "eval.npz")["returns"]
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert f"resumed at update {NUM_UPDATES}" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(out / "eval.npz")["returns"], four_device_eval, rtol=1e-5, atol=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@SHARES_THE_RUNS
@pytest.mark.timeout(2 * HARD_TIMEOUT)
def test_two_processes_of_two_devices_with_the_bar_equal_one_process_of_four(tmp_path, four_device_run):
    """The same four-way split computes the same bits whether its devices sit in one process or two."""
    reference, _ = four_device_run
    out, port = tmp_path / "multihost", free_port()
    processes = []
    for process_id in range(2):
        env = devices_env(2) | {
            "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(process_id),
        }
        command = [sys.executable, "-m", "purerl.io.launch", *CLI, "--out", str(out)]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=HARD_TIMEOUT) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    assert "8 seeds on 4 devices" in outputs[0][1] and "steps/seed" in outputs[0][1]  # process 0 draws the bar
    assert "IQM" in outputs[0][0] and "IQM" not in outputs[1][0]  # only process 0 prints results
    assert (out / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    np.testing.assert_array_equal(np.load(out / "eval.npz")["returns"], np.load(reference / "eval.npz")["returns"])


# In a fresh interpreter with 4 devices: padding, what the compiled programs of the kinds named by argv[1:]
# hold, and a short run of the first (one interpreter per test, so that parallel test workers share them).
PROGRAMS = """
import jax, numpy as np, re, sys
import purerl
from purerl.control import grpo, ppo
from purerl.core.sharding import padded_count, seed_mesh, shard_seeds, unpad
from purerl.io.chunked import chunk_program, init_runs
from purerl.io.run import evaluation_program, run_seeds, seed_keys

assert jax.device_count() == 4, jax.devices()
mesh = seed_mesh()
assert padded_count(6, mesh) == 8 and padded_count(8, mesh) == 8
placed = shard_seeds(np.arange(6.0), mesh)
np.testing.assert_array_equal(placed, [0, 1, 2, 3, 4, 5, 5, 5])  # padded by repeating the last seed
assert len(placed.sharding.device_set) == 4 and placed.addressable_shards[3].data.shape == (2,)
np.testing.assert_array_equal(unpad(placed, 6), np.arange(6.0))

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "collective-broadcast",
               "reduce-scatter", "send(", "recv(")
configs = {
    "ppo-CartPole": ("ppo", ppo.PPOConfig(env="CartPole-v1", num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2,
                                          eval_episodes=4)),
    "ppo-Pendulum": ("ppo", ppo.PPOConfig(env="Pendulum-v1", num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2,
                                          eval_episodes=4)),
    "grpo-CartPole": ("grpo", grpo.GRPOConfig(env="CartPole-v1", num_updates=2, num_groups=2, group_size=2,
                                              num_minibatches=2, beta=0.04, eval_episodes=4)),
}
for position, kind in enumerate(sys.argv[1:]):
    algorithm, config = configs[kind]
    module = ppo if algorithm == "ppo" else grpo
    keys = seed_keys(0, 6)
    state = init_runs(module.init, keys, config, mesh)  # on one device, then split over four
    assert len(state.train_state.step.sharding.device_set) == 4
    chunk = chunk_program(module.update, mesh)
    evaluate = evaluation_program(algorithm, mesh)
    programs = {
        "chunk": chunk.lower(state, np.arange(2)).compile().as_text(),
        "evaluation": evaluate.lower(state).compile().as_text(),
    }
    for name, text in programs.items():
        found = [op for op in COLLECTIVES if op in text]
        assert not found, (algorithm, config.env, name, found)  # no communication between devices
        targets = set(re.findall(r'custom_call_target="([^"]+)"', text))
        assert not targets, (algorithm, config.env, name, targets)  # no LAPACK, no FFT, no host callback

    if position > 0:  # its programs only
        continue
    # A short run (the bar on) agrees with a one-device run in every metric of every seed, padding dropped.
    one_device = run_seeds(algorithm, config, 6, mesh=seed_mesh(jax.devices()[:1]))
    four_devices = run_seeds(algorithm, config, 6)
    assert one_device.eval_returns.shape == four_devices.eval_returns.shape == (6, config.eval_episodes)
    np.testing.assert_allclose(four_devices.eval_returns, one_device.eval_returns, rtol=1e-5, atol=1e-5)
    for name, values in one_device.metrics.items():
        assert four_devices.metrics[name].shape == values.shape == (6, config.num_updates), name
        np.testing.assert_allclose(four_devices.metrics[name], values, rtol=1e-4, atol=1e-5, err_msg=name)
print("programs ok")
"""


@pytest.mark.timeout(HARD_TIMEOUT)
@pytest.mark.parametrize("kinds", [("ppo-Pendulum", "ppo-CartPole"), ("grpo-CartPole",)], ids=["ppo", "grpo"])
def test_sharded_programs_hold_no_communication_and_short_runs_equal_one_device(kinds):
    """The compiled programs of each kind; a short run of the first (PPO on CartPole runs on four devices in the
    CLI's test above, where its first updates agree with one device's)."""
    command = [sys.executable, "-c", PROGRAMS, *kinds]
    result = subprocess.run(command, env=devices_env(4), capture_output=True, text=True, timeout=HARD_TIMEOUT - 10)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "programs ok" in result.stdout
