"""The command line: a full tiny run writes every output; bad input fails in one line before compiling."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from purerl.control.ppo import make_train
from purerl.io import cli, run, run_dir
from purerl.io.config_io import config_from_dict, load_config_values

TINY = [
    "--total-timesteps",
    "2048",
    "--num-envs",
    "4",
    "--num-steps",
    "64",
    "--hidden-sizes",
    "16,16",
    "--eval-episodes",
    "4",
]


def test_train_writes_config_metrics_summary_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "ppo", "--env", "CartPole-v1", "--seeds", "3", "--out", str(out), *TINY]) == 0
    for name in ("config.json", "metrics.csv", "summary.json", "learning_curve.png", "eval.npz"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_seeds"] == 3 and summary["env_steps_per_seed"] == 2048
    assert len(summary["eval"]["return_per_seed"]) == 3
    assert summary["eval"]["iqm_ci_low"] <= summary["eval"]["iqm"] <= summary["eval"]["iqm_ci_high"]
    assert summary["compile_seconds"] > 0 and summary["env_steps_per_second"] > 0
    assert summary["versions"]["jax"] and summary["device"]["platform"] == "cpu"
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("seed,update,") and len(lines) == 1 + 3 * 8
    metrics = run.read_metrics_csv(out / "metrics.csv")
    assert metrics["env_steps"].shape == (3, 8) and metrics["env_steps"][2, -1] == 2048
    # With 8 updates, "the last 5% of updates" is the last one.
    np.testing.assert_allclose(metrics["episode_return"][:, -1], summary["train"]["return_per_seed"], rtol=1e-6)
    printed = capsys.readouterr()
    assert "IQM" in printed.out and "steps/seed" in printed.err  # results table and progress bar
    # The saved config loads back to the same config.
    config = config_from_dict(run.ALGORITHMS["ppo"].config_cls, load_config_values(out / "config.json"))
    assert config.hidden_sizes == (16, 16) and config.total_timesteps == 2048
    # Seed 1 of the CLI run is a plain single run with key split(key(0), 3)[1].
    _, single = jax.jit(make_train(config))(run.seed_keys(0, 3)[1])
    for name in ("episode_return", "value_loss", "approx_kl"):
        np.testing.assert_allclose(metrics[name][1], single[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_train_grpo_writes_its_group_metrics_and_a_curve_over_per_seed_env_steps(tmp_path, capsys):
    out = tmp_path / "grpo"
    flags = ["--num-updates", "3", "--num-groups", "2", "--group-size", "4", "--num-minibatches", "2"]
    assert cli.main(["train", "grpo", "--seeds", "2", "--out", str(out), "--eval-episodes", "4", *flags]) == 0
    for name in ("config.json", "metrics.csv", "summary.json", "learning_curve.png", "eval.npz"):
        assert (out / name).stat().st_size > 0, name
    metrics = run.read_metrics_csv(out / "metrics.csv")
    for name in ("group_return_std", "zero_spread_fraction", "clip_fraction", "entropy", "episode_length"):
        assert metrics[name].shape == (2, 3), name
    summary = json.loads((out / "summary.json").read_text())
    low, high = summary["env_steps_per_seed_range"]
    assert low <= summary["env_steps_per_seed"] <= high and [low, high] == sorted(metrics["env_steps"][:, -1])
    assert "updates" in capsys.readouterr().err  # the progress bar counts updates: steps per update vary


def test_config_file_then_flags_override(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_source": "a note", "env": "Acrobot-v1", "num_envs": 8, "learning_rate": 1e-3}))
    args = cli.build_parser().parse_args(["train", "ppo", "--config", str(path), "--num-envs", "2"])
    config = cli.config_from_args(run.ALGORITHMS["ppo"].config_cls, args)
    assert (config.env, config.num_envs, config.learning_rate) == ("Acrobot-v1", 2, 1e-3)


def fail_if_compiled(*args, **kwargs):
    raise AssertionError("training started despite bad input")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--env", "Pong-v5"], "unknown env 'Pong-v5'; supported: CartPole-v1"),
        (["--num-envs", "3", "--num-steps", "7"], "num_envs*num_steps=21 is not divisible by num_minibatches=4"),
        (["--num-steps", "-1"], "num_steps must be > 0, got -1"),
        (["--seeds", "0"], "--seeds must be > 0, got 0"),
        (["--chunk-updates", "0"], "--chunk-updates must be > 0, got 0"),
        (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0, got -1"),
        (["--chunk-updates", "1.5"], "argument --chunk-updates: invalid int value: '1.5'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--log-std-init", "0.5"], "log_std_init is for continuous actions; CartPole-v1 has discrete actions"),
        (["--learning-rate", "fast"], "--learning-rate: cannot read 'fast' as float"),
        (["--config", "missing.json"], "config file 'missing.json' does not exist"),
    ],
)
def test_bad_input_one_line_error_before_compile(monkeypatch, capsys, tmp_path, flags, message):
    monkeypatch.setattr(run_dir, "run_seeds", fail_if_compiled)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "ppo", "--out", str(tmp_path / "x"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("purerl: error: ") and message in err and err.count("\n") == 1


def test_resume_of_a_language_model_run_names_its_command(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_algorithm": "sft", "task": "sentiment"}))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "ppo", "--resume", str(tmp_path)])
    assert exit_info.value.code == 2
    right = f"use: purerl lm sft --resume {tmp_path}"
    assert capsys.readouterr().err == f"purerl: error: --resume {str(tmp_path)!r} is an LM run; {right}\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_is_rejected_before_compile(monkeypatch, capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setattr(run_dir, "run_seeds", fail_if_compiled)
    with pytest.raises(SystemExit):
        cli.main(["train", "ppo", "--out", str(locked / "x")])
    assert "is not writable" in capsys.readouterr().err


def test_out_that_is_a_file_is_rejected_before_compile(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(run_dir, "run_seeds", fail_if_compiled)
    with pytest.raises(SystemExit):
        cli.main(["train", "ppo", "--out", str(blocker / "x")])
    err = capsys.readouterr().err
    assert f"--out '{blocker / 'x'}' is not writable" in err and err.count("\n") == 1


def test_console_script_help_lists_every_config_field():
    result = subprocess.run(
        [sys.executable, "-m", "purerl.io.cli", "train", "ppo", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--bootstrap-truncation", "--target-kl", "--normalize-observations", "--eval-greedy"):
        assert flag in result.stdout
