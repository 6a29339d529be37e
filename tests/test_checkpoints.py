"""Chunked training and checkpoints: a killed run resumes bitwise identical; bad checkpoints fail clearly;
NaN stops the run with the update and seed, keeping the last good checkpoint."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.control import grpo, ppo, sac
from purerl.core.sharding import seed_mesh
from purerl.core.streams import split_streams
from purerl.io import cli
from purerl.io.checkpoints import CheckpointError, RunCheckpoints, state_digest
from purerl.io.chunked import first_non_finite, train_in_chunks
from purerl.io.run import ALGORITHMS, read_metrics_csv
from purerl.io.run_dir import load_run_dir
from purerl.io.stopping import NonFiniteError
from purerl.io.tuned import tuned_config

# 400 updates of 2 seeds x 4 envs x 16 steps: long enough (a few seconds) to be killed mid-run.
RUN = [
    "train", "ppo", "--seeds", "2", "--total-timesteps", "25600", "--num-envs", "4", "--num-steps", "16",
    "--num-minibatches", "2", "--update-epochs", "1", "--hidden-sizes", "8", "--eval-episodes", "2",
    "--normalize-observations", "true", "--chunk-updates", "10", "--checkpoint-every", "20",
]  # fmt: skip
NUM_UPDATES = 400


def launch(out: Path, *flags: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "purerl.io.cli", *RUN, *flags, "--out", str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(process: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while RunCheckpoints(out / "checkpoints").latest_step() is None:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def restore_checkpoint(out: Path, step: int):
    """``(state, history, meta)`` of the PPO run in ``out`` at ``step``."""
    algorithm, config, settings = load_run_dir(out)
    keys = jax.random.split(jax.random.key(0), settings.num_seeds)
    like = jax.eval_shape(jax.vmap(ppo.init, in_axes=(0, None)), keys, config)
    return RunCheckpoints(out / "checkpoints").restore(step, like)


def final_checkpoint(out: Path):
    assert RunCheckpoints(out / "checkpoints").latest_step() == NUM_UPDATES
    return restore_checkpoint(out, NUM_UPDATES)


def assert_same_run(a: Path, b: Path) -> None:
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
    state_a, history_a, _ = final_checkpoint(a)
    state_b, history_b, _ = final_checkpoint(b)
    assert state_digest(state_a) == state_digest(state_b)  # every byte of every seed's state
    for name in history_a:
        np.testing.assert_array_equal(history_a[name], history_b[name], err_msg=name)
    evals_a, evals_b = np.load(a / "eval.npz"), np.load(b / "eval.npz")
    np.testing.assert_array_equal(evals_a["returns"], evals_b["returns"])


SHARES_THE_RUN = pytest.mark.xdist_group("uninterrupted")  # one test worker runs every test that reads it


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert cli.main([*RUN, "--out", str(out)]) == 0
    return out


@SHARES_THE_RUN
def test_killed_run_resumes_bitwise_identical(uninterrupted, tmp_path, capsys):
    out = tmp_path / "killed"
    process = launch(out)
    wait_for_checkpoint(process, out)
    process.kill()  # SIGKILL: no chance to save; the newest periodic checkpoint is all that is left
    process.wait()
    saved = RunCheckpoints(out / "checkpoints").latest_step()
    assert 0 < saved < NUM_UPDATES
    capsys.readouterr()
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert f"resuming at update {saved} of {NUM_UPDATES}\n" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_update"] == saved
    assert summary["run_train_seconds"] > summary["train_seconds"] > 0  # the killed process's seconds, then these
    assert_same_run(uninterrupted, out)


@SHARES_THE_RUN
def test_a_run_stopped_before_its_first_checkpoint_resumes_from_update_0_and_says_so(uninterrupted, tmp_path, capsys):
    out = tmp_path / "stopped_while_compiling"  # what a run holds until its first save: its settings alone
    out.mkdir()
    for name in ("config.json", "run.json"):
        shutil.copy(uninterrupted / name, out / name)
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert f"{out} has no checkpoint yet: starting at update 0\n" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["resumed_from_update"] == 0
    assert_same_run(uninterrupted, out)
    trained = json.loads((out / "summary.json").read_text())
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert "finished training (400 updates): evaluating its final state again\n" in capsys.readouterr().err
    # It trained nothing: its summary keeps the whole run's training time and rate, not zeros.
    again = json.loads((out / "summary.json").read_text())
    assert again["train_seconds"] < 0.1 and again["run_train_seconds"] > 0
    assert again["run_train_seconds"] == pytest.approx(trained["run_train_seconds"], abs=0.1)  # recorded at the end
    assert again["env_steps_per_second"] == pytest.approx(2 * 25600 / again["run_train_seconds"], rel=1e-3)
    # A checkpoint saved before purerl recorded training time: the time is unknown, and so said.
    meta_file = out / "checkpoints" / str(NUM_UPDATES) / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({name: value for name, value in meta.items() if name != "train_seconds"}))
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    unknown = json.loads((out / "summary.json").read_text())
    assert unknown["run_train_seconds"] is None and unknown["env_steps_per_second"] is None
    assert "the whole run's time is unknown" in capsys.readouterr().out


@SHARES_THE_RUN
def test_sigterm_saves_at_the_chunk_boundary_and_resume_completes(uninterrupted, tmp_path):
    out = tmp_path / "terminated"
    process = launch(out)
    wait_for_checkpoint(process, out)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert process.returncode == 128 + signal.SIGTERM, stderr  # the status of a process killed by SIGTERM
    assert "SIGTERM at update" in stderr and f"--resume {out}" in stderr
    saved = RunCheckpoints(out / "checkpoints").latest_step()
    assert saved % 10 == 0 and 0 < saved < NUM_UPDATES
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert_same_run(uninterrupted, out)


# A run whose second chunk cannot finish: a host callback inside update 12 blocks forever.
STUCK_RUN = """
import pathlib, sys, time
import purerl
import jax
from purerl.control import ppo
from purerl.core.sharding import seed_mesh
from purerl.io.checkpoints import RunCheckpoints
from purerl.io.chunked import train_in_chunks

config = ppo.PPOConfig(total_timesteps=40 * 64, num_envs=4, num_steps=16, hidden_sizes=(8,), update_epochs=1)

def block_at_update_12(update):
    if update == 12:
        print("stuck", flush=True)
        time.sleep(3600)

def update(state, index):
    jax.debug.callback(block_at_update_12, index)
    return ppo.update(state, index)

keys = jax.random.split(jax.random.key(0), 2)
train_in_chunks(ppo.init, update, config.num_updates, keys, config, seed_mesh(),
                chunk_updates=10, checkpoints=RunCheckpoints(pathlib.Path(sys.argv[1])), checkpoint_every=10,
                stop_grace=float(sys.argv[2]))
"""


def start_stuck_run(tmp_path: Path, grace: float) -> subprocess.Popen:
    """``STUCK_RUN`` in a subprocess, returned once its second chunk is stuck (after the update-10 checkpoint)."""
    command = [sys.executable, "-c", STUCK_RUN, str(tmp_path / "checkpoints"), str(grace)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "stuck", process.stderr.read() if process.poll() else ""
    assert RunCheckpoints(tmp_path / "checkpoints").latest_step() == 10
    return process


@pytest.mark.timeout(180)
def test_a_stop_is_honoured_within_the_grace_period_when_the_chunk_cannot_finish(tmp_path):
    grace = 3.0
    process = start_stuck_run(tmp_path, grace)
    try:
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=grace + 30)
        waited = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert grace <= waited < grace + 15
    assert "SIGTERM: stopping after the current chunk of updates (at most 3 s" in stderr  # said at once
    assert f"did not finish within the {grace:g} s grace period" in stderr
    assert f"the last good checkpoint: update 10 in {tmp_path / 'checkpoints'}" in stderr
    assert RunCheckpoints(tmp_path / "checkpoints").latest_step() == 10  # kept, and still readable:
    config = ppo.PPOConfig(total_timesteps=40 * 64, num_envs=4, num_steps=16, hidden_sizes=(8,), update_epochs=1)
    like = jax.eval_shape(jax.vmap(ppo.init, in_axes=(0, None)), jax.random.split(jax.random.key(0), 2), config)
    RunCheckpoints(tmp_path / "checkpoints").restore(10, like)


@pytest.mark.timeout(180)
def test_a_second_ctrl_c_stops_at_once_while_the_chunk_runs(tmp_path):
    process = start_stuck_run(tmp_path, grace=600.0)
    try:
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)  # the first Ctrl-C is acknowledged; the chunk still cannot finish
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        waited = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert waited < 10
    assert "SIGINT: stopping after the current chunk of updates (at most 600 s; Ctrl-C again to stop at once)" in stderr
    assert "a second SIGINT; stopping at once without saving; the last good checkpoint: update 10 in" in stderr
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("grace", ["0", "-1", "inf", "nan", "1e400"])
def test_stop_grace_must_be_a_positive_finite_wait(capsys, grace):
    with pytest.raises(SystemExit) as stop:
        cli.main([*RUN, "--stop-grace", grace, "--out", "unused"])
    assert stop.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("purerl: error: --stop-grace must be > 0 and at most "), message
    assert message.endswith(f"seconds, got {float(grace)!r}"), message


def resume_error(out: Path, capsys) -> str:
    """The one-line error of resuming ``out`` (stderr's last line; progress lines come before it)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "ppo", "--resume", str(out)])
    assert stop.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("purerl: error: "), message
    return message


def copy_run(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    return target


@SHARES_THE_RUN
@pytest.mark.parametrize("target", ["array data", "metadata"])
def test_corrupt_checkpoint_is_a_clear_error(uninterrupted, tmp_path, capsys, target):
    out = copy_run(uninterrupted, tmp_path / "corrupt")
    state_dir = out / "checkpoints" / str(NUM_UPDATES) / "state"
    if target == "array data":  # the OCDBT data files that the restore reads
        victims = list((state_dir / "d").iterdir())
    else:
        victims = [state_dir / "_METADATA"]
    for victim in victims:
        data = bytearray(victim.read_bytes())
        data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero the second half
        victim.write_bytes(bytes(data))
    message = resume_error(out, capsys)
    assert f"checkpoint {out / 'checkpoints'}" in message and ("corrupt" in message or "unreadable" in message)


@SHARES_THE_RUN
def test_mismatched_checkpoint_is_a_clear_error(uninterrupted, tmp_path, capsys):
    # A config that changes the state's shapes is named as the difference, not as the shapes it implies.
    other_shape = copy_run(uninterrupted, tmp_path / "shape")
    config = json.loads((other_shape / "config.json").read_text())
    (other_shape / "config.json").write_text(json.dumps(config | {"hidden_sizes": [16]}))
    message = resume_error(other_shape, capsys)
    assert message.endswith("config field hidden_sizes is (8,) there and (16,) here"), message
    # A state unlike its own meta's (saved by another purerl version, say) is refused for its shapes.
    meta = other_shape / "checkpoints" / str(NUM_UPDATES) / "meta" / "metadata"
    values = json.loads(meta.read_text())
    meta.write_text(json.dumps(values | {"config": values["config"] | {"hidden_sizes": [16]}}))
    assert "does not match this run's state" in resume_error(other_shape, capsys)

    other_value = copy_run(uninterrupted, tmp_path / "value")
    (other_value / "config.json").write_text(json.dumps(config | {"learning_rate": 1e-3}))
    message = resume_error(other_value, capsys)
    assert message.endswith("saved by a different run: config field learning_rate is 0.0025 there and 0.001 here")


@SHARES_THE_RUN
def test_a_checkpoint_from_before_a_config_field_existed_resumes(uninterrupted, tmp_path, capsys):
    """A field added to the config since (here ``reward_scale``, at its default) is no other run: the upgrade
    from an older purerl must not orphan a days-long run (it did: "config is {...} there and {...} here")."""
    old = copy_run(uninterrupted, tmp_path / "old")
    for path in (old / "config.json", old / "checkpoints" / str(NUM_UPDATES) / "meta" / "metadata"):
        values = json.loads(path.read_text())
        config = values.get("config", values)
        del config["reward_scale"]
        path.write_text(json.dumps(values))
    assert cli.main(["train", "ppo", "--resume", str(old)]) == 0
    assert json.loads((old / "summary.json").read_text())["resumed_from_update"] == NUM_UPDATES

    meta = old / "checkpoints" / str(NUM_UPDATES) / "meta" / "metadata"
    values = json.loads(meta.read_text())
    meta.write_text(json.dumps(values | {"config": values["config"] | {"reward_scale": 2.0}}))
    message = resume_error(old, capsys)
    assert message.endswith("saved by a different run: config field reward_scale is 2.0 there and 1.0 here")


@SHARES_THE_RUN
def test_a_checkpoint_from_before_a_metric_existed_resumes_with_nan_for_its_updates(uninterrupted, tmp_path):
    """A metric added since (here ``episodes_truncated``) has no values for the restored updates: NaN there, so
    every column of metrics.csv keeps one value per update (it held the resumed updates' alone, and the summary
    failed with an IndexError after the whole run had trained)."""
    old = copy_run(uninterrupted, tmp_path / "old")
    resumed_at = NUM_UPDATES - 20  # the older of the 2 kept checkpoints
    state, history, meta = restore_checkpoint(old, resumed_at)
    del history["episodes_truncated"]
    subprocess.run(["rm", "-r", str(old / "checkpoints")], check=True)
    RunCheckpoints(old / "checkpoints").save(resumed_at, state, history, meta)
    assert cli.main(["train", "ppo", "--resume", str(old)]) == 0
    resumed, reference = read_metrics_csv(old / "metrics.csv"), read_metrics_csv(uninterrupted / "metrics.csv")
    assert resumed.keys() == reference.keys()
    for name, values in reference.items():
        if name == "episodes_truncated":
            assert np.isnan(resumed[name][:, :resumed_at]).all()
            np.testing.assert_array_equal(resumed[name][:, resumed_at:], values[:, resumed_at:])
        else:
            np.testing.assert_array_equal(resumed[name], values, err_msg=name)


@SHARES_THE_RUN
def test_resume_refuses_flags_and_out_refuses_an_earlier_run(uninterrupted, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "ppo", "--resume", str(uninterrupted), "--seeds", "4", "--learning-rate", "1"])
    assert "drop --seeds, --learning-rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*RUN, "--out", str(uninterrupted)])
    assert f"--resume {uninterrupted}" in capsys.readouterr().err


def test_first_non_finite_names_the_earliest_update_then_the_lowest_run():
    loss = np.zeros((3, 4))
    assert first_non_finite(loss, np.ones(3, bool), 8) is None
    loss[2, 1], loss[1, 3], loss[0, 1] = np.nan, np.inf, np.inf
    assert first_non_finite(loss, np.ones(3, bool), 8) == "non-finite loss at update 9 in run 0"
    finite = np.array([True, True, False])
    assert first_non_finite(np.zeros((3, 4)), finite, 8) == "non-finite parameters after update 11 in run 2"


def test_nan_stops_with_update_and_seed_and_keeps_the_last_good_checkpoint(tmp_path):
    config = ppo.PPOConfig(total_timesteps=20 * 64, num_envs=4, num_steps=16, hidden_sizes=(8,))
    checkpoints = RunCheckpoints(tmp_path / "checkpoints")
    keys = jax.random.split(jax.random.key(0), 3)
    seed_1 = jax.random.key_data(split_streams(keys[1]).init)

    def poisoned_update(state, index):
        # Seed 1's parameters turn to NaN during update 13, so its loss at update 14 is NaN.
        state, metrics = ppo.update(state, index)
        poison = (index == 13) & jnp.all(jax.random.key_data(state.streams.init) == seed_1)
        params = jax.tree.map(lambda p: jnp.where(poison, jnp.nan, p), state.train_state.params)
        return state._replace(train_state=state.train_state.replace(params=params)), metrics

    expected = r"^non-finite loss at update 14 in seed 1; the last good checkpoint is update 10 in "
    with pytest.raises(NonFiniteError, match=expected):
        train_in_chunks(
            ppo.init, poisoned_update, config.num_updates, keys, config, seed_mesh(),
            chunk_updates=5, checkpoints=checkpoints, checkpoint_every=5, run_name="seed {}".format,
        )  # fmt: skip
    assert checkpoints.latest_step() == 10


@pytest.mark.parametrize("minutes,saved", [(0.0, [20]), (1e-9, [5, 10, 15, 20]), (60.0, [20])])
def test_a_checkpoint_is_saved_once_checkpoint_minutes_passed_since_the_last(tmp_path, minutes, saved):
    """A kill without warning (SIGKILL, a session's end) loses at most ``checkpoint_minutes`` plus a chunk."""
    config = ppo.PPOConfig(total_timesteps=20 * 64, num_envs=4, num_steps=16, hidden_sizes=(8,))
    checkpoints, steps = RunCheckpoints(tmp_path / "checkpoints"), []
    save = checkpoints.save
    checkpoints.save = lambda step, *rest: (steps.append(step), save(step, *rest))
    train_in_chunks(
        ppo.init, ppo.update, config.num_updates, jax.random.split(jax.random.key(0), 2), config, seed_mesh(),
        chunk_updates=5, checkpoints=checkpoints, checkpoint_every=0, checkpoint_minutes=minutes,
    )  # fmt: skip
    assert steps == saved


def small_state():
    keys = jax.random.split(jax.random.key(1), 2)
    return {"params": jnp.arange(6.0).reshape(2, 3), "key": keys, "step": jnp.int32(7)}


def test_save_restore_round_trip_keeps_typed_keys_and_history(tmp_path):
    checkpoints = RunCheckpoints(tmp_path)
    state, history = small_state(), {"loss": np.arange(4.0).reshape(2, 2)}
    checkpoints.save(3, state, history, {"run": "a"})
    restored, restored_history, meta = checkpoints.restore(3, jax.eval_shape(lambda: state))
    assert state_digest(restored) == state_digest(state) and meta["run"] == "a" and meta["updates_done"] == 3
    assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
    np.testing.assert_array_equal(restored_history["loss"], history["loss"])


def test_a_state_with_empty_arrays_round_trips(tmp_path):
    """MJX keeps ``act`` of shape ``[..., 0]`` for a physics env without actuator states; orbax refuses to save
    an empty array ("Cannot save arrays with zero size"), which stopped every playground run at its first save."""
    checkpoints = RunCheckpoints(tmp_path)
    state = small_state() | {"act": jnp.zeros((2, 4, 0)), "flags": jnp.zeros((0,), bool)}
    checkpoints.save(3, state, {"loss": np.zeros((2, 3))}, {})
    restored, _, _ = checkpoints.restore(3, jax.eval_shape(lambda: state))
    assert restored["act"].shape == (2, 4, 0) and restored["flags"].dtype == bool
    assert state_digest(restored) == state_digest(state)


def test_state_that_reads_back_different_from_what_was_saved_is_corrupt(tmp_path):
    # A flipped bit in array data that still decodes: simulated by a digest that no longer matches.
    checkpoints = RunCheckpoints(tmp_path)
    state = small_state()
    checkpoints.save(3, state, {"loss": np.zeros((2, 3))}, {})
    meta_file = tmp_path / "3" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(meta | {"state_digest": state_digest({"other": jnp.zeros(1)})}))
    with pytest.raises(CheckpointError, match=r"is corrupt: its state does not match the digest"):
        checkpoints.restore(3, state)


def test_the_default_chunk_is_about_50_small_updates():
    """A chunk must end within the stop grace for a stop to save it. Brax's hopper settings take 64 SAC gradient
    steps per update: 50-update chunks ran about 8 minutes for 8 seeds on 2 CPU cores; PPO with 128 brax envs x
    80 steps ran 50-update chunks of 29 minutes there. An update counts as its env steps per seed in PPO's
    default batches of 4 x 128 (rounded up), SAC's as its gradient steps where they are more, GRPO's as all the
    steps its rollouts scan, finished episodes included."""
    assert ALGORITHMS["sac"].default_chunk(sac.SACConfig(env="Pendulum-v1")) == 50  # one gradient step an update
    assert ALGORITHMS["sac"].default_chunk(sac.SACConfig(env="Pendulum-v1", num_envs=16, utd_ratio=0.5)) == 50 // 8
    assert ALGORITHMS["sac"].default_chunk(tuned_config("sac", "brax/hopper")) == 1  # 128 envs x 0.5
    assert ALGORITHMS["ppo"].default_chunk(ppo.PPOConfig()) == 50  # 4 x 128: one batch
    assert ALGORITHMS["ppo"].default_chunk(ppo.PPOConfig(num_envs=4, num_steps=129)) == 25  # just over: two
    assert ALGORITHMS["ppo"].default_chunk(tuned_config("ppo", "Breakout-MinAtar")) == 50 // 16  # 64 x 128
    assert ALGORITHMS["ppo"].default_chunk(tuned_config("ppo", "brax/hopper", num_envs=128)) == 50 // 20  # x 80
    assert ALGORITHMS["ppo"].default_chunk(tuned_config("ppo", "brax/hopper")) == 1  # 2048 x 80
    assert ALGORITHMS["pbrl"].default_chunk(tuned_config("pbrl", "Pendulum-v1")) == 50 // 4  # 16 x 128, as PPO
    # 1,024 envs take 1 gradient step an update but play two batches' env steps
    assert ALGORITHMS["sac"].default_chunk(sac.SACConfig(env="Pendulum-v1", num_envs=1024, utd_ratio=2**-10)) == 25
    assert ALGORITHMS["grpo"].default_chunk(grpo.GRPOConfig(num_groups=4, group_size=4)) == 50 // 16  # x 500 steps
    assert ALGORITHMS["dagger"].default_chunk(None) == 1  # a round per chunk
    assert ALGORITHMS["bc"].default_chunk(None) == 50  # Adam steps


def test_a_save_cut_short_is_removed_by_the_next_run_of_its_checkpoints(tmp_path):
    """A second Ctrl-C or a kill during a save leaves orbax's temporary directory, which no resume reads; the
    resumed run removes it, a reader of the checkpoints does not (it could be another process's save)."""
    checkpoints = RunCheckpoints(tmp_path)
    checkpoints.save(3, small_state(), {"loss": np.zeros((2, 3))}, {})
    partial = tmp_path / "5.orbax-checkpoint-tmp"  # the name orbax 0.12 writes a step under until it commits
    shutil.copytree(tmp_path / "3", partial)
    RunCheckpoints(tmp_path).restore(3, jax.eval_shape(small_state))  # a reader: the save may be in progress
    assert partial.exists()
    resumed = RunCheckpoints(tmp_path, writer=True)
    assert resumed.latest_step() == 3
    resumed.save(4, small_state(), {"loss": np.zeros((2, 4))}, {})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["3", "4"]
