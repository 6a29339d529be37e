"""``purerl benchmark``: budgets, a tiny suite end to end through the CLI, continuing a stopped benchmark, the
report's statistics against rliable and a plain normalisation."""

import dataclasses
import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from purerl.control import grpo
from purerl.core.stats import iqm
from purerl.io import cli
from purerl.io.benchmark import PUBLISHED, benchmark_config, run_timing, suite_envs, write_report
from purerl.io.config_io import save_config
from purerl.io.run import read_metrics_csv
from purerl.io.tuned import tuned_config


def test_budgets_are_the_configs_own_or_a_tenth_of_them():
    assert benchmark_config("ppo", "CartPole-v1", "full") == tuned_config("ppo", "CartPole-v1")
    assert benchmark_config("ppo", "CartPole-v1", "short").total_timesteps == 15_000
    assert benchmark_config("ppo", "Catch-bsuite", "full") == tuned_config("ppo", "Catch-bsuite")
    # GRPO: its own config at PPO's env-step budget, with enough updates for it at full-length episodes.
    full = benchmark_config("grpo", "Acrobot-v1", "full")
    assert full == dataclasses.replace(tuned_config("grpo", "Acrobot-v1"), total_timesteps=500_000)  # 400 enough
    short = benchmark_config("grpo", "Acrobot-v1", "short")
    assert (short.num_updates, short.total_timesteps) == (400 // 10, 500_000 // 10)
    pendulum = benchmark_config("grpo", "Pendulum-v1", "full")  # defaults: 8 groups x 4 episodes x 200 steps
    assert (pendulum.num_updates, pendulum.total_timesteps) == (-(-1_000_000 // (8 * 4 * 200)), 1_000_000)
    deepsea = benchmark_config("grpo", "DeepSea-bsuite", "full")  # no GRPO config: the defaults at PPO's budget
    steps = tuned_config("ppo", "DeepSea-bsuite").total_timesteps
    assert deepsea == grpo.GRPOConfig(env="DeepSea-bsuite", num_updates=-(-steps // (32 * deepsea.horizon)),
                                      total_timesteps=steps)  # fmt: skip
    with pytest.raises(ValueError, match="--budget 'long'; choose one of full, short"):
        benchmark_config("ppo", "CartPole-v1", "long")
    suites = "classic, minatar, bsuite, misc, brax, playground, all"
    with pytest.raises(ValueError, match=f"--suite 'atari'; choose one of {suites}"):
        suite_envs("atari")
    assert len(suite_envs("all")) == 25  # gymnax's: brax needs its extra


def test_the_physics_suites_and_their_short_cpu_budgets():
    assert suite_envs("brax") == ("brax/hopper", "brax/walker2d", "brax/halfcheetah", "brax/ant")
    assert suite_envs("playground") == tuple(
        f"playground/{env}" for env in ("CheetahRun", "WalkerWalk", "HopperHop", "CartpoleSwingup")
    )
    full, short = (benchmark_config("ppo", "brax/hopper", budget) for budget in ("full", "short"))
    assert (full.total_timesteps, full.num_envs, full.num_updates) == (50_000_000, 2048, 305)
    assert (short.total_timesteps, short.num_envs, short.num_steps, short.num_updates) == (1_000_000, 128, 80, 97)
    full, short = (benchmark_config("ppo", "playground/WalkerWalk", budget) for budget in ("full", "short"))
    assert (full.num_envs * full.num_steps, full.update_epochs, full.gamma) == (983_040, 16, 0.995)
    assert (short.total_timesteps, short.num_envs, short.num_updates) == (1_200_000, 128, 19)
    sac = benchmark_config("sac", "playground/HopperHop", "full")
    assert (sac.total_timesteps, sac.utd_ratio, sac.target_entropy, sac.critic_layer_norm) == (10**7, 1 / 16, -2, True)
    sac = benchmark_config("sac", "brax/walker2d", "short")
    assert (sac.total_timesteps, sac.utd_ratio, sac.reward_scale) == (7_864_320 // 50, 0.25, 5.0)
    # SAC's defaults are Pendulum's (a 20k budget, 5000 random steps first): no benchmark budget for other envs.
    with pytest.raises(ValueError, match=r"^purerl ships no tuned SAC config for brax/ant, so a SAC benchmark has no "):
        benchmark_config("sac", "brax/ant", "short")


TINY = ["benchmark", "--suite", "bsuite", "--envs", "Catch-bsuite", "DeepSea-bsuite", "--seeds", "3", "--budget",
        "short"]  # fmt: skip


@pytest.mark.xdist_group("benchmark")
def test_a_tiny_benchmark_writes_its_report_and_the_same_command_continues_it(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main([*TINY, "--tensorboard", "--chunk-updates", "7", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "env 1/2 Catch-bsuite" in err and "env 2/2 DeepSea-bsuite" in err
    for env in ("Catch-bsuite", "DeepSea-bsuite"):  # every env's run, one TensorBoard run per seed
        assert sorted(p.name for p in (out / env / "tensorboard").iterdir()) == ["seed_0", "seed_1", "seed_2"]
        assert json.loads((out / env / "run.json").read_text())["chunk_updates"] == 7
    report = json.loads((out / "report.json").read_text())
    for name in ("report.md", "curves.png", "aggregate.png", "profiles.png", "random_policy.json"):
        assert (out / name).exists(), name
    assert [row["env"] for row in report["envs"]] == ["Catch-bsuite", "DeepSea-bsuite"]
    assert report["aggregated_envs"] == ["Catch-bsuite"]
    assert list(report["not_aggregated"]) == ["DeepSea-bsuite"]  # published 0.0 = the random policy's return
    assert report["not_aggregated"]["DeepSea-bsuite"].startswith("the published return (0) is not above the random")
    assert [row["config"] for row in report["envs"]] == ["tuned", "tuned"]  # purerl/configs/ppo

    # The aggregate IQM: rliable's of (return - random) / (published - random), by hand.
    summary = json.loads((out / "Catch-bsuite" / "summary.json").read_text())
    random = report["random_policy_return"]["Catch-bsuite"]
    assert -1.0 < random < 0.0  # a random catcher mostly misses: -1, sometimes catches: +1
    scores = (np.asarray(summary["eval"]["return_per_seed"]) - random) / (PUBLISHED["Catch-bsuite"].value - random)
    assert report["aggregates"]["iqm"]["estimate"] == pytest.approx(np.mean(np.sort(scores)))  # 3 seeds: none trimmed
    low, high = report["aggregates"]["iqm"]["ci"]
    assert low <= report["aggregates"]["iqm"]["estimate"] <= high
    markdown = (out / "report.md").read_text()
    assert (
        "| Catch-bsuite | tuned | " in markdown and "Not in the aggregates: DeepSea-bsuite: the published" in markdown
    )

    # Again: every env is read back, nothing trains; the report is the same. A tracker asked for only now
    # cannot reach the finished envs: a line says how to add it to each.
    assert cli.main([*TINY, "--wandb", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    add = f"--wandb is for envs still to train; to add it to this one: purerl train ppo --resume {out}/Catch-bsuite"
    assert f"{add} --wandb" in err
    assert "env 1/2 Catch-bsuite done" in err and "env 2/2 DeepSea-bsuite done" in err and "compiling" not in err
    assert json.loads((out / "report.json").read_text()) == report

    # An env stopped after its last checkpoint but before its results: the report covers the envs finished so
    # far (as while the rest train), and the same command resumes it.
    (out / "DeepSea-bsuite" / "summary.json").unlink()
    partial = write_report(out)
    assert [row["env"] for row in partial["envs"]] == ["Catch-bsuite"] and partial["pending"] == ["DeepSea-bsuite"]
    assert partial["aggregates"] == report["aggregates"]  # DeepSea is not in them anyway
    assert "**Partial: still to run: DeepSea-bsuite.**" in (out / "report.md").read_text()
    assert cli.main([*TINY, "--out", str(out)]) == 0  # the same command, but for the flags that run.json keeps
    assert "env 2/2 DeepSea-bsuite resuming" in capsys.readouterr().err
    assert json.loads((out / "DeepSea-bsuite" / "run.json").read_text())["chunk_updates"] == 7  # the first command's
    assert (out / "DeepSea-bsuite" / "summary.json").exists()
    row = json.loads((out / "report.json").read_text())["envs"][1]
    assert row["resumed_from_update"] > 0 and row["timed_sessions"] == "all"  # its checkpoint kept the train time
    assert row["env_steps_per_second"] > 0 and row["wall_seconds"] > 0
    assert "(last session" not in (out / "report.md").read_text()
    assert "Partial" not in (out / "report.md").read_text()
    # The first command's --tensorboard is kept by the resume: every update and the new evaluation, once each.
    summary = json.loads((out / "DeepSea-bsuite" / "summary.json").read_text())
    events = EventAccumulator(str(out / "DeepSea-bsuite" / "tensorboard" / "seed_0"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.value for event in events.Scalars("eval/episodic_return")] == [
        pytest.approx(summary["eval"]["return_per_seed"][0], rel=1e-6)
    ]
    assert len(events.Scalars("losses/loss")) == len(
        read_metrics_csv(out / "DeepSea-bsuite" / "metrics.csv")["loss"][0]
    )

    # Stopped again before its results, from a final checkpoint older than purerl's record of training time:
    # the run trains nothing, its rate is unknown ("-"), not a crash, and its timing is marked as the last session's.
    checkpoint = max(int(p.name) for p in (out / "DeepSea-bsuite" / "checkpoints").iterdir())
    meta_file = out / "DeepSea-bsuite" / "checkpoints" / str(checkpoint) / "meta" / "metadata"
    meta_file.write_text(
        json.dumps({k: v for k, v in json.loads(meta_file.read_text()).items() if k != "train_seconds"})
    )
    (out / "DeepSea-bsuite" / "summary.json").unlink()
    assert cli.main([*TINY, "--out", str(out)]) == 0
    assert (
        "| - | " in (out / "report.md").read_text()
        and "(last session: resumed at update" in (out / "report.md").read_text()
    )


def test_a_benchmark_directory_refuses_other_settings_and_bad_input_is_one_line(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "benchmark.json").write_text(json.dumps({"algorithm": "ppo", "suite": "bsuite", "envs": ["Catch-bsuite"],
                                                    "num_seeds": 3, "base_seed": 1, "budget": "short"}))  # fmt: skip
    # A run directory of an env from before its config changed (a new tuned config, say) is not read back.
    old = tmp_path / "old"
    (old / "Catch-bsuite").mkdir(parents=True)
    (old / "benchmark.json").write_text((out / "benchmark.json").read_text())
    (old / "Catch-bsuite" / "run.json").write_text("{}")
    earlier = dataclasses.replace(benchmark_config("ppo", "Catch-bsuite", "short"), learning_rate=0.123)
    save_config(earlier, old / "Catch-bsuite" / "config.json", "ppo")
    tiny = ["benchmark", "--suite", "bsuite", "--envs", "Catch-bsuite", "--seeds", "3", "--budget", "short"]
    chunked = tmp_path / "chunked"  # started with --chunk-updates 7: a re-run may omit it, not change it
    chunked.mkdir()
    settings = json.loads((out / "benchmark.json").read_text())
    (chunked / "benchmark.json").write_text(json.dumps(settings | {"chunking": {"chunk_updates": 7}}))
    defaults = tmp_path / "defaults"  # started without them: the defaults were recorded (None: the algorithm's)
    defaults.mkdir()
    chunking = {"chunk_updates": None, "checkpoint_every": 500, "checkpoint_minutes": 10.0}
    (defaults / "benchmark.json").write_text(json.dumps(settings | {"chunking": chunking}))
    before = {path: path.read_text() for path in tmp_path.glob("*/benchmark.json")}
    cases = [
        (
            [*tiny, "--checkpoint-every", "7", "--out", str(old)],
            "was run with another config than Catch-bsuite's now (learning_rate 0.123 -> ",
        ),  # fmt: skip
        ([*tiny, "--chunk-updates", "5", "--out", str(defaults)], "other settings (chunk_updates None -> 5)"),
        (
            [
                "benchmark",
                "--suite",
                "bsuite",
                "--envs",
                "Catch-bsuite",
                "--seeds",
                "4",
                "--budget",
                "short",
                "--out",
                str(out),
            ],
            "holds a benchmark with other settings (num_seeds 3 -> 4)",
        ),
        ([*tiny, "--chunk-updates", "5", "--out", str(chunked)], "other settings (chunk_updates 7 -> 5)"),
        (["benchmark", "--suite", "atari", "--out", str(tmp_path / "a")], "--suite 'atari'; choose one of"),
        (["benchmark", "--envs", "Catch-bsuite", "--out", str(tmp_path / "b")], "--envs Catch-bsuite not in suite"),
        (["benchmark", "--seeds", "0", "--out", str(tmp_path / "c")], "--seeds must be > 0, got 0"),
        ([*tiny, "--chunk-updates", "0", "--out", str(tmp_path / "d")], "--chunk-updates must be > 0, got 0"),
        ([*tiny, "--checkpoint-every", "-1", "--out", str(tmp_path / "e")], "--checkpoint-every must be >= 0, got -1"),
        (["benchmark", "--suite", "bsuite", "--envs", "Catch-bsuite", "Catch-bsuite"], "--envs names an env twice"),
        (["benchmark", "--suite", "bsuite", "--envs", "MNISTBandit-bsuite"], "gymnax downloads MNIST"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and err.count("\n") == 1, err
    assert {path: path.read_text() for path in tmp_path.glob("*/benchmark.json")} == before  # refused: unchanged


def fake_benchmark(directory, algorithm: str, returns: dict[str, list[float]], random: dict[str, float]) -> None:
    """A finished benchmark's report.json with the given per-seed eval returns (compare reads nothing else)."""
    directory.mkdir()
    envs = [{"env": env, "eval": {"return_per_seed": values, "iqm": iqm(np.asarray(values))}}
            for env, values in returns.items()]  # fmt: skip
    report = {"settings": {"algorithm": algorithm}, "envs": envs, "random_policy_return": random}
    (directory / "report.json").write_text(json.dumps(report))


def test_compare_gives_iqm_differences_and_probabilities_of_improvement_as_a_loop_does(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = {"CartPole-v1": list(rng.normal(450, 30, 7)), "DeepSea-bsuite": list(rng.normal(0.5, 0.1, 7))}
    b = {"CartPole-v1": list(rng.normal(420, 30, 9)), "DeepSea-bsuite": list(rng.normal(0.5, 0.1, 9))}
    random = {"CartPole-v1": 22.0, "DeepSea-bsuite": -0.005}  # DeepSea: published 0.0, no better than chance
    fake_benchmark(tmp_path / "a", "ppo", a, random)
    fake_benchmark(tmp_path / "b", "grpo", b, random)
    assert (
        cli.main(["benchmark", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 0
    )
    result = json.loads((tmp_path / "c" / "compare.json").read_text())
    for row in result["envs"]:
        x, y = a[row["env"]], b[row["env"]]
        pairs = [1.0 if xi > yi else 0.5 if xi == yi else 0.0 for xi in x for yi in y]
        assert row["probability_of_improvement"] == pytest.approx(np.mean(pairs))
        assert row["iqm_difference"] == pytest.approx(iqm(np.asarray(x)) - iqm(np.asarray(y)))
        low, high = row["iqm_difference_ci"]
        assert low <= row["iqm_difference"] <= high
    assert result["aggregated_envs"] == ["CartPole-v1"]  # the report's rule: DeepSea makes no scale
    normalised = (np.asarray(a["CartPole-v1"]) - 22.0) / (500.0 - 22.0)
    assert result["aggregate"]["normalised_iqm_a"]["estimate"] == pytest.approx(iqm(normalised))
    assert result["labels"] == ["PPO (a)", "GRPO (b)"]
    assert [row["seeds"] for row in result["envs"]] == [[7, 9], [7, 9]]
    assert (tmp_path / "c" / "compare.png").exists() and "| CartPole-v1 |" in (
        tmp_path / "c" / "compare.md"
    ).read_text()
    capsys.readouterr()
    for argv, message in [
        (["benchmark", "compare", str(tmp_path / "a"), str(tmp_path / "x")], "DIR_B '" + str(tmp_path / "x")),
        (["benchmark", "compar", str(tmp_path / "a"), str(tmp_path / "b")], "to compare: compare DIR_A DIR_B"),
    ]:
        with pytest.raises(SystemExit):
            cli.main([*argv, "--out", str(tmp_path / "d")])
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_resumed_runs_timing_covers_all_its_sessions_where_its_summary_has_them():
    summary = {"num_seeds": 2, "env_steps_per_seed": 1000, "compile_seconds": 3.0, "eval_seconds": 1.0,
               "train_seconds": 4.0, "env_steps_per_second": 250.0}  # fmt: skip
    fresh = run_timing(summary | {"resumed_from_update": 0, "run_train_seconds": 4.0})
    assert fresh == {"env_steps_per_second": 250.0, "wall_seconds": 8.0, "timed_sessions": "all"}
    resumed = run_timing(summary | {"resumed_from_update": 5, "run_train_seconds": 10.0})
    assert resumed == {"env_steps_per_second": 2 * 1000 / 10.0, "wall_seconds": 14.0, "timed_sessions": "all"}
    for older in ({"run_train_seconds": None}, {}):  # resumed from a checkpoint without the record, or written before
        last = run_timing(summary | {"resumed_from_update": 5} | older)
        assert last == {"env_steps_per_second": 250.0, "wall_seconds": 8.0, "timed_sessions": "last"}
