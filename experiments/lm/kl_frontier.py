"""The KL frontier: PPO and GRPO with the KL coefficient beta in {0, 0.01, 0.04, 0.1, 0.3, 1, 3}, and DPO over
its beta, on ``sentiment`` and ``palindrome``, over seeds.

    python experiments/lm/kl_frontier.py                   # 2 tasks x 3 seeds: about 90 minutes on 2 CPU cores
    python experiments/lm/kl_frontier.py --tasks palindrome --seeds 0 1 2 3

Per task and seed (``experiments/lm/pipeline.py``: SFT 1000 steps on sentiment, 600 on palindrome): PPO (64
prompts x 1) and GRPO (8 prompts x 8) for 60 rollouts on the task's reward at every beta (PPO: the per-token
KL penalty in the reward; GRPO: the k3 KL term of the loss), and DPO at its defaults over beta on 512 prompts'
best-vs-worst pairs. Final held-out evaluation: task reward, validity, KL to the SFT policy, unique completions
and distinct-2. Results in ``experiments/lm/results/kl_frontier*``: the runs, the table over seeds, the
reward-vs-diversity and reward-vs-KL plots per task, and samples at the ends of the beta range.
"""

import argparse
import csv
from pathlib import Path

import matplotlib
import numpy as np
from pipeline import Seed, final_samples, iqm_ci

from purerl.core.stats import summarize_runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BETAS = {"ppo": (0.0, 0.01, 0.04, 0.1, 0.3, 1.0, 3.0), "grpo": (0.0, 0.01, 0.04, 0.1, 0.3, 1.0, 3.0)}
BETAS["dpo"] = (0.01, 0.03, 0.1, 0.3, 1.0)
BETA_FIELD = {"ppo": "kl_coef", "grpo": "beta", "dpo": "beta"}
COLUMNS = ("reward", "validity", "kl_to_reference", "unique", "distinct_2")


def seed_rows(run: Seed) -> list[dict]:
    pairs = (run.pairs("pairs"),)
    rows = []
    for algorithm, betas in BETAS.items():
        for beta in betas:
            fields = {BETA_FIELD[algorithm]: beta} | ({"pairs": pairs} if algorithm == "dpo" else {})
            summary = run.policy(algorithm, f"beta{beta:g}", **fields)
            rows.append({"task": run.task, "seed": run.seed, "algorithm": algorithm, "beta": beta} | summary["eval"])
    return rows


def cell(rows: list[dict], task: str, algorithm: str, beta: float) -> list[dict]:
    return [r for r in rows if r["task"] == task and r["algorithm"] == algorithm and r["beta"] == beta]


def write_results(rows: list[dict], runs: list[Seed]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "kl_frontier_runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "algorithm", "beta", "seed", *COLUMNS])
        for r in rows:
            writer.writerow([r["task"], r["algorithm"], r["beta"], r["seed"], *(f"{r[c]:.4f}" for c in COLUMNS)])
    tasks = sorted({r["task"] for r in rows}, reverse=True)
    lines = ["# The KL frontier: PPO and GRPO over beta, DPO over its beta", ""]
    lines.append(
        "Final held-out evaluation (256 prompts, temperature 1), 60 rollouts of 64 completions (DPO: 200 steps of "
        "32 pairs). Each cell: IQM over seeds (for 3 seeds, the mean) [95% bootstrap CI (rliable)]."
    )
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), dpi=110, squeeze=False)
    for task, (ax_diversity, ax_kl) in zip(tasks, axes, strict=True):
        seeds = sorted({r["seed"] for r in rows if r["task"] == task})
        lines += ["", f"## {task} ({len(seeds)} seeds: {', '.join(map(str, seeds))})", ""]
        lines += ["| algorithm | beta | task reward | validity | KL to SFT | unique | distinct-2 |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for algorithm, betas in BETAS.items():
            points = []
            for beta in betas:
                runs_here = cell(rows, task, algorithm, beta)
                if not runs_here:
                    continue
                lines.append(
                    f"| {algorithm} | {beta:g} | "
                    + " | ".join(iqm_ci([r[c] for r in runs_here]) for c in COLUMNS)
                    + " |"
                )
                points.append([beta] + [summarize_runs([r[c] for r in runs_here])["iqm"] for c in COLUMNS])
            if not points:
                continue
            points = np.array(points)
            reward, kl, distinct = points[:, 1], points[:, 3], points[:, 5]
            for ax, x in ((ax_diversity, distinct), (ax_kl, kl)):
                ax.plot(x, reward, "o-", label=algorithm.upper())
                for beta, xi, yi in zip(points[:, 0], x, reward, strict=True):
                    ax.annotate(f"{beta:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax_diversity.set(
            xlabel="distinct-2 of the completions", ylabel="task reward", title=f"{task}: reward vs diversity"
        )
        ax_kl.set(xlabel="KL to the SFT policy (nats)", ylabel="task reward", title=f"{task}: reward vs KL")
        for ax in (ax_diversity, ax_kl):
            ax.grid(alpha=0.3)
        ax_diversity.legend(fontsize=8, title="labels: beta", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "kl_frontier.png")
    plt.close(fig)
    (RESULTS / "kl_frontier.md").write_text("\n".join(lines) + "\n")
    with (RESULTS / "kl_frontier_samples.txt").open("w") as f:
        for run in runs:
            for algorithm, betas in BETAS.items():
                for beta in (betas[0], betas[-1]):
                    out = run.root / f"{algorithm}_beta{beta:g}"
                    if (out / "samples.txt").exists():
                        shown = "".join(f"  {s}\n" for s in final_samples(out))
                        f.write(f"== {run.task} seed {run.seed} {algorithm} beta {beta:g}\n{shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "palindrome"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows: list[dict] = []
    runs: list[Seed] = []
    for task in args.tasks:
        for seed in args.seeds:
            runs.append(Seed(task, seed))
            rows += seed_rows(runs[-1])
            write_results(rows, runs)
            print(f"{task} seed {seed} done -> {RESULTS / 'kl_frontier.md'}", flush=True)


if __name__ == "__main__":
    main()
