"""PPO and GRPO on a verifiable task (``reverse``: exact match) at equal samples, over seeds.

    python experiments/lm/verifiable.py                    # 3 seeds, about 25 minutes on 2 CPU cores

Per seed (``experiments/lm/pipeline.py``: SFT 1500 steps on reverse): 400 rollouts of 64 completions each,
evaluated every 40 on the 256 held-out prompts: PPO (64 prompts x 1, 4 epochs x 2 minibatches), GRPO (8
prompts x 8, one gradient step per rollout, its default) and GRPO with PPO's 4 x 2. Results in
``experiments/lm/results/verifiable*``: exact-match accuracy over rollouts (table and plot), final KL and wall
time.
"""

import argparse
import csv
import json
from pathlib import Path

import matplotlib
import numpy as np
from pipeline import Seed, iqm_ci

from purerl.core.stats import summarize_runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STEPS, EVAL_EVERY, SHOWN = 400, 40, (40, 120, 200, 400)
RUNS = {
    "PPO (64 prompts x 1, 4 epochs x 2 minibatches)": ("ppo", "reverse", {}),
    "GRPO (8 prompts x 8, 1 x 1)": ("grpo", "reverse", {}),
    "GRPO with PPO's 4 x 2": ("grpo", "reverse_4x2", {"epochs": 4, "minibatches": 2}),
}


def accuracy_curve(out: Path) -> tuple[np.ndarray, np.ndarray]:
    with (out / "evals.csv").open() as f:
        rows = list(csv.DictReader(f))
    return np.array([int(r["step"]) for r in rows]), np.array([float(r["accuracy"]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    curves: dict[str, list[np.ndarray]] = {label: [] for label in RUNS}
    finals: dict[str, list[dict]] = {label: [] for label in RUNS}
    for seed in args.seeds:
        run = Seed("reverse", seed)
        for label, (algorithm, name, fields) in RUNS.items():
            summary = run.policy(algorithm, name, steps=STEPS, eval_every=EVAL_EVERY, **fields)
            steps, accuracy = accuracy_curve(run.root / f"{algorithm}_{name}")
            curves[label].append(accuracy)
            finals[label].append(summary["eval"] | {"wall": summary["train_seconds"] + summary["compile_seconds"]})
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [f"# PPO and GRPO on reverse (exact match), {len(args.seeds)} seeds: {', '.join(map(str, args.seeds))}"]
    lines += ["", "Exact-match accuracy on 256 held-out prompts: IQM over seeds [95% bootstrap CI (rliable)].", ""]
    header = " | ".join(f"{s} rollouts" for s in SHOWN)
    lines += [f"| run | start | {header} | KL to SFT | wall s |", "| --- |" + " --- |" * (len(SHOWN) + 3)]
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
    for label in RUNS:
        stacked = np.stack(curves[label])
        cells = [iqm_ci(stacked[:, 0].tolist())] + [iqm_ci(stacked[:, list(steps).index(s)].tolist()) for s in SHOWN]
        kl = iqm_ci([f["kl_to_reference"] for f in finals[label]])
        wall = summarize_runs([f["wall"] for f in finals[label]])["iqm"]
        lines.append(f"| {label} | {' | '.join(cells)} | {kl} | {wall:.0f} |")
        mean = stacked.mean(axis=0)
        ax.plot(steps, mean, marker="o", markersize=3, label=label)
        ax.fill_between(steps, stacked.min(axis=0), stacked.max(axis=0), alpha=0.15)
    lines += [
        "",
        f"Per seed, accuracy at the start -> after {STEPS} rollouts (a start that never answers right gives an",
        "exact-match reward no signal to learn from):",
        "",
    ]
    lines += [
        "| run | " + " | ".join(f"seed {seed}" for seed in args.seeds) + " |",
        "| --- |" + " --- |" * len(args.seeds),
    ]
    for label in RUNS:
        cells = [f"{curve[0]:.2f} -> {curve[-1]:.2f}" for curve in curves[label]]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    ax.set(xlabel="rollouts (64 completions each)", ylabel="exact-match accuracy", title="reverse: mean, seed range")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "verifiable.png")
    plt.close(fig)
    (RESULTS / "verifiable.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "verifiable_runs.json").write_text(json.dumps({k: v for k, v in finals.items()}, indent=1) + "\n")
    print(f"-> {RESULTS / 'verifiable.md'}", flush=True)


if __name__ == "__main__":
    main()
