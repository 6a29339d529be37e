"""SFT -> {reward model, DPO, PPO, GRPO} on one toy task and one SFT start, and the KL sweep of PPO and GRPO.

    python experiments/lm/alignment.py --task sentiment            # about 15 minutes on 2 CPU cores
    python experiments/lm/alignment.py --task reverse --sft-steps 3000 --parts compare

Parts (all by default):
- ``compare``: DPO vs PPO vs GRPO from the same SFT run at equal completions per step (PPO 64 prompts x 1,
  GRPO 8 prompts x 8), plus PPO scored by the trained reward model instead of the task's reward.
- ``kl``: PPO and GRPO with beta in {0, 0.01, 0.04, 0.1}.
Every run is a ``purerl lm`` run directory under ``--work`` (not committed); the small results go to
``experiments/lm/results/<task>_*``: a CSV of final evaluations (task reward, validity, accuracy,
distinct-1/2, unique completions, KL to the SFT reference, wall time), the curves over training, and the
final samples of every run.
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
CURVES = ("reward", "validity", "kl_to_reference", "distinct_2")


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
    parser.add_argument("--parts", nargs="+", default=["compare", "kl"], choices=["compare", "kl"])
    parser.add_argument("--work", type=Path, default=Path("runs/alignment"))
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
    init, rl = str(sft), {"steps": args.rl_steps, "eval_every": args.rl_steps // 2}
    groups = {"prompts_per_step": 8, "group_size": 8}  # GRPO: as many completions per step as PPO's 64 prompts
    if "compare" in args.parts:
        start = time.perf_counter()
        run_pairs(PairsConfig(init=init, prompts=512), work / "pairs", stream=log)
        pairs = str(work / "pairs")
        method("rm", "rm", RewardModelConfig(init=init, pairs=pairs, steps=200), time.perf_counter() - start)
        method("dpo", "dpo", DPOConfig(init=init, pairs=pairs, steps=100, eval_every=50))
        method("ppo", "ppo", LMPPOConfig(init=init, **rl))
        method("grpo", "grpo", LMGRPOConfig(init=init, **groups, **rl))
        method("ppo_rm", "ppo", LMPPOConfig(init=init, reward_model=str(work / "rm"), **rl))
    if "kl" in args.parts:
        for beta in BETAS:
            method(f"ppo_beta{beta}", "ppo", LMPPOConfig(init=init, kl_coef=beta, **rl))
            method(f"grpo_beta{beta}", "grpo", LMGRPOConfig(init=init, beta=beta, **groups, **rl))
    write_results(args.task, runs)


def write_results(task: str, runs: dict[str, tuple[Path, dict]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    columns = ("reward", "validity", "accuracy", "distinct_1", "distinct_2", "unique", "kl_to_reference")
    with (RESULTS / f"{task}_final.csv").open("w", newline="") as f:
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
    with (RESULTS / f"{task}_samples.txt").open("w") as f:
        for name, (out, _) in runs.items():
            if name != "rm":
                f.write(f"== {name}\n" + "".join(f"  {line}\n" for line in last_samples(out)))
    policy_runs = {name: out for name, (out, _) in runs.items() if name not in ("sft", "rm")}
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4), dpi=110)
    for name, out in policy_runs.items():
        evals = read_evals(out)
        for ax, metric in zip(axes, CURVES, strict=True):
            ax.plot(evals["step"], evals[metric], marker="o", label=name)
    for ax, metric in zip(axes, CURVES, strict=True):
        ax.set(xlabel="step", title=metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{task}: every run from one SFT start")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{task}_curves.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
