"""SAC vs PPO on continuous control: return against env steps and against wall-clock seconds, final evaluation
IQM with 95% CIs, env steps to a threshold, replay memory per seed and compile time; and a truncation ablation
(bootstrap at time limits on/off) for both algorithms on brax hopper and walker2d.

    python experiments/sac/study.py                                  # every env, 8 seeds, CPU budgets
    python experiments/sac/study.py --envs Pendulum-v1 --seeds 8     # some envs
    python experiments/sac/study.py --budget full                    # the published budgets (a GPU)
    python experiments/sac/study.py --algorithms ppo                 # one algorithm's cells (the other's kept)
    python experiments/sac/study.py --variants bootstrap             # the bootstrap arm only (no-bootstrap later)

Each (env, algorithm, variant) is a ``purerl train`` run directory under ``runs/sac_study/`` (not committed),
resumed after any stop and read back once finished, so the same command continues the study. Results (small)
in ``experiments/sac/results/``: ``study.md`` (the table), ``study.json`` and one figure per env. A finished
cell is kept in ``study.json`` with its config, seeds and budget, and is not run again while they match, so the
study also continues from a fresh checkout where ``runs/`` is gone (commit ``results/`` as cells finish).

Configs: PPO from purerl's tuned config of the env (gymnax: experiments/ppo/README.md; brax: Brax's training
notebook, ``purerl/configs/ppo/brax``), SAC from ``purerl/configs/sac/brax`` for brax and SAC's defaults
(CleanRL's) for gymnax. Budgets (env steps per seed, both algorithms alike):

| env | cpu | full |
| --- | --- | --- |
| Pendulum-v1 | PPO 100k, SAC 50k | 1M |
| MountainCarContinuous-v0 | PPO 100k, SAC 50k | 1M |
| brax/hopper, brax/walker2d | PPO 1M, SAC 50k | PPO 50M, SAC its config's (6.6M, 7.9M) |

SAC's CPU budget is its own: on 2 cores it makes about 30 env steps per second per seed with 8 seeds and the
CPU to itself (one gradient step of 256 per env step on Pendulum, 2x256 networks; Brax's settings cost the same
per env step: 0.5 gradient steps of 512), so 50k steps take about 28 minutes (Pendulum's cell: 1,668 s; about
13 steps per second while the CPU was shared). A stopped cell resumes from its checkpoint (saved every 10
minutes and on a stop) where ``runs/`` survives; else it starts again. SAC on Pendulum passes a training
return of -200 by about 7k steps. The curves against wall-clock seconds show what each algorithm gets in the
same time. On the CPU, PPO's brax configs run 128 environments instead of 2048 (the same 80 steps each, 32
minibatches): their 163,840 env steps per update would leave 6 updates in 1M steps.
"""

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import matplotlib
import numpy as np

import purerl  # noqa: F401  (the CPU hazard's cure, before any compile)
from purerl.core.stats import format_iqm_ci, iqm
from purerl.io.config_io import config_from_dict, config_to_dict
from purerl.io.run import ALGORITHMS, read_metrics_csv
from purerl.io.run_dir import RunSettings, finished_run, run_script
from purerl.io.tuned import base_values

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/sac_study")
ENVS = ("Pendulum-v1", "MountainCarContinuous-v0", "brax/hopper", "brax/walker2d")
BUDGETS = {
    "cpu": {"Pendulum-v1": 100_000, "MountainCarContinuous-v0": 100_000, "brax/hopper": 1_000_000,
            "brax/walker2d": 1_000_000},
    "full": {"Pendulum-v1": 1_000_000, "MountainCarContinuous-v0": 1_000_000},
}  # fmt: skip
CPU_SAC_BUDGET = 50_000  # env steps per seed on every env: about 28 min for 8 seeds on 2 cores (the docstring)
THRESHOLDS = {"Pendulum-v1": -200.0, "MountainCarContinuous-v0": 90.0, "brax/hopper": 1000.0, "brax/walker2d": 1000.0}
VARIANTS = ("bootstrap", "no_bootstrap")  # bootstrap at time limits on / off: the truncation ablation
ABLATED = ("brax/hopper", "brax/walker2d")  # good policies reach the 1000-step limit there
# What has been published near these budgets (../shared/reference/rl-anchors.md §c for gymnax,
# anchors-2026-11.md §4.2 for brax): Brax's own SAC and PPO curves for hopper and walker2d are plots without
# numbers, so the nearest figures are other users' and other simulators'; the table says which.
PUBLISHED = {
    "Pendulum-v1": "gymnax-blines PPO -195.1 at 1M steps (1 seed); its ES -130.2",
    "MountainCarContinuous-v0": "gymnax-blines PPO -0.1 at 1M steps (1 seed); its ES 95.3",
    "brax/hopper": "PPO about 846 at about 2M steps on brax's spring back end, CPU (le2333/RTRRL#6); PPO and SAC "
    "with Brax's paper settings below 500 (google/brax#129); Brax's tuned SAC at 6.55M steps: a plot only; for "
    "scale, Gym-MuJoCo's Hopper-v2 with SB2 PPO2 at 1M steps: about 2340 (another simulator)",
    "brax/walker2d": "Brax's tuned SAC at 7.86M steps and PPO at 100M (google/brax#98): plots only, no number",
}
CPU_PPO_BRAX_ENVS = 128


def study_config(algorithm: str, env: str, budget: str, bootstrap_truncation: bool) -> Any:
    """The env's config for ``algorithm`` (tuned where purerl ships one, else the defaults) at the budget."""
    config_cls = ALGORITHMS[algorithm].config_cls
    values, _ = base_values(algorithm, config_cls, None, env)
    values |= {"env": env, "bootstrap_truncation": bootstrap_truncation}
    if env in BUDGETS[budget]:
        values["total_timesteps"] = BUDGETS[budget][env]
    if budget == "cpu" and algorithm == "ppo" and env.startswith("brax/"):
        values["num_envs"] = CPU_PPO_BRAX_ENVS
    if budget == "cpu" and algorithm == "sac":
        values["total_timesteps"] = CPU_SAC_BUDGET
    return config_from_dict(config_cls, values)


def replay_megabytes(config: Any) -> float:
    """SAC's replay buffer per seed in MB (its state's arrays, from the shapes alone); 0 for PPO."""
    if not hasattr(config, "capacity"):
        return 0.0
    state = jax.eval_shape(ALGORITHMS["sac"].init, jax.random.key(0), config)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state.buffer)) / 1e6


def steps_to_threshold(metrics: dict[str, np.ndarray], threshold: float) -> list[float]:
    """Per seed: the env steps at which the trailing mean of 10 updates' training-episode returns first reaches
    ``threshold``; NaN if never (updates before the first finished episode count as never reaching it)."""
    returns, steps = metrics["episode_return"], metrics["env_steps"]
    out = []
    for seed_returns, seed_steps in zip(returns, steps, strict=True):
        window = np.convolve(np.nan_to_num(seed_returns, nan=-np.inf), np.ones(10) / 10, mode="valid")
        reached = np.flatnonzero(window >= threshold)
        out.append(float(seed_steps[reached[0] + 9]) if reached.size else float("nan"))
    return out


def cell(env: str, algorithm: str, variant: str, out: Path, config: Any) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text())
    metrics = read_metrics_csv(out / "metrics.csv")
    reached = steps_to_threshold(metrics, THRESHOLDS[env])
    # The whole run's training time, over its sessions. Runs resumed from checkpoints saved before purerl recorded
    # it have only their last session's: their env steps at that session's rate (updates take equal time within
    # a run), so stopped and unstopped cells compare.
    train_seconds = summary.get("run_train_seconds") or (
        summary["num_seeds"] * summary["env_steps_per_seed"] / summary["env_steps_per_second"]
    )
    return {
        "env": env,
        "algorithm": algorithm,
        "variant": variant,
        "config": config_to_dict(config),
        "seeds": summary["num_seeds"],
        "env_steps": summary["env_steps_per_seed"],
        "eval_iqm": summary["eval"]["iqm"],
        "eval_ci": [summary["eval"]["iqm_ci_low"], summary["eval"]["iqm_ci_high"]],
        "eval_protocol": summary["eval"]["protocol"],
        "steps_to_threshold": reached,
        # Training episodes a time limit ended, of all that ended: the steps the truncation ablation changes
        # (absent from runs made before the metric).
        "episodes_truncated": int(metrics["episodes_truncated"].sum()) if "episodes_truncated" in metrics else None,
        "episodes_ended": int(metrics["episodes_finished"].sum()),
        "threshold": THRESHOLDS[env],
        "compile_seconds": summary["compile_seconds"],
        "train_seconds": train_seconds if summary["resumed_from_update"] else summary["train_seconds"],
        "resumed_from_update": summary["resumed_from_update"],
        "env_steps_per_second": summary["env_steps_per_second"],
        "replay_mb_per_seed": replay_megabytes(config),
        "utd_ratio": getattr(config, "utd_ratio", None),
        "curve_steps": metrics["env_steps"][0].tolist(),
        "curve_iqm": [
            iqm(column[np.isfinite(column)]) if np.isfinite(column).any() else None
            for column in metrics["episode_return"].T
        ],  # fmt: skip
    }


def write_results(cells: list[dict[str, Any]], budget: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    cells = sorted(cells, key=lambda c: (ENVS.index(c["env"]), c["algorithm"] != "sac", c["variant"]))
    (RESULTS / "study.json").write_text(json.dumps({"budget": budget, "cells": cells}, indent=1) + "\n")
    lines = [
        f"# SAC vs PPO ({budget} budgets)",
        "",
        "Final evaluation: IQM over seeds [95% stratified-bootstrap CI] (rliable). Steps to threshold: median over "
        "the seeds that reached it (a trailing mean of 10 updates' training-episode returns), and how many did. "
        "Truncated episodes: training episodes a time limit ended, of all that ended, over all seeds (-: run "
        "before purerl counted them). "
        "Wall time: training only; compile time apart; a cell stopped and resumed (*) is timed at its last session's "
        "rate. Throughput: env steps of all seeds per second.",
        "",
        "| env | algorithm | bootstrap at time limits | seeds x steps | final eval IQM [CI] | steps to threshold | "
        "truncated episodes | compile s | train s | env steps/s | UTD | replay MB/seed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cells:
        reached = [s for s in c["steps_to_threshold"] if np.isfinite(s)]
        to = f"{np.median(reached):,.0f} ({len(reached)}/{c['seeds']})" if reached else f"never (0/{c['seeds']})"
        resumed = "*" if c.get("resumed_from_update") else ""  # cells from before the field: never resumed
        truncated = "-"
        if c.get("episodes_truncated") is not None:
            truncated = f"{c['episodes_truncated']:,} of {c['episodes_ended']:,}"
        lines.append(
            f"| {c['env']} | {c['algorithm'].upper()} | {c['variant'] == 'bootstrap'} | {c['seeds']} x "
            f"{c['env_steps']:,} | {format_iqm_ci(c['eval_iqm'], *c['eval_ci'])} | "
            f"{to} (>= {c['threshold']:g}) | {truncated} | {c['compile_seconds']:.0f} | "
            f"{c['train_seconds']:.0f}{resumed} | {c['env_steps_per_second']:,.0f} | {c['utd_ratio'] or '-'} | "
            f"{c['replay_mb_per_seed']:.1f} |"
        )
    lines += ["", "Published near these budgets (none at exactly these budgets and settings):", ""]
    lines += [f"- {env}: {PUBLISHED[env]}" for env in sorted({c["env"] for c in cells})]
    (RESULTS / "study.md").write_text("\n".join(lines) + "\n")
    for env in sorted({c["env"] for c in cells}):
        fig, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
        for c in (c for c in cells if c["env"] == env):
            label = f"{c['algorithm'].upper()}" + ("" if c["variant"] == "bootstrap" else ", no bootstrap at limits")
            steps = np.array(c["curve_steps"])
            # Each run's training time spread evenly over its env steps: metrics hold no clock. SAC's first
            # learning_starts steps (no gradient steps) took less than drawn, the rest more.
            seconds = steps / steps[-1] * c["train_seconds"]
            for ax, x in ((by_steps, steps), (by_time, seconds)):
                ax.plot(x, np.array(c["curve_iqm"], dtype=float), label=label)
        by_steps.set(xlabel="env steps per seed", ylabel="training-episode return (IQM over seeds)", title=env)
        by_time.set(
            xlabel="training seconds, spread evenly over the env steps (compile excluded)", title=f"{env}: against time"
        )
        for ax in (by_steps, by_time):
            ax.grid(alpha=0.3)
        by_steps.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / f"study_{env.replace('/', '_')}.png")
        plt.close(fig)


def keys(cells: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(c["env"], c["algorithm"], c["variant"]) for c in cells}


def committed_cells(budget: str, seeds: int) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The finished cells in ``results/study.json`` at this budget and seed count, by (env, algorithm, variant)."""
    path = RESULTS / "study.json"
    if not path.exists():
        return {}
    study = json.loads(path.read_text())
    if study["budget"] != budget:
        return {}
    return {(c["env"], c["algorithm"], c["variant"]): c for c in study["cells"] if c["seeds"] == seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS, help="the envs' cells to run")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per cell (base seed 1)")
    parser.add_argument("--budget", default="cpu", choices=tuple(BUDGETS), help="env steps per seed (the docstring)")
    parser.add_argument("--algorithms", nargs="+", default=["sac", "ppo"], choices=("sac", "ppo"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="the truncation ablation's arms (no_bootstrap: hopper and walker2d only)")  # fmt: skip
    args = parser.parse_args()
    plan = []
    for env in args.envs:
        for algorithm in args.algorithms:
            for variant in (v for v in args.variants if v == "bootstrap" or env in ABLATED):
                config = study_config(algorithm, env, args.budget, variant == "bootstrap")
                plan.append((env, algorithm, variant, config))  # every config checked before the first run
    if not plan:
        parser.error(f"no cell to run: --variants no_bootstrap runs on {' and '.join(ABLATED)} only")
    kept = committed_cells(args.budget, args.seeds)
    cells = []
    for env, algorithm, variant, config in plan:
        done = kept.get((env, algorithm, variant))
        if done is not None and done["config"] == json.loads(json.dumps(config_to_dict(config))):
            cells.append(done)
            print(f"{env} {algorithm} {variant}: kept from {RESULTS / 'study.json'}", flush=True)
            continue
        # Configs were tuned on base seed 0. Saved by time (10 min), not every 500 updates: a SAC checkpoint
        # holds the replay buffers (36 MB on Pendulum at 8 seeds), and 500 of its updates take 38 s there.
        settings = RunSettings(num_seeds=args.seeds, base_seed=1, checkpoint_every=0)
        out = finished_run(WORK / env / f"{algorithm}_{variant}", algorithm, config, settings)
        cells.append(cell(env, algorithm, variant, out, config))
        write_results(cells + [c for key, c in kept.items() if key not in keys(cells)], args.budget)
        print(f"{env} {algorithm} {variant}: eval IQM {cells[-1]['eval_iqm']:.1f}", flush=True)


if __name__ == "__main__":
    run_script(main)
