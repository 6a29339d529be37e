"""Two processes of two CPU devices each on localhost (``jax.distributed`` with a local coordinator, gloo
collectives) run the CLI as a cluster would; the results that process 0 gathers and writes equal a
single-process run's, seed by seed."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from purerl.io import cli
from purerl.io.run import read_metrics_csv

# Small on purpose: two processes of two devices share this machine's two cores.
RUN = [
    "train", "ppo", "--seeds", "6", "--total-timesteps", "512", "--num-envs", "4", "--num-steps", "16",
    "--hidden-sizes", "8", "--eval-episodes", "4", "--chunk-updates", "3", "--checkpoint-every", "3",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(400)
def test_two_processes_of_two_devices_equal_one_process(tmp_path):
    out = tmp_path / "multihost"
    port = free_port()
    processes = []
    for process_id in range(2):
        env = os.environ | {
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(process_id),
        }
        command = [sys.executable, "-m", "purerl.io.launch", *RUN, "--out", str(out)]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=360) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    assert "6 seeds on 4 devices" in outputs[0][1]  # process 0 reports; both computed
    assert "IQM" in outputs[0][0] and "IQM" not in outputs[1][0]  # only process 0 prints results

    single = tmp_path / "single"
    assert cli.main([*RUN, "--out", str(single)]) == 0
    sharded, reference = read_metrics_csv(out / "metrics.csv"), read_metrics_csv(single / "metrics.csv")
    assert sharded["loss"].shape == (6, 8)
    for name, values in reference.items():
        np.testing.assert_allclose(sharded[name], values, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(np.load(out / "eval.npz")["returns"], np.load(single / "eval.npz")["returns"])
