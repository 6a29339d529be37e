"""The command line: a full tiny run writes every output; bad input fails in one line before compiling."""

import json
import os
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

from purerl.control import grpo, ppo
from purerl.control.ppo import make_train
from purerl.io import cli, run, run_dir
from purerl.io.config_io import config_from_dict, load_config_values
from purerl.io.tuned import base_values, control_config_from_args, tuned_config, tuned_config_path, tuned_envs

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


def test_a_run_in_which_no_episode_ends_says_so_without_nan_or_warnings(tmp_path, capsys):
    # Pendulum's episodes last 200 steps; this run's envs take 16 each (a playground run's first updates alike).
    flags = ["--env", "Pendulum-v1", "--total-timesteps", "64", "--num-envs", "4", "--num-steps", "16"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["train", "ppo", *flags, "--num-minibatches", "1", "--eval-episodes", "2",
                         "--out", str(tmp_path / "run")]) == 0  # fmt: skip
    assert not [w for w in caught if "empty slice" in str(w.message)]
    printed = capsys.readouterr()
    assert "return - (no episode has ended)" in printed.err and "nan" not in printed.err
    assert "train return                   -  no episode ended in the last updates" in printed.out
    assert "nan" not in printed.out


def test_a_resumed_run_keeps_its_own_chunks_when_the_caller_gives_none(tmp_path):
    """Experiment scripts resume their cells through ``finished_run`` without a chunk setting: the run keeps the
    chunks its ``run.json`` records, not the default for its config, which changed once (PPO's 50 updates
    became 50 updates of 512 env steps per seed) while the SAC study had a brax run half done."""
    out = tmp_path / "run"
    train = ["train", "ppo", "--env", "CartPole-v1", "--seeds", "2", "--chunk-updates", "3", "--out", str(out)]
    assert cli.main([*train, *TINY]) == 0
    (out / "summary.json").unlink()
    _, config, _ = run_dir.load_run_dir(out)
    run_dir.finished_run(out, "ppo", config, run_dir.RunSettings(num_seeds=2))
    assert json.loads((out / "run.json").read_text())["chunk_updates"] == 3
    assert (out / "summary.json").exists()


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
    config, note = parse_control(["train", "ppo", "--config", str(path), "--num-envs", "2"])
    assert (config.env, config.num_envs, config.learning_rate) == ("Acrobot-v1", 2, 1e-3) and note == ""


def parse_control(argv: list[str]):
    args = cli.build_parser().parse_args(argv)
    return control_config_from_args(args.algorithm, run.ALGORITHMS[args.algorithm].config_cls, args)


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_an_env_alone_starts_from_its_tuned_config_and_flags_override_it(algorithm):
    tuned = load_config_values(tuned_config_path(algorithm, "Acrobot-v1"))
    config, note = parse_control(["train", algorithm, "--env", "Acrobot-v1", "--learning-rate", "0.5"])
    assert config == config_from_dict(run.ALGORITHMS[algorithm].config_cls, tuned | {"learning_rate": 0.5})
    assert config.total_timesteps == tuned["total_timesteps"]  # the tuned budget too
    assert note.startswith(f"Acrobot-v1: starting from purerl's tuned {algorithm.upper()} config")
    assert "--config defaults" in note and "\n" not in note
    _, note = parse_control(["train", algorithm, "--env", "Acrobot-v1", "--total-timesteps", "4096"])
    assert "--total-timesteps replaces its budget" in note and "500,000" not in note
    default_env, _ = parse_control(["train", algorithm])  # the default env (CartPole-v1) has one too
    assert default_env == tuned_config(algorithm, "CartPole-v1")


def test_config_defaults_gives_the_generic_defaults_and_an_untuned_env_says_so():
    config, note = parse_control(["train", "ppo", "--config", "defaults", "--env", "Acrobot-v1"])
    assert config == ppo.PPOConfig(env="Acrobot-v1") and note == ""
    config, note = parse_control(["train", "grpo", "--env", "Catch-bsuite"])  # PPO has one for nearly every env
    assert config == grpo.GRPOConfig(env="Catch-bsuite")
    assert note == "Catch-bsuite: purerl ships no tuned GRPO config for it; the generic defaults"


@pytest.mark.parametrize("algorithm", ["ppo", "grpo", "sac"])
def test_every_shipped_tuned_config_is_valid_for_its_env_and_says_where_it_came_from(algorithm):
    envs = tuned_envs(algorithm)
    assert {"ppo": "brax/hopper", "grpo": "CartPole-v1", "sac": "brax/walker2d"}[algorithm] in envs
    for env in envs:
        values = load_config_values(tuned_config_path(algorithm, env))
        assert values["env"] == env and len(values["_source"]) > 40
        assert tuned_config(algorithm, env).env == env
    with pytest.raises(ValueError, match="purerl ships no tuned grpo config for Pong-misc; tuned: Acrobot-v1"):
        tuned_config("grpo", "Pong-misc")


def test_the_tuned_config_note_is_printed_once_the_run_starts(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--total-timesteps", "1024", "--seeds", "1", "--eval-episodes", "2", "--out", str(out)]
    assert cli.main(["train", "ppo", "--env", "CartPole-v1", *flags]) == 0
    assert "CartPole-v1: starting from purerl's tuned PPO config" in capsys.readouterr().err
    saved = load_config_values(out / "config.json")
    assert (saved["num_envs"], saved["num_steps"], saved["learning_rate"]) == (16, 32, 0.0025)


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
        (["--checkpoint-minutes", "-1"], "--checkpoint-minutes must be finite and >= 0, got -1.0"),
        (["--checkpoint-minutes", "nan"], "--checkpoint-minutes must be finite and >= 0, got nan"),
        (["--checkpoint-minutes", "inf"], "--checkpoint-minutes must be finite and >= 0, got inf"),
        (["--chunk-updates", "1.5"], "argument --chunk-updates: invalid int value: '1.5'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--log-std-init", "0.5"], "log_std_init is for continuous actions; CartPole-v1 has discrete actions"),
        (["--learning-rate", "fast"], "--learning-rate: cannot read 'fast' as float"),
        (["--config", "missing.json"], "config file 'missing.json' does not exist"),
        (["--config", "default"], "config file 'default' does not exist (--config defaults: the generic defaults)"),
    ],
)
def test_bad_input_one_line_error_before_compile(monkeypatch, capsys, tmp_path, flags, message):
    monkeypatch.setattr(run_dir, "run_seeds", fail_if_compiled)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "ppo", "--out", str(tmp_path / "x"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("purerl: error: ") and message in err and err.count("\n") == 1


def test_a_config_another_algorithm_saved_is_refused_naming_it(monkeypatch, capsys, tmp_path):
    """pbrl's fields include PPO's: a PPO run's config.json was silently taken, and GRPO's was refused with a
    list of unknown fields that did not say why."""
    monkeypatch.setattr(run_dir, "run_seeds", fail_if_compiled)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"_algorithm": "ppo", "env": "CartPole-v1", "num_envs": 4}))
    for algorithm in ("pbrl", "grpo"):
        with pytest.raises(SystemExit):
            cli.main(["train", algorithm, "--config", str(saved), "--out", str(tmp_path / algorithm)])
        err = capsys.readouterr().err
        assert f"--config {saved} is a config of purerl train ppo, not of purerl train {algorithm}; use: " in err, err
        with pytest.raises(ValueError, match=r"is a PPO run's config, not .*'s: give it to that algorithm's command"):
            base_values(algorithm, run.ALGORITHMS[algorithm].config_cls, str(saved), None)  # what scripts call
        assert err.count("\n") == 1


def test_a_config_of_the_other_halfs_algorithm_of_that_name_is_refused_naming_its_command(capsys, tmp_path):
    """Control and LM both have ppo and grpo: each one's config given to the other was refused with a list of
    unknown fields that did not say why; an LM rm run's config given to lm dpo was taken (their fields overlap)."""
    lm_ppo, control_ppo, lm_rm = tmp_path / "lm_ppo.json", tmp_path / "ppo.json", tmp_path / "rm.json"
    lm_ppo.write_text(json.dumps({"_algorithm": "ppo", "init": "runs/sft", "kl_coef": 0.05, "steps": 10}))
    control_ppo.write_text(json.dumps({"_algorithm": "ppo", "env": "CartPole-v1", "ent_coef": 0.0}))
    lm_rm.write_text(json.dumps({"_algorithm": "rm", "init": "runs/sft", "steps": 10}))
    cases = [
        (["train", "ppo", "--config", str(lm_ppo)], f"is a config of purerl lm ppo, not of purerl train ppo; "
                                                    f"use: purerl lm ppo --config {lm_ppo}"),
        (["sweep", "ppo", "--config", str(lm_ppo), "--grid", "steps=1,2"], "is a config of purerl lm ppo, not of "
                                                                            "purerl sweep ppo"),
        (["lm", "ppo", "--config", str(control_ppo)], f"is a config of purerl train ppo, not of purerl lm ppo; "
                                                      f"use: purerl train ppo --config {control_ppo}"),
        (["lm", "grpo", "--config", str(control_ppo)], "is a config of purerl train ppo, not of purerl lm grpo"),
        (["lm", "dpo", "--config", str(lm_rm)], f"--config {lm_rm} is a config of purerl lm rm, not of purerl lm dpo"),
        (["train", "ppo", "--config", str(lm_rm)], "is a config of purerl lm rm, not of purerl train ppo"),
    ]  # fmt: skip
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err


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


def test_every_command_has_help(capsys):
    """``purerl lm sft --help`` crashed: argparse %-formats help texts, and a field's said "84% of the samples"."""
    commands = [["benchmark"], ["collect"]] + [["lm", name] for name in cli.LM_COMMANDS]
    commands += [[command, name] for command in ("train", "sweep") for name in run.ALGORITHMS]
    for argv in commands:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*argv, "--help"])
        assert exit_info.value.code == 0 and "usage: purerl " + " ".join(argv) in capsys.readouterr().out, argv


def test_a_learning_curve_without_an_ended_episode_says_so_instead_of_an_empty_axis():
    import matplotlib.pyplot as plt

    from purerl.io.plots import draw_learning_curves

    fig, ax = plt.subplots()
    metrics = {"env_steps": np.array([[64, 128]]), "episode_return": np.full((1, 2), np.nan)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no episodes
        draw_learning_curves(ax, {"ppo": metrics})
    assert [text.get_text() for text in ax.texts] == ["no training episode has ended"]
    plt.close(fig)


@pytest.mark.parametrize("continues", [True, False])
def test_an_experiment_script_stopped_by_a_signal_ends_in_one_line(continues):
    """Experiment scripts ended a SIGTERM with a traceback of purerl's internals (the SAC study did)."""
    script = (
        "import signal; from purerl.io.run_dir import run_script; from purerl.io.stopping import Interrupted\n"
        "def main(): raise Interrupted('SIGTERM at update 3/10; saved in runs/x/checkpoints', signal.SIGTERM)\n"
        f"run_script(main, continues={continues})"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    line = "stopped: SIGTERM at update 3/10; saved in runs/x/checkpoints"
    line += "; the same command continues it" if continues else ""
    assert result.returncode == 128 + 15 and result.stderr.strip().splitlines()[-1] == line, result.stderr
    assert "Traceback" not in result.stderr
