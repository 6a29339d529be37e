"""``--tensorboard`` and ``--wandb``: tiny runs through the CLI, their files read back with TensorBoard's own
reader and a plain reader of W&B's record log, against metrics.csv and summary.json; a killed and resumed run
shows every update once; a missing extra is a one-line error."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from purerl.io import cli, trackers
from purerl.io.checkpoints import RunCheckpoints
from purerl.io.run import read_metrics_csv
from tests.test_checkpoints import NUM_UPDATES, launch, wait_for_checkpoint

TINY = ["train", "ppo", "--env", "CartPole-v1", "--config", "defaults", "--seeds", "2", "--total-timesteps", "4096",
        "--num-envs", "4", "--num-steps", "32", "--hidden-sizes", "8", "--eval-episodes", "3",
        "--chunk-updates", "8"]  # fmt: skip


def tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> ``[(step, value)]`` as TensorBoard shows it (its loader applies purges)."""
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})  # 0: keep every event
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_records(path: Path) -> list:
    """The records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then LevelDB's log format
    (32 KiB blocks of records with a 7-byte header: CRC, length, type FULL/FIRST/MIDDLE/LAST), each payload
    a serialised ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        block_left = 32768 - position % 32768
        if block_left < 7:  # a block's tail too short for a header is padding
            position += block_left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        payload = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:  # zero padding
            continue
        pending += payload
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B stores keys with "/" as nested keys


def wandb_runs(out: Path) -> dict[str, dict]:
    """Run name -> ``{"config": {...}, "history": {step: {key: value}}, "summary": {...}}`` of every offline run."""
    runs = {}
    for path in sorted((out / "wandb").glob("offline-run-*/run-*.wandb")):
        run = {"config": {}, "history": {}, "summary": {}}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name = record.run.display_name
                run["group"] = record.run.run_group
                run["config"] |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
            elif kind == "config":
                run["config"] |= {item.key: json.loads(item.value_json) for item in record.config.update}
            elif kind == "history":
                values = {item_key(item): json.loads(item.value_json) for item in record.history.item}
                run["history"][record.history.step.num] = values
            elif kind == "summary":
                run["summary"] |= {item_key(item): json.loads(item.value_json) for item in record.summary.update}
        runs[name] = run
    return runs


def test_update_rows_leave_out_grpo_updates_past_the_budget():
    metrics = {"env_steps": np.array([[100, 200, 200]]), "loss": np.array([[1.0, 2.0, 3.0]]),
               "training": np.array([[1.0, 1.0, 0.0]])}  # fmt: skip
    assert list(trackers.update_rows(metrics, 0)) == [(100, {"losses/loss": 1.0}), (200, {"losses/loss": 2.0})]


def test_update_rows_of_a_method_without_env_steps_are_numbered_by_update():
    # Behavioural cloning takes no env step: every row at step 0 left TensorBoard only the newest of them.
    metrics = {"env_steps": np.array([[0, 0, 0]]), "loss": np.array([[3.0, 2.0, 1.0]])}
    rows = list(trackers.update_rows(metrics, 0, first_update=10))  # the chunk of updates 10, 11 and 12
    assert rows == [(11, {"losses/loss": 3.0}), (12, {"losses/loss": 2.0}), (13, {"losses/loss": 1.0})]


def test_update_rows_name_metrics_as_cleanrl_does_and_leave_out_nans():
    metrics = {
        "env_steps": np.array([[128, 256]]),
        "episode_return": np.array([[np.nan, 21.0]]),
        "value_loss": np.array([[0.5, 0.25]]),
        "zero_spread_fraction": np.array([[0.0, 1.0]]),
    }
    assert list(trackers.update_rows(metrics, 0)) == [
        (128, {"losses/value_loss": 0.5, "charts/zero_spread_fraction": 0.0}),
        (256, {"charts/episodic_return": 21.0, "losses/value_loss": 0.25, "charts/zero_spread_fraction": 1.0}),
    ]


@pytest.mark.xdist_group("trackers")
def test_tensorboard_and_wandb_runs_per_seed_hold_the_metrics_and_the_evaluation(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = tmp_path / "run"
    assert cli.main([*TINY, "--tensorboard", "--wandb", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"TensorBoard: 2 runs in {out}/tensorboard (tensorboard --logdir {out}/tensorboard)" in err
    assert f"W&B: 2 offline runs in {out}/wandb (upload: wandb sync {out}/wandb/offline-run-*)" in err
    metrics = read_metrics_csv(out / "metrics.csv")
    summary = json.loads((out / "summary.json").read_text())
    runs = wandb_runs(out)
    assert sorted(runs) == [f"{out}/seed_0", f"{out}/seed_1"]
    for seed in range(2):
        steps = metrics["env_steps"][seed].astype(int).tolist()
        finished = ~np.isnan(metrics["episode_return"][seed])
        returns = metrics["episode_return"][seed][finished]
        expected = {
            "charts/episodic_return": list(zip(np.array(steps)[finished].tolist(), returns, strict=True)),
            "losses/value_loss": list(zip(steps, metrics["value_loss"][seed], strict=True)),
            "losses/approx_kl": list(zip(steps, metrics["approx_kl"][seed], strict=True)),
        }
        eval_return = summary["eval"]["return_per_seed"][seed]

        scalars = tensorboard_scalars(out / "tensorboard" / f"seed_{seed}")
        assert "env_steps" not in " ".join(scalars)  # the x axis, not a curve
        for tag, points in expected.items():
            assert [step for step, _ in scalars[tag]] == [step for step, _ in points], tag
            np.testing.assert_allclose([v for _, v in scalars[tag]], [v for _, v in points], rtol=1e-6, err_msg=tag)
        assert scalars[trackers.EVAL_NAME] == [(steps[-1], pytest.approx(eval_return, rel=1e-6))]

        run = runs[f"{out}/seed_{seed}"]
        assert run["group"] == str(out)
        assert run["config"]["seed"] == seed and run["config"]["env"] == "CartPole-v1"
        assert run["config"]["num_envs"] == 4 and run["config"]["algorithm"] == "ppo"
        assert sorted(run["history"]) == steps
        for tag, points in expected.items():
            np.testing.assert_allclose([run["history"][step][tag] for step, _ in points], [v for _, v in points],
                                       rtol=1e-6, err_msg=tag)  # fmt: skip
        assert run["summary"][trackers.EVAL_NAME] == pytest.approx(eval_return)
        assert all(row["global_step"] == step for step, row in run["history"].items())  # W&B's x axis
        assert run["history"][steps[-1]][trackers.EVAL_NAME] == pytest.approx(eval_return)  # a point, too

    # Resuming the finished run evaluates it again (as on other devices): no second W&B run, one eval point.
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert len(wandb_runs(out)) == 2
    assert len(tensorboard_scalars(out / "tensorboard" / "seed_0")[trackers.EVAL_NAME]) == 1


@pytest.mark.xdist_group("trackers")
def test_a_sweep_names_each_tensorboard_run_by_its_point_and_seed(tmp_path):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY[1:], "--grid", "learning_rate=1e-3,3e-4", "--tensorboard", "--out", str(out)]
    assert cli.main(argv) == 0
    names = sorted(str(p.relative_to(out / "tensorboard")) for p in (out / "tensorboard").glob("*/seed_*"))
    assert names == ["learning_rate=0.0003/seed_0", "learning_rate=0.0003/seed_1", "learning_rate=0.001/seed_0",
                     "learning_rate=0.001/seed_1"]  # fmt: skip
    for point, lr in (("learning_rate=0.001", 1e-3), ("learning_rate=0.0003", 3e-4)):
        curve = tensorboard_scalars(out / "tensorboard" / point / "seed_1")["charts/learning_rate"]
        assert len(curve) == 4096 // (4 * 32)  # every update
        assert curve[0][1] == pytest.approx(lr, rel=1e-6)  # the point's own value (annealed from there)


def test_a_resumed_run_s_event_files_replace_the_steps_after_its_checkpoint(tmp_path):
    names = ["seed_0"]
    metrics = {"env_steps": np.array([[10, 20, 30, 40]]), "value_loss": np.array([[1.0, 2.0, 3.0, 4.0]])}
    first = trackers.Trackers(("tensorboard",), tmp_path, "ppo", None, names, [{}])
    first.log_chunk(0, metrics)  # updates 0-3 written; say the newest checkpoint is update 2 when it is killed
    # On disk when log_chunk returns, before the chunk's checkpoint (tensorboardX's flush does not ensure it).
    assert tensorboard_scalars(tmp_path / "tensorboard" / "seed_0")["losses/value_loss"] == [
        (10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]  # fmt: skip
    second = trackers.Trackers(("tensorboard",), tmp_path, "ppo", None, names, [{}])
    second.log_chunk(2, {"env_steps": np.array([[30, 40, 50]]), "value_loss": np.array([[-3.0, -4.0, -5.0]])})
    scalars = tensorboard_scalars(tmp_path / "tensorboard" / "seed_0")
    assert scalars["losses/value_loss"] == [(10, 1.0), (20, 2.0), (30, -3.0), (40, -4.0), (50, -5.0)]


@pytest.mark.parametrize("added_at_resume", [False, True])
def test_a_killed_run_resumed_shows_every_update_once_in_tensorboard(tmp_path, added_at_resume):
    out = tmp_path / "killed"
    process = launch(out, *([] if added_at_resume else ["--tensorboard"]))
    wait_for_checkpoint(process, out)
    process.kill()
    process.wait()
    saved = RunCheckpoints(out / "checkpoints").latest_step()
    assert 0 < saved < NUM_UPDATES
    # Saved in run.json, so a plain resume keeps it; or added here, then kept for the next resume.
    assert cli.main(["train", "ppo", "--resume", str(out), *(["--tensorboard"] if added_at_resume else [])]) == 0
    assert json.loads((out / "run.json").read_text())["tensorboard"] is True
    metrics = read_metrics_csv(out / "metrics.csv")
    for seed in range(2):
        scalars = tensorboard_scalars(out / "tensorboard" / f"seed_{seed}")
        steps = metrics["env_steps"][seed].astype(int).tolist()
        assert [step for step, _ in scalars["losses/value_loss"]] == steps  # each once, in order, from the start
        np.testing.assert_allclose([v for _, v in scalars["losses/value_loss"]], metrics["value_loss"][seed], rtol=1e-6)


def test_the_evaluation_written_in_the_second_of_the_last_chunk_is_kept(tmp_path):
    tracker = trackers.Trackers(("tensorboard",), tmp_path, "ppo", None, ["seed_0"], [{}])
    metrics = {"env_steps": np.array([[10, 20]]), "value_loss": np.array([[1.0, 2.0]])}
    tracker.log_chunk(0, metrics)  # its file purges from step 10: one that sorted before it would lose the eval
    tracker.finish(metrics, np.array([[5.0, 7.0]]))
    assert tensorboard_scalars(tmp_path / "tensorboard" / "seed_0")[trackers.EVAL_NAME] == [(20, 6.0)]


@pytest.mark.xdist_group("trackers")
def test_grpo_updates_past_the_budget_are_left_out_and_each_trained_update_kept(tmp_path):
    out = tmp_path / "grpo"
    argv = ["train", "grpo", "--env", "CartPole-v1", "--config", "defaults", "--seeds", "2", "--num-updates", "12",
            "--total-timesteps", "400", "--num-groups", "2", "--group-size", "2", "--hidden-sizes", "8",
            "--eval-episodes", "2", "--chunk-updates", "4", "--tensorboard", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    metrics = read_metrics_csv(out / "metrics.csv")
    for seed in range(2):
        trained = metrics["training"][seed] == 1
        assert 0 < trained.sum() < 12  # the budget ends the seed's training before its last update
        curve = tensorboard_scalars(out / "tensorboard" / f"seed_{seed}")["losses/loss"]
        assert [step for step, _ in curve] == metrics["env_steps"][seed][trained].astype(int).tolist()
        np.testing.assert_allclose([v for _, v in curve], metrics["loss"][seed][trained], rtol=1e-6)


def test_a_w_and_b_failure_costs_one_line_after_the_results_are_saved(tmp_path, capsys, monkeypatch):
    def fail(*args):
        raise RuntimeError("No API key configured\nrun wandb login")

    monkeypatch.delenv("WANDB_MODE", raising=False)
    write_wandb = trackers.Trackers.write_wandb
    monkeypatch.setattr(trackers.Trackers, "write_wandb", fail)
    out = tmp_path / "run"
    assert cli.main([*TINY, "--wandb", "--out", str(out)]) == 0
    assert (out / "summary.json").exists() and (out / "metrics.csv").exists()
    err = capsys.readouterr().err
    failed = "W&B: could not write the runs (No API key configured); metrics.csv has every metric, and --resume"
    assert f"{failed} {out} writes them\n" in err
    # The resume writes them (the finished run is evaluated again), once.
    monkeypatch.setattr(trackers.Trackers, "write_wandb", write_wandb)
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert len(wandb_runs(out)) == 2 and (out / trackers.WANDB_WRITTEN).exists()
    assert cli.main(["train", "ppo", "--resume", str(out)]) == 0
    assert len(wandb_runs(out)) == 2
    assert f"W&B: the runs are in {out}/wandb already; not written again" in capsys.readouterr().err

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert cli.main([*TINY, "--wandb", "--out", str(tmp_path / "disabled")]) == 0
    assert "W&B: disabled (WANDB_MODE=disabled); nothing written" in capsys.readouterr().err

    monkeypatch.setenv("WANDB_MODE", "cloud")
    with pytest.raises(SystemExit):
        cli.main([*TINY, "--wandb", "--out", str(tmp_path / "other")])
    err = capsys.readouterr().err
    assert err == "purerl: error: --wandb: WANDB_MODE='cloud'; choose one of offline, online, disabled\n"
    assert not (tmp_path / "other").exists()


def test_a_missing_extra_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    find_spec = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "wandb" else find_spec(name))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.main([*TINY, "--wandb", "--out", str(out)])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "purerl: error: --wandb needs wandb: pip install 'purerl[wandb]'\n"
    assert not out.exists()
