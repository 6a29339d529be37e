"""``purerl benchmark``: one algorithm over a suite of gymnax envs, each a resumable run, and the report a paper
needs.

    purerl benchmark --suite classic --algo ppo --seeds 16 --out runs/bench [--budget full|short] [--envs ...]

Each env trains in its own run directory ``DIR/<env>`` (``purerl.io.run_dir``) from its tuned config where
purerl ships one (``purerl/configs``), else the generic defaults: a finished env is read back, an interrupted one
resumed from its newest checkpoint, a new one started, so the same command after a crash, Ctrl-C or SIGTERM
continues where it stopped. ``full`` is the budget of the env's PPO config (the published budget for tuned
envs), for GRPO too: its ``total_timesteps`` is PPO's, with at least enough updates to use it when every episode
runs to the time limit. ``--budget short`` divides every env's budget (``total_timesteps``, and GRPO's
``num_updates``) by ``SHORT_DIVISOR`` (10; brax and playground envs: 50, for a CPU, where PPO also runs
1/16 of its envs).

``DIR/report.md`` (+ ``report.json``, ``curves.png``, ``aggregate.png``, ``profiles.png``): per env the final
evaluation return (IQM with its 95% stratified-bootstrap CI, and the mean), the area under the learning curve
(IQM and CI), env steps/s and wall time, beside the best published number and its budget; across envs the
aggregate figures of Agarwal et al. (2021) through rliable (IQM, mean and optimality gap of normalised scores,
and performance profiles), where 0 is the uniformly random policy measured here and 1 the best published number.
Envs without a published number are left out of the aggregates, and the report says which.
"""

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from purerl.control.envs import SUITES, check_env_name
from purerl.control.evaluation import random_policy_returns
from purerl.control.physics_envs import BRAX, PLAYGROUND, is_physics_env
from purerl.core.stats import (
    AGGREGATES,
    format_iqm_ci,
    interval_estimates,
    iqm,
    learning_curve_auc,
    summarize_runs,
)
from purerl.io.config_io import config_from_dict, config_to_dict, load_config_values
from purerl.io.plots import plot_learning_curve_grid
from purerl.io.run import ALGORITHMS, read_metrics_csv, title
from purerl.io.run_dir import CHUNKING, RUN_FILE, RunSettings, run_in_dir
from purerl.io.stopping import DEFAULT_STOP_GRACE
from purerl.io.sweep import plot_aggregates
from purerl.io.tuned import base_values, tuned_config_path, tuned_envs

BENCHMARKED = ("ppo", "grpo", "sac")  # the algorithms that learn from the env (bc learns from demonstrations)
SHORT_DIVISOR = 10
# Suites beyond gymnax (their extras installed): not part of ``all``.
EXTRA_SUITES = {
    "brax": tuple(BRAX.prefix + env for env in ("hopper", "walker2d", "halfcheetah", "ant")),
    "playground": tuple(
        PLAYGROUND.prefix + env for env in ("CheetahRun", "WalkerWalk", "HopperHop", "CartpoleSwingup")
    ),
}
# The physics suites' short budget, for a 2-core CPU: a brax step costs about 400x a CartPole step there, and
# a Playground step of HopperHop or WalkerWalk 3-4x a brax hopper step.
PHYSICS_SHORT_DIVISOR = 50
# ... and PPO's envs there, so that the short budget still makes about 100 updates (brax hopper: 1M env steps of
# 128 envs x 80 steps), or 20 on playground (128 x 480); the steps per env and minibatches stay the config's.
PHYSICS_SHORT_ENVS_DIVISOR = 16
BUDGETS = ("full", "short")
RANDOM_EPISODES = 1024  # episodes of the random policy per env (the 0 of normalised scores)
SETTINGS_FILE = "benchmark.json"


class Published(NamedTuple):
    value: float  # return (final unless the source says otherwise)
    budget: int | None  # env steps per run; None where the source does not state it
    source: str


# The best published return per env, from ../shared/reference/rl-anchors.md §c (gymnax-blines' stored training
# logs and its README's ES column). 1 on the normalised scale.
PUBLISHED = {
    "CartPole-v1": Published(500.0, 150_000, "gymnax-blines PPO (1 seed)"),
    "Acrobot-v1": Published(-78.9, 500_000, "gymnax-blines PPO, lr 5e-4 (1 seed)"),
    "MountainCar-v0": Published(-118.3, 250_000, "gymnax-blines PPO (1 seed)"),
    "Pendulum-v1": Published(-130.2, None, "gymnax-blines ES (1 seed; its PPO at 1M steps: -195.1)"),
    "MountainCarContinuous-v0": Published(95.3, None, "gymnax-blines ES (1 seed; its PPO at 1M steps: -0.1)"),
    "Breakout-MinAtar": Published(43.4, 10_000_000, "gymnax-blines PPO, lr 1e-3 (1 seed)"),
    "Asterix-MinAtar": Published(17.8, 10_000_000, "gymnax-blines PPO, lr 1e-3 (1 seed)"),
    "SpaceInvaders-MinAtar": Published(136.5, 10_000_000, "gymnax-blines PPO, lr 5e-4, best eval (final 131.6)"),
    "Freeway-MinAtar": Published(58.8, 10_000_000, "gymnax-blines PPO, lr 5e-4 (1 seed)"),
    "Catch-bsuite": Published(1.0, 100_000, "gymnax-blines PPO (1 seed)"),
    "DeepSea-bsuite": Published(0.0, 150_000, "gymnax-blines PPO (1 seed)"),
    "FourRooms-misc": Published(1.0, 200_000, "gymnax-blines PPO (1 seed)"),
}


def suite_envs(suite: str) -> tuple[str, ...]:
    """The envs of ``suite`` (``SUITES``' or ``EXTRA_SUITES``' keys, or ``all``: every gymnax env)."""
    if suite == "all":
        return tuple(env for envs in SUITES.values() for env in envs)
    suites = SUITES | EXTRA_SUITES
    if suite not in suites:
        raise ValueError(f"--suite {suite!r}; choose one of {', '.join((*suites, 'all'))}")
    return suites[suite]


def short_divisor(env: str) -> int:
    """What ``--budget short`` divides ``env``'s budget by."""
    return PHYSICS_SHORT_DIVISOR if is_physics_env(env) else SHORT_DIVISOR


def benchmark_config(algorithm: str, env: str, budget: str) -> Any:
    """``env``'s tuned config (else the generic defaults) at the ``budget`` (``full`` or ``short``)."""
    if budget not in BUDGETS:
        raise ValueError(f"--budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    config_cls = ALGORITHMS[algorithm].config_cls
    if algorithm == "sac" and tuned_config_path("sac", env) is None:  # its defaults are Pendulum's, budget included
        raise ValueError(
            f"purerl ships no tuned SAC config for {env}, so a SAC benchmark has no budget for it; SAC's: "
            f"{', '.join(tuned_envs('sac'))} (--suite brax|playground --envs ...)"
        )
    values, _ = base_values(algorithm, config_cls, None, env)
    config = config_from_dict(config_cls, values | {"env": env})
    if algorithm == "grpo":  # PPO's env-step budget, so that `compare` sets the two side by side at one budget
        steps = benchmark_config("ppo", env, "full").total_timesteps
        at_full_length = config.num_groups * config.group_size * config.horizon  # an update's env steps at most
        num_updates = max(config.num_updates, -(-steps // at_full_length))  # enough to use the budget
        config = dataclasses.replace(config, total_timesteps=steps, num_updates=num_updates)
    if budget == "short":
        changes = {}
        if algorithm == "ppo" and is_physics_env(env):  # a few updates of 2048-4096 envs would teach nothing
            changes["num_envs"] = config.num_envs // PHYSICS_SHORT_ENVS_DIVISOR
            config = dataclasses.replace(config, **changes)
        if config.total_timesteps is not None:
            minimum = config.steps_per_update or 1  # at least one update (GRPO's is None: num_updates sets it)
            changes["total_timesteps"] = max(config.total_timesteps // short_divisor(env), minimum)
        if algorithm == "grpo":
            changes["num_updates"] = max(config.num_updates // short_divisor(env), 1)
        config = dataclasses.replace(config, **changes)
    return config


def check_settings(out: Path, settings: dict[str, Any], chunking: dict[str, Any]) -> dict[str, Any]:
    """A benchmark directory keeps its settings: the same command continues it, another is refused. ``chunking``:
    the ``CHUNKING`` flags given now. A new directory records all three, the defaults resolved (``chunk_updates``
    None: the algorithm's); a flag omitted later keeps the recorded value, as ``train --resume`` keeps a run's.
    Returns what to write to ``benchmark.json`` (``write_settings``) once the envs' runs are checked too."""
    path = out / SETTINGS_FILE
    first = {name: chunking.get(name, getattr(RunSettings, name)) for name in CHUNKING}
    saved = json.loads(path.read_text()) if path.exists() else settings | {"chunking": first}
    kept = saved.get("chunking", {})
    changed = {key: (saved.get(key), value) for key, value in settings.items() if saved.get(key) != value}
    changed |= {key: (kept[key], value) for key, value in chunking.items() if kept.get(key, value) != value}
    if changed:
        text = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise ValueError(f"--out {str(out)!r} holds a benchmark with other settings ({text}); use another --out")
    return settings | {"chunking": kept | chunking}


def write_settings(out: Path, settings: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def run_benchmark(
    algorithm: str,
    suite: str,
    num_seeds: int,
    out: Path,
    budget: str = "full",
    envs: list[str] | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
    base_seed: int = 1,
    run_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains (or resumes, or reads back) every env of the benchmark, then writes and returns the report.
    ``base_seed`` defaults to 1: purerl's configs were tuned on base seed 0, so reported seeds are held out.
    ``run_settings``: ``RunSettings`` fields for every env's run besides the seeds, e.g. ``{"tensorboard":
    True, "chunk_updates": 10}`` (``purerl.io.run_dir``; trackers: ``purerl.io.trackers``); the ``CHUNKING``
    ones are kept in ``DIR/benchmark.json`` for the envs still to train, as the seeds are."""
    names = list(suite_envs(suite)) if not envs else envs
    for env in names:
        check_env_name(env)  # an unknown env, or one purerl cannot run, with its reason
    if len(set(names)) < len(names):
        raise ValueError(f"--envs names an env twice: {' '.join(names)}")
    unknown = [env for env in names if env not in suite_envs(suite)]
    if unknown:
        raise ValueError(f"--envs {', '.join(unknown)} not in suite {suite!r}: {', '.join(suite_envs(suite))}")
    configs = {env: benchmark_config(algorithm, env, budget) for env in names}  # every config checked first
    run_settings = run_settings or {}
    RunSettings(num_seeds=num_seeds, base_seed=base_seed, **run_settings)  # checked before the directory is touched
    settings = {"algorithm": algorithm, "suite": suite, "envs": names, "num_seeds": num_seeds, "base_seed": base_seed,
                "budget": budget}  # fmt: skip
    settings = check_settings(out, settings, {key: value for key, value in run_settings.items() if key in CHUNKING})
    run_settings = RunSettings(num_seeds=num_seeds, base_seed=base_seed, **(run_settings | settings["chunking"]))
    for env in names:  # a run of an env is continued or read back only with the config it would start with now
        check_run_config(out / env, algorithm, configs[env])
    write_settings(out, settings)
    for position, env in enumerate(names, 1):
        run_dir = out / env
        state = "done" if (run_dir / "summary.json").exists() else "resuming" if (run_dir / RUN_FILE).exists() else ""
        print(f"benchmark {algorithm} {suite}: env {position}/{len(names)} {env} {state}".rstrip(), file=sys.stderr)
        if state == "done":  # a tracker asked for now was not there when the env trained: say how to add it
            saved = json.loads((run_dir / RUN_FILE).read_text())
            for name in (name for name in run_settings.trackers if not saved.get(name)):
                command = f"purerl train {algorithm} --resume {run_dir} --{name}"
                print(f"  --{name} is for envs still to train; to add it to this one: {command}", file=sys.stderr)
        else:
            run_in_dir(
                run_dir,
                algorithm,
                configs[env],
                run_settings,
                resume=state == "resuming",
                stop_grace=stop_grace,
            )
            if position < len(names):
                write_report(out)  # the envs finished so far, while the rest train (days, for MinAtar on a CPU)
    return write_report(out)


def check_run_config(run_dir: Path, algorithm: str, config: Any) -> None:
    """One-line ``ValueError`` when ``run_dir`` holds a run of another config than ``config`` (purerl's tuned
    config for the env changed since, say): reading it back would report the old config's results as the
    current one's."""
    if not (run_dir / RUN_FILE).exists():
        return
    saved = config_from_dict(ALGORITHMS[algorithm].config_cls, load_config_values(run_dir / "config.json"))
    changed = [
        f"{name} {getattr(saved, name)!r} -> {getattr(config, name)!r}"
        for name in config_to_dict(config)
        if getattr(saved, name) != getattr(config, name)
    ]
    if changed:
        raise ValueError(
            f"{str(run_dir)!r} was run with another config than {config.env}'s now ({', '.join(changed)}); "
            "use another --out"
        )


def random_baselines(out: Path, envs: list[str]) -> dict[str, float]:
    """Mean return of the uniformly random policy per env (``RANDOM_EPISODES`` episodes, key 0), measured once
    and kept in ``DIR/random_policy.json``."""
    path = out / "random_policy.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    for env in envs:
        if env not in saved:
            returns = jax.jit(lambda key, env=env: random_policy_returns(env, RANDOM_EPISODES, key))(jax.random.key(0))
            saved[env] = float(np.mean(returns["returns"]))
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return saved


def unnormalisable(env: str, random: float) -> str | None:
    """Why ``env`` cannot be on the normalised scale, or None."""
    if env not in PUBLISHED:
        return "no published number"
    published = PUBLISHED[env].value
    # A published return no better than chance (DeepSea-bsuite: 0.0, random about -0.005) makes no scale.
    if published - random <= 0.05 * max(abs(published), abs(random), 1.0):
        return f"the published return ({published:g}) is not above the random policy's ({random:.2f})"
    return None


def normalised_scores(rows: list[dict[str, Any]], random: dict[str, float], envs: list[str]) -> np.ndarray:
    """``[seeds, envs]`` eval returns of report ``rows`` on the normalised scale of each of ``envs``:
    ``(return - random policy's) / (best published - random policy's)``."""
    by_env = {row["env"]: np.asarray(row["eval"]["return_per_seed"], dtype=np.float64) for row in rows}
    columns = [(by_env[env] - random[env]) / (PUBLISHED[env].value - random[env]) for env in envs]
    return np.stack(columns, axis=1)


def speed_text(rate: float | None) -> str:
    """Env steps/s for the report, "-" where unknown (a finished run evaluated again from a checkpoint older than
    purerl's record of training time trained nothing in its last session)."""
    return "-" if rate is None else f"{rate:,.0f}"


def run_timing(summary: dict[str, Any]) -> dict[str, Any]:
    """``env_steps_per_second`` and ``wall_seconds`` (compile, train, evaluation) of a run, and ``timed_sessions``:
    "all" where its summary has the whole run's training time, "last" where only its last session's (a run
    resumed from a checkpoint saved before purerl recorded the time)."""
    if not summary["resumed_from_update"]:
        train_seconds, rate, sessions = summary["train_seconds"], summary["env_steps_per_second"], "all"
    elif summary.get("run_train_seconds"):
        train_seconds, sessions = summary["run_train_seconds"], "all"
        rate = summary["num_seeds"] * summary["env_steps_per_seed"] / train_seconds
    else:
        train_seconds, rate, sessions = summary["train_seconds"], summary["env_steps_per_second"], "last"
    return {
        "env_steps_per_second": rate,
        "wall_seconds": summary["compile_seconds"] + train_seconds + summary["eval_seconds"],
        "timed_sessions": sessions,
    }


def env_result(run_dir: Path, algorithm: str) -> dict[str, Any]:
    """One env's row of the report, from its run directory."""
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = read_metrics_csv(run_dir / "metrics.csv")
    auc = learning_curve_auc(metrics["env_steps"], metrics["episode_return"])
    return {
        "env": summary["env"],
        "env_steps_per_seed": summary["env_steps_per_seed"],
        "eval": summary["eval"],
        "auc": {"protocol": "mean training-episode return over env steps (trapezoid area / steps)"}
        | {"per_seed": auc.tolist()}
        | summarize_runs(auc),
        "config": "tuned" if tuned_config_path(algorithm, summary["env"]) is not None else "defaults",
        "resumed_from_update": summary["resumed_from_update"],
        **run_timing(summary),
        "device": summary["device"]["kind"],
    }


def write_report(out: Path) -> dict[str, Any]:
    """``report.md``, ``report.json`` and the figures of the benchmark in ``out``, over the envs finished so far
    (the others are listed as pending)."""
    settings = json.loads((out / SETTINGS_FILE).read_text())
    envs = [env for env in settings["envs"] if (out / env / "summary.json").exists()]
    pending = [env for env in settings["envs"] if env not in envs]
    rows = [env_result(out / env, settings["algorithm"]) for env in envs]
    random = random_baselines(out, envs)
    reasons = {env: unnormalisable(env, random[env]) for env in envs}
    scored = [env for env in envs if reasons[env] is None]
    name = title(settings["algorithm"])
    aggregates = {}
    if scored:
        normalized = normalised_scores(rows, random, scored)
        note = "(random policy, best published): 0 and 1 per env"
        estimates, intervals = plot_aggregates(out, {name: normalized}, note)
        for i, metric in enumerate(AGGREGATES):
            aggregates[metric] = {
                "estimate": float(estimates[name][i]),
                "ci": [float(intervals[name][0, i]), float(intervals[name][1, i])],
            }
    report = {
        "settings": settings,
        "envs": rows,
        "pending": pending,
        "random_policy_return": random,
        "published": {env: PUBLISHED[env]._asdict() for env in envs if env in PUBLISHED},
        "normalisation": "per env, (return - random policy's mean return) / (best published - random)",
        "aggregated_envs": scored,
        "not_aggregated": {env: reason for env, reason in reasons.items() if reason is not None},
        "aggregates": aggregates,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    panels = {
        row["env"]: (
            {name: read_metrics_csv(out / row["env"] / "metrics.csv")},
            {"published": PUBLISHED[row["env"]].value} if row["env"] in PUBLISHED else {},
        )
        for row in rows
    }
    plot_learning_curve_grid(out / "curves.png", panels, "episode_return")
    (out / "report.md").write_text(report_markdown(report) + "\n")
    return report


def report_markdown(report: dict[str, Any]) -> str:
    def stats_text(stats: dict[str, float]) -> str:
        return format_iqm_ci(stats["iqm"], stats["iqm_ci_low"], stats["iqm_ci_high"], digits=2)

    settings = report["settings"]
    lines = [
        f"# {title(settings['algorithm'])} on {settings['suite']} ({settings['num_seeds']} seeds from base seed "
        f"{settings['base_seed']}, {settings['budget']} budget)",
        "",
        *([f"**Partial: still to run: {', '.join(report['pending'])}.**", ""] if report.get("pending") else []),
        "Eval: a separate evaluation of each seed's final policy; AUC: mean training return over the run. IQM "
        "(25%-trimmed mean: with fewer than 4 seeds the plain mean) and 95% stratified-bootstrap CIs over seeds "
        "(rliable). Config: the env's tuned config or the generic defaults. Published: the best published return "
        "(final unless noted), its budget and source (one seed each). Random: the uniformly random policy's mean "
        "return here. Env steps/s: over all of a run's training sessions, or its last one where marked (a run "
        "resumed from a checkpoint older than purerl's record of training time). Wall: that training time, plus "
        "the last session's compile and the evaluation.",
        "",
        "| env | config | env steps | eval IQM [95% CI] | eval mean | AUC IQM [95% CI] | published (budget, source) "
        "| random | env steps/s | wall |",
        "| --- " * 10 + "|",
    ]
    for row in report["envs"]:
        ev, auc, env = row["eval"], row["auc"], row["env"]
        published = report["published"].get(env)
        if published is None:
            cell = "-"
        else:
            budget = "budget not stated" if published["budget"] is None else f"{published['budget']:,}"
            cell = f"{published['value']:g} ({budget}, {published['source']})"
        last_session = row["resumed_from_update"] and row.get("timed_sessions", "last") == "last"
        resumed = f" (last session: resumed at update {row['resumed_from_update']})" if last_session else ""
        lines.append(
            f"| {env} | {row['config']} | {row['env_steps_per_seed']:,} | {stats_text(ev)} | {ev['mean']:.2f} | "
            f"{stats_text(auc)} | {cell} | {report['random_policy_return'][env]:.2f} "
            f"| {speed_text(row['env_steps_per_second'])} | {row['wall_seconds']:.0f} s ({row['device']}){resumed} |"
        )
    lines += ["", "![learning curves](curves.png)", ""]
    if report["aggregates"]:
        lines += [
            f"Aggregates over {len(report['aggregated_envs'])} envs of normalised eval scores "
            f"({report['normalisation']}):",
            "",
            "| metric | estimate | 95% CI |",
            "| --- | --- | --- |",
        ]
        for metric, value in report["aggregates"].items():
            low, high = value["ci"]
            lines.append(f"| {metric.replace('_', ' ')} | {value['estimate']:.3f} | [{low:.3f}, {high:.3f}] |")
        lines += ["", "![aggregates](aggregate.png) ![performance profile](profiles.png)"]
    if report["not_aggregated"]:
        reasons = "; ".join(f"{env}: {reason}" for env, reason in report["not_aggregated"].items())
        lines += ["", f"Not in the aggregates: {reasons}."]
    return "\n".join(lines)


def compare_benchmarks(dir_a: Path, dir_b: Path, out: Path) -> dict[str, Any]:
    """An ablation between two finished benchmarks (two algorithms, or a variant against its base), on the envs
    both ran: per env the difference of eval IQMs (A - B) and the probability of improvement P(A > B) (the
    Mann-Whitney statistic over seed pairs, rliable), each with a 95% bootstrap CI resampling each side's seeds
    independently; over the envs with a published number, each side's IQM of normalised scores and the average
    probability of improvement, with CIs. Writes ``compare.md``, ``compare.json`` and ``compare.png`` to ``out``."""
    from rliable import metrics

    reports = {}
    for flag, directory in (("DIR_A", dir_a), ("DIR_B", dir_b)):
        path = directory / "report.json"
        if not directory.is_dir():
            raise ValueError(f"{flag} {str(directory)!r} does not exist")
        if not path.exists():
            raise ValueError(f"{flag} {str(directory)!r} has no report.json: run its benchmark to the end first")
        reports[flag] = json.loads(path.read_text())
    rows_a = {row["env"]: row for row in reports["DIR_A"]["envs"]}
    rows_b = {row["env"]: row for row in reports["DIR_B"]["envs"]}
    envs = [env for env in rows_a if env in rows_b]
    if not envs:
        raise ValueError(f"{str(dir_a)!r} and {str(dir_b)!r} share no env")
    only = {"a": [env for env in rows_a if env not in rows_b], "b": [env for env in rows_b if env not in rows_a]}
    pending = {"a": reports["DIR_A"].get("pending", []), "b": reports["DIR_B"].get("pending", [])}
    labels = [
        f"{title(report['settings']['algorithm'])} ({directory.name})"
        for report, directory in ((reports["DIR_A"], dir_a), (reports["DIR_B"], dir_b))
    ]
    if labels[0] == labels[1]:
        labels = [f"A: {labels[0]}", f"B: {labels[1]}"]

    def returns(rows: dict, env: str) -> np.ndarray:
        return np.asarray(rows[env]["eval"]["return_per_seed"], dtype=np.float64)[:, None]  # [seeds, 1]

    def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([iqm(a) - iqm(b), metrics.probability_of_improvement(a, b)])

    per_env = []
    for env in envs:
        estimates, intervals = interval_estimates({env: [returns(rows_a, env), returns(rows_b, env)]}, difference)
        per_env.append(
            {
                "env": env,
                "eval_iqm": [rows_a[env]["eval"]["iqm"], rows_b[env]["eval"]["iqm"]],
                "env_steps_per_seed": [rows_a[env].get("env_steps_per_seed"), rows_b[env].get("env_steps_per_seed")],
                "seeds": [len(rows_a[env]["eval"]["return_per_seed"]), len(rows_b[env]["eval"]["return_per_seed"])],
                "iqm_difference": float(estimates[env][0]),
                "iqm_difference_ci": [float(intervals[env][0, 0]), float(intervals[env][1, 0])],
                "probability_of_improvement": float(estimates[env][1]),
                "probability_of_improvement_ci": [float(intervals[env][0, 1]), float(intervals[env][1, 1])],
            }
        )
    random = reports["DIR_A"]["random_policy_return"]
    scored = [env for env in envs if unnormalisable(env, random[env]) is None]  # the report's rule
    aggregate = {}
    if scored:

        def normalised(rows: dict) -> np.ndarray:
            return normalised_scores(list(rows.values()), random, scored)

        def both(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.array([iqm(a), iqm(b), metrics.probability_of_improvement(a, b)])

        estimates, intervals = interval_estimates({"aggregate": [normalised(rows_a), normalised(rows_b)]}, both)
        names = ("normalised_iqm_a", "normalised_iqm_b", "probability_of_improvement")
        aggregate = {
            name: {"estimate": float(estimates["aggregate"][i]), "ci": [float(x) for x in intervals["aggregate"][:, i]]}
            for i, name in enumerate(names)
        }
    result = {"a": str(dir_a), "b": str(dir_b), "labels": labels, "envs": per_env, "aggregated_envs": scored,
              "aggregate": aggregate, "only_in": only, "pending": pending,
              "settings": [reports["DIR_A"]["settings"], reports["DIR_B"]["settings"]]}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_comparison(out / "compare.png", result)
    (out / "compare.md").write_text(compare_markdown(result) + "\n")
    return result


def plot_comparison(path: Path, result: dict[str, Any]) -> None:
    """Per env, P(A > B) with its 95% CI (0.5: no difference), and the aggregate over scored envs."""
    import matplotlib.pyplot as plt

    rows = [
        (row["env"], row["probability_of_improvement"], row["probability_of_improvement_ci"]) for row in result["envs"]
    ]
    if result["aggregate"]:
        value = result["aggregate"]["probability_of_improvement"]
        rows.append(("aggregate", value["estimate"], value["ci"]))
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.2), dpi=120)
    for y, (name, estimate, (low, high)) in enumerate(rows):
        ax.errorbar(estimate, y, xerr=[[estimate - low], [high - estimate]], fmt="o", capsize=3,
                    color="black" if name == "aggregate" else "tab:blue")  # fmt: skip
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [name for name, *_ in rows], fontsize=8)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel(f"P({result['labels'][0]} > {result['labels'][1]}), 95% CI")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare_markdown(result: dict[str, Any]) -> str:
    a, b = result["labels"]
    lines = [
        f"# {a} against {b}",
        "",
        f"A: `{result['a']}`, B: `{result['b']}`. Eval IQMs per env; the difference A - B and the probability of "
        "improvement P(A > B) with 95% bootstrap CIs (rliable; each side's seeds resampled independently).",
        "",
    ]
    settings = result["settings"]
    differ = [key for key in ("budget", "num_seeds", "base_seed") if settings[0].get(key) != settings[1].get(key)]
    if differ:
        text = ", ".join(f"{key} {settings[0].get(key)!r} vs {settings[1].get(key)!r}" for key in differ)
        lines += [f"**The two benchmarks differ in {text}**: read the differences with that in mind.", ""]
    for side, label in (("a", "A"), ("b", "B")):
        if result["pending"][side]:
            lines += [f"**{label} is partial**, still to run: {', '.join(result['pending'][side])}.", ""]
        if result["only_in"][side]:
            lines += [f"Only in {label}, left out: {', '.join(result['only_in'][side])}.", ""]
    lines += [
        "| env | env steps A / B | seeds A / B | IQM A | IQM B | A - B [95% CI] | P(A > B) [95% CI] |",
        "| --- " * 7 + "|",
    ]
    for row in result["envs"]:
        (low, high), (p_low, p_high) = row["iqm_difference_ci"], row["probability_of_improvement_ci"]
        lines.append(
            f"| {row['env']} | {' / '.join(f'{n:,}' if n else '?' for n in row['env_steps_per_seed'])} "
            f"| {row['seeds'][0]} / {row['seeds'][1]} | {row['eval_iqm'][0]:.2f} | {row['eval_iqm'][1]:.2f} "
            f"| {row['iqm_difference']:.2f} "
            f"[{low:.2f}, {high:.2f}] | {row['probability_of_improvement']:.2f} [{p_low:.2f}, {p_high:.2f}] |"
        )
    if result["aggregate"]:
        agg = result["aggregate"]
        lines += [
            "",
            f"Over {len(result['aggregated_envs'])} envs with a published number (normalised scores: 0 random, 1 best "
            "published):",
            "",
            "| IQM A [95% CI] | IQM B [95% CI] | P(A > B) [95% CI] |",
            "| --- | --- | --- |",
            " | ".join(
                f"{agg[name]['estimate']:.3f} [{agg[name]['ci'][0]:.3f}, {agg[name]['ci'][1]:.3f}]"
                for name in ("normalised_iqm_a", "normalised_iqm_b", "probability_of_improvement")
            ).join(["| ", " |"]),
        ]
    lines += ["", "![probability of improvement](compare.png)"]
    return "\n".join(lines)
