"""Hyperparameter sweeps: every grid point x every seed trained in one compiled, vmapped run.

    purerl sweep ppo --env CartPole-v1 --grid learning_rate=1e-4,3e-4,1e-3 --grid ent_coef=0,0.01 --seeds 32

Only the config's sweepable fields can be gridded: they change no shape and no compiled branch, so their
values are traced leaves of the config each run's state carries (``purerl.core.config.Config.trace``) and one program
serves the whole grid. A field that changes shapes or branches (network widths, env counts, ``target_kl``
on/off, ...) is refused with a one-line error naming it; run one sweep per value of such a field. Every
point trains the same seed keys (common random numbers), so differences between points are not seed luck.

Results (written to ``--out``): ``sweep.md``/``sweep.json`` with, per point, the IQM and 95% stratified
bootstrap CI (rliable) of the final evaluation return and of the normalised area under the learning curve;
``curves.png`` (all points' learning curves); ``aggregate.png`` (IQM, mean and optimality gap of normalised
scores with CIs) and ``profiles.png`` (performance profiles), the figures of Agarwal et al., "Deep RL at the
Edge of the Statistical Precipice" (NeurIPS 2021).
"""

import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from purerl.core.sharding import is_main_process
from purerl.core.spread import has_spread
from purerl.core.stats import (
    BOOTSTRAP_REPS,
    interval_estimates,
    iqm_aggregate,
    learning_curve_auc,
    numpy_global_seed,
    score_aggregates,
)
from purerl.io.plots import plot_learning_curve
from purerl.io.run import ALGORITHMS, RunResult, environment_info, run_train_seconds, title, write_metrics_csv

# Normalised score = (return - low) / (high - low): the worst and best returns an episode can have.
# Other envs are normalised by the lowest and highest per-seed return of the sweep itself (stated in the output).
SCORE_RANGES = {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0), "MountainCar-v0": (-200.0, 0.0)}
# Resamples behind a performance profile's confidence bands: rliable's default. Each is a Python-level call per
# tau (51 of them), so BOOTSTRAP_REPS' 5,000 took 10 s of a 4-point sweep's outputs on a 2.4 GHz CPU.
PROFILE_REPS = 2000


def parse_grid(config: Any, specs: list[str]) -> dict[str, list[float]]:
    """``["learning_rate=1e-4,3e-4", "ent-coef=0,0.01"]`` -> ``{"learning_rate": [1e-4, 3e-4], ...}``, with
    one-line errors for bad syntax, repeated or unsweepable fields, and values the config rejects."""
    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ValueError(f"--grid {spec!r}: expected FIELD=V1,V2,... (e.g. learning_rate=1e-4,3e-4)")
        if name in grid:
            raise ValueError(f"--grid {name} is given twice; put all its values in one --grid")
        config.require_sweepable(name)
        try:
            grid[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--grid {spec!r}: values must be numbers") from None
        for value in grid[name]:
            dataclasses.replace(config, **{name: value})  # the config's own checks, one value at a time
    if not grid:
        raise ValueError("a sweep needs at least one --grid FIELD=V1,V2,...")
    return grid


def expand_grid(grid: dict[str, list[float]]) -> dict[str, list[float]]:
    """The cartesian product as one value per point for every field (the last field varies fastest)."""
    points = list(itertools.product(*grid.values()))
    return {name: [point[i] for point in points] for i, name in enumerate(grid)}


def sweep_base_config(config: Any, grid: dict[str, list[float]]) -> Any:
    """The config that is compiled: each swept field at its largest value, so that branches which exist only
    for nonzero values (GRPO's reference pass for beta > 0) are compiled in. Each run then sets its own values."""
    return dataclasses.replace(config, **{name: max(values) for name, values in grid.items()})


def point_labels(points: dict[str, list[float]]) -> list[str]:
    num_points = len(next(iter(points.values())))
    return [", ".join(f"{name}={values[p]:g}" for name, values in points.items()) for p in range(num_points)]


def normalized_scores(env: str, per_seed_returns: np.ndarray) -> tuple[np.ndarray, str]:
    """``(returns - low) / (high - low)`` and a note saying what ``low`` and ``high`` are: the env's worst and
    best episode returns where known (``SCORE_RANGES``), else the sweep's own lowest and highest per-seed
    return. A range with no spread (every return equal, ``purerl.core.spread``) gives scores of 0."""
    if env in SCORE_RANGES:
        low, high = SCORE_RANGES[env]
        note = f"({low:g}, {high:g}): the worst and best episode returns of {env}"
    else:
        low, high = float(np.min(per_seed_returns)), float(np.max(per_seed_returns))
        note = f"({low:g}, {high:g}): the lowest and highest per-seed return in this sweep"
    if not has_spread(high - low, max(abs(low), abs(high))):
        return np.zeros_like(per_seed_returns), f"none: every per-seed return is {low:g}, so every score is 0"
    return (per_seed_returns - low) / (high - low), note


def summarize_sweep(
    config: Any, points: dict[str, list[float]], result: RunResult, num_seeds: int, plays_episodes: bool = True
) -> dict[str, Any]:
    """Per point: IQM and 95% stratified-bootstrap CIs (rliable) of the final evaluation return and of the
    area under the training-episode return curve (none for an algorithm that plays no episodes while training,
    ``plays_episodes=False``: BC); across points: normalised aggregates and performance profiles."""

    labels = point_labels(points)
    num_points = len(labels)
    eval_returns = result.eval_returns.mean(axis=1).reshape(num_points, num_seeds)
    auc = np.full(num_points * num_seeds, np.nan)
    if plays_episodes:
        auc = learning_curve_auc(result.metrics["env_steps"], result.metrics["episode_return"])
    auc = auc.reshape(num_points, num_seeds)
    normalized, range_note = normalized_scores(config.env, eval_returns)

    def by_label(scores: np.ndarray) -> dict[str, np.ndarray]:
        return {label: scores[p][:, None] for p, label in enumerate(labels)}  # [seeds, 1 task]

    def interval(scores: np.ndarray, aggregate) -> tuple[dict, dict]:
        return interval_estimates(by_label(scores), aggregate)

    eval_iqm, eval_ci = interval(eval_returns, iqm_aggregate)
    if plays_episodes:
        auc_iqm, auc_ci = interval(auc, iqm_aggregate)
    rows = []
    for p, label in enumerate(labels):
        row = {
            "point": p,
            "hyperparameters": {name: values[p] for name, values in points.items()},
            "label": label,
            "eval_return_iqm": float(eval_iqm[label][0]),
            "eval_return_ci": [float(eval_ci[label][0, 0]), float(eval_ci[label][1, 0])],
            "eval_return_per_seed": eval_returns[p].tolist(),
        }
        if plays_episodes:
            row |= {
                "auc_iqm": float(auc_iqm[label][0]),
                "auc_ci": [float(auc_ci[label][0, 0]), float(auc_ci[label][1, 0])],
                "auc_per_seed": auc[p].tolist(),
            }
        rows.append(row)
    return {
        "points": rows,
        "best_point_by_eval_iqm": int(np.argmax([row["eval_return_iqm"] for row in rows])),
        "normalisation": range_note,
        "normalized_eval_scores": by_label(normalized),
        "protocol": {
            "eval": f"{config.eval_episodes} episodes per seed after training, mean per seed",
            "auc": "average training-episode return over env steps (trapezoid area / steps covered), per seed"
            if plays_episodes
            else "none: no episodes are played while training",
            "intervals": f"95% stratified bootstrap over seeds (rliable, {BOOTSTRAP_REPS} resamples)",
            "seeds": f"the same {num_seeds} seed keys at every point",
        },
    }


def plot_aggregates(out: Path, normalized: dict[str, np.ndarray], note: str) -> tuple[dict, dict]:
    """``aggregate.png`` (IQM, mean, optimality gap of normalised final scores, with 95% CIs) and
    ``profiles.png`` (fraction of seeds above each normalised score), drawn by rliable. Returns the plotted
    ``interval_estimates`` of ``score_aggregates``: ``({name: [3]}, {name: [2, 3]})``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from rliable import library as rly
    from rliable import plot_utils

    estimates, intervals = interval_estimates(normalized, score_aggregates)
    fig, _ = plot_utils.plot_interval_estimates(
        estimates,
        intervals,
        metric_names=["IQM", "Mean", "Optimality gap"],
        algorithms=list(normalized),
        xlabel="",
        row_height=0.6,
    )
    for ax in fig.axes:  # rliable's default ticks run together on narrow intervals
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.tick_params(axis="x", labelsize=10)
    fig.supxlabel(f"normalised eval return, range {note.split(':')[0]}", y=-0.5, fontsize=11)
    fig.savefig(out / "aggregate.png", bbox_inches="tight", dpi=120)
    plt.close(fig)

    taus = np.linspace(0.0, 1.0, 51)
    with numpy_global_seed(0):
        profiles, profile_cis = rly.create_performance_profile(normalized, taus, reps=PROFILE_REPS)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, ax=ax)
    ax.legend(ax.get_lines(), list(normalized), fontsize=7, loc="lower left")  # lines only, not the CI bands
    fig.savefig(out / "profiles.png", bbox_inches="tight", dpi=120)
    plt.close(fig)
    return estimates, intervals


def sweep_table(summary: dict[str, Any]) -> str:
    with_auc = all("auc_iqm" in row for row in summary["points"])
    lines = [
        "| point | eval return IQM | 95% CI |" + (" AUC IQM | 95% CI |" if with_auc else ""),
        "| --- | --- | --- |" + (" --- | --- |" if with_auc else ""),
    ]
    best = summary["best_point_by_eval_iqm"]
    for row in summary["points"]:
        mark = " (best)" if row["point"] == best else ""
        line = f"| {row['label']}{mark} | {row['eval_return_iqm']:.1f} | "
        line += f"[{row['eval_return_ci'][0]:.1f}, {row['eval_return_ci'][1]:.1f}] |"
        if with_auc:
            line += f" {row['auc_iqm']:.1f} | [{row['auc_ci'][0]:.1f}, {row['auc_ci'][1]:.1f}] |"
        lines.append(line)
    return "\n".join(lines)


def write_sweep_outputs(
    out: Path, algorithm: str, config: Any, points: dict[str, list[float]], result: RunResult, num_seeds: int
) -> dict[str, Any]:
    algo = ALGORITHMS[algorithm]
    summary = summarize_sweep(config, points, result, num_seeds, algo.plays_episodes)
    normalized = summary.pop("normalized_eval_scores")
    labels = point_labels(points)
    summary |= {
        "algorithm": algorithm,
        "env": config.env,
        "compute_dtype": config.compute_dtype,
        "num_seeds": num_seeds,
        "num_points": len(labels),
        "command": " ".join(sys.argv),
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "run_train_seconds": run_train_seconds(result),
        "resumed_from_update": result.resumed_from,
    } | environment_info()
    if not is_main_process():
        return summary
    write_metrics_csv(out / "metrics.csv", result.metrics, seeds_per_point=num_seeds)
    np.savez_compressed(out / "eval.npz", returns=result.eval_returns, lengths=result.eval_lengths)
    curves = {
        label: {name: values[p * num_seeds : (p + 1) * num_seeds] for name, values in result.metrics.items()}
        for p, label in enumerate(labels)
    }
    heading = f"{title(algorithm)} on {config.env}: {len(labels)} points x {num_seeds} seeds"
    x = "env_steps" if algo.plays_episodes else "update"
    plot_learning_curve(out / "curves.png", curves, title=heading, metric=algo.curve, x=x)
    plot_aggregates(out, normalized, summary["normalisation"])
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "sweep.md").write_text(sweep_table(summary) + "\n")
    return summary
