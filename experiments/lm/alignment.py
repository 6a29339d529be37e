"""SFT -> {reward model, DPO, PPO, GRPO} on one toy task and one SFT start, and the KL sweep of PPO and GRPO.

    python experiments/lm/alignment.py --task sentiment            # about 15 minutes on 2 CPU cores
    python experiments/lm/alignment.py --task palindrome --sft-steps 600 --rl-steps 150 --evals 6 --parts kl
    python experiments/lm/alignment.py --task reverse --sft-steps 1500 --rl-steps 400 --evals 10 --parts rl
    python experiments/lm/alignment.py --task sentiment --parts dpo --name sentiment_dpo

Parts (``compare`` and ``kl`` by default):
- ``compare``: DPO vs PPO vs GRPO from the same SFT run at equal completions per step (PPO 64 prompts x 1,
  GRPO 8 prompts x 8), plus PPO scored by the trained reward model instead of the task's reward.
- ``rl``: the PPO and GRPO runs of ``compare``, plus GRPO with PPO's 4 epochs x 2 minibatches (as many
  gradient steps per rollout): accuracy over steps on a verifiable task.
- ``kl``: PPO and GRPO with beta in {0, 0.01, 0.04, 0.1}.
- ``dpo``: DPO over learning rates {1e-5, 3e-5, 1e-4} x beta {0.1, 0.5}, on the pairs ``compare`` uses.
Every run is a ``purerl lm`` run directory under ``--work`` (not committed); the small results go to
``experiments/lm/results/<name>_*`` (``--name``, the task by default): a CSV of final evaluations (task
reward, validity, accuracy, distinct-1/2, unique completions, KL to the SFT reference, wall time), the curves
over training, and the final samples of every run.
"""

import argparse
import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

from purerl.io.lm_align import run_method, run_pairs
from purerl.io.lm_sft import run_sft
from purerl.lm.dpo import DPOConfig
from purerl.lm.grpo import LMGRPOConfig
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.preference_data import PairsConfig
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BETAS = (0.0, 0.01, 0.04, 0.1)
DPO_SCAN = {"learning_rate": (1e-5, 3e-5, 1e-4), "beta": (0.1, 0.5)}
CURVES = ("reward", "accuracy", "validity", "kl_to_reference", "distinct_2", "unique")


def read_evals(run: Path) -> dict[str, list[float]]:
    with (run / "evals.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {name: [float(row[name]) for row in rows] for name in rows[0]}


def last_samples(run: Path, n: int = 4) -> list[str]:
    lines = (run / "samples.txt").read_text().splitlines()
    final_step = lines[-1].split("\t")[0]
    return [line.split("\t", 1)[1] for line in lines if line.split("\t")[0] == final_step][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--sft-steps", type=int, default=400)
    parser.add_argument("--rl-steps", type=int, default=60)
    parser.add_argument("--evals", type=int, default=2, help="evaluations in each RL run after step 0")
    parser.add_argument("--parts", nargs="+", default=["compare", "kl"], choices=["compare", "rl", "kl", "dpo"])
    parser.add_argument("--work", type=Path, default=Path("runs/alignment"))
    parser.add_argument("--name", help="results prefix (default: the task)")
    args = parser.parse_args()
    work = args.work / args.task
    log = io.StringIO()
    runs: dict[str, tuple[Path, dict]] = {}

    def record(name: str, out: Path, run: Callable[[], dict], extra_seconds: float = 0.0) -> None:
        """Runs ``run`` (which trains into ``out``), timing it; ``extra_seconds`` of earlier work count too."""
        start = time.perf_counter()
        summary = run()
        seconds = time.perf_counter() - start + extra_seconds
        runs[name] = (out, summary | {"wall_seconds": seconds})
        print(f"{name}: {json.dumps(summary.get('eval', {}))} in {seconds:.0f} s", flush=True)

    def method(name: str, algorithm: str, config, extra_seconds: float = 0.0) -> None:
        record(name, work / name, lambda: run_method(algorithm, config, work / name, stream=log), extra_seconds)

    sft = work / "sft"
    sft_config = SFTConfig(task=args.task, steps=args.sft_steps, eval_every=args.sft_steps)
    record("sft", sft, lambda: run_sft(sft_config, sft, stream=log))
    init, rl = str(sft), {"steps": args.rl_steps, "eval_every": max(1, args.rl_steps // args.evals)}
    groups = {"prompts_per_step": 8, "group_size": 8}  # GRPO: as many completions per step as PPO's 64 prompts
    pairs, pairs_seconds = (str(work / "pairs"),), 0.0
    if "compare" in args.parts or "dpo" in args.parts:
        start = time.perf_counter()
        run_pairs(PairsConfig(init=init, prompts=512), work / "pairs", stream=log)
        pairs_seconds = time.perf_counter() - start
    dpo = {"pairs": pairs, "steps": 100, "eval_every": 50}
    if "compare" in args.parts:
        method("rm", "rm", RewardModelConfig(init=init, pairs=pairs, steps=200), pairs_seconds)
        method("dpo", "dpo", DPOConfig(init=init, **dpo))
    if "compare" in args.parts or "rl" in args.parts:
        method("ppo", "ppo", LMPPOConfig(init=init, **rl))
        method("grpo", "grpo", LMGRPOConfig(init=init, **groups, **rl))
    if "rl" in args.parts:
        method("grpo_4x2", "grpo", LMGRPOConfig(init=init, epochs=4, minibatches=2, **groups, **rl))
    if "compare" in args.parts:
        method("ppo_rm", "ppo", LMPPOConfig(init=init, reward_model=(str(work / "rm"),), **rl))
    if "kl" in args.parts:
        for beta in BETAS:
            method(f"ppo_beta{beta}", "ppo", LMPPOConfig(init=init, kl_coef=beta, **rl))
            method(f"grpo_beta{beta}", "grpo", LMGRPOConfig(init=init, beta=beta, **groups, **rl))
    if "dpo" in args.parts:
        for lr in DPO_SCAN["learning_rate"]:
            for beta in DPO_SCAN["beta"]:
                method(f"dpo_lr{lr:g}_beta{beta}", "dpo", DPOConfig(init=init, learning_rate=lr, beta=beta, **dpo))
    write_results(args.name or args.task, args.task, runs)


def write_results(prefix: str, task: str, runs: dict[str, tuple[Path, dict]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    columns = ("reward", "validity", "accuracy", "distinct_1", "distinct_2", "unique", "kl_to_reference")
    with (RESULTS / f"{prefix}_final.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "steps", *columns, "preference_accuracy", "rm_true_accuracy", "wall_seconds"])
        for name, (_, summary) in runs.items():
            final = summary.get("eval", {})
            writer.writerow(
                [name, summary.get("steps", "")]
                + [f"{final[c]:.4f}" if c in final else "" for c in columns]
                + [f"{final['preference_accuracy']:.4f}" if "preference_accuracy" in final else ""]
                + [f"{final['true_accuracy']:.4f}" if "true_accuracy" in final else ""]
                + [f"{summary['wall_seconds']:.1f}"]
            )
    with (RESULTS / f"{prefix}_samples.txt").open("w") as f:
        for name, (out, _) in runs.items():
            if name != "rm":
                f.write(f"== {name}\n" + "".join(f"  {line}\n" for line in last_samples(out)))
    policy_runs = {name: out for name, (out, _) in runs.items() if name not in ("sft", "rm")}
    fig, axes = plt.subplots(2, len(CURVES) // 2, figsize=(2 * len(CURVES), 6.4), dpi=110)
    axes = axes.ravel()
    for name, out in policy_runs.items():
        evals = read_evals(out)
        for ax, metric in zip(axes, CURVES, strict=True):
            ax.plot(evals["step"], evals[metric], marker="o", markersize=3, label=name)
    for ax, metric in zip(axes, CURVES, strict=True):
        ax.set(xlabel="step", title=metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{task}: every run from one SFT start")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{prefix}_curves.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
