"""Learning-curve figures: mean over seeds with a 95% bootstrap CI band, against env steps (or updates)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from purerl.core.stats import bootstrap_mean_ci_curve, common_step_grid, interpolate_curves  # noqa: E402


def draw_learning_curves(
    ax,
    runs: dict[str, dict[str, np.ndarray]],
    metric: str = "episode_return",
    reference: dict[str, float] | None = None,
    x: str = "env_steps",
) -> None:
    """On ``ax``: one mean line with its 95% bootstrap CI band per entry of ``runs`` (label -> metrics of shape
    ``[seeds, updates]``), and optional horizontal reference lines (label -> value), against ``x``: env steps
    (seeds whose env steps differ, as GRPO's, are interpolated onto the steps that all of them reached) or
    ``"update"`` (1, 2, ...)."""
    for label, metrics in runs.items():
        curves = metrics[metric]
        if x == "update":
            steps = np.arange(1, curves.shape[1] + 1)
        else:
            steps = common_step_grid(metrics["env_steps"], curves)
            if not np.all(metrics["env_steps"] == steps):
                curves = interpolate_curves(metrics["env_steps"], curves, steps)
        mean, low, high = bootstrap_mean_ci_curve(curves)
        (line,) = ax.plot(steps, mean, label=label, linewidth=1.5)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    for (label, value), style in zip((reference or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, linestyle=style, color="grey", linewidth=1.0, label=label)
    if not any(np.isfinite(metrics[metric]).any() for metrics in runs.values()):  # else an empty axis, unexplained
        note = "no training episode has ended" if metric == "episode_return" else f"no finite {metric}"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.grid(alpha=0.3)


def plot_learning_curve(
    path: Path,
    runs: dict[str, dict[str, np.ndarray]],
    title: str,
    metric: str = "episode_return",
    reference: dict[str, float] | None = None,
    x: str = "env_steps",
) -> None:
    """One figure of ``draw_learning_curves``."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    draw_learning_curves(ax, runs, metric, reference, x)
    ax.set_xlabel("env steps per seed" if x == "env_steps" else "updates")
    ax.set_ylabel(metric.replace("_", " ") + " (mean, 95% CI)")
    ax.set_title(title)
    if len(runs) > 4:  # many lines: the legend goes beside the plot instead of over the curves
        fig.set_size_inches(10.0, 4.0)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    else:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_learning_curve_grid(
    path: Path, panels: dict[str, tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]], metric: str
) -> None:
    """One ``draw_learning_curves`` panel per entry of ``panels`` (title -> (runs, reference lines)), four
    to a row."""
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.0 * rows), dpi=100, squeeze=False)
    for ax, (title, (runs, reference)) in zip(axes.flat, panels.items(), strict=False):
        draw_learning_curves(ax, runs, metric, reference)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.supxlabel("env steps per seed")
    fig.supylabel(metric.replace("_", " ") + " (mean, 95% CI)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
