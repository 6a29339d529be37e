"""RLHF on a learned reward model that works: which pieces PPO and GRPO need on ``sentiment``, over seeds.

    python experiments/lm/learned_reward.py                 # 3 seeds, about an hour on 2 CPU cores
    python experiments/lm/learned_reward.py --seeds 0 1 2 3 4

Per seed ``s`` (every piece of the pipeline draws from ``s``): SFT (1000 steps), 512 prompts x 4 samples of
best-vs-worst pairs labelled by the task's reward, and three reward models on them (seeds ``100 s + k``).
Then PPO (64 prompts x 1) and GRPO (8 prompts x 8) for 60 rollouts each, from the SFT policy, trained on:

| variant | what the policy is trained on |
| --- | --- |
| ``task`` | the task's reward itself (the ceiling) |
| ``raw`` | reward model 0's raw score |
| ``raw_adaptive_kl`` | the same with the adaptive KL controller (target 3 nats; PPO only, GRPO has none) |
| ``normalized`` | reward model 0's score standardised on SFT samples (``--normalize-reward``) |
| ``ensemble`` | the three reward models, normalised, mean - 1 x their std (``--ensemble-penalty 1``) |
| ``temperatures`` | a reward model on pairs sampled at temperatures 0.7, 1 and 1.5, normalised |
| ``round2`` | an iterated round: a reward model on the first pairs plus 512 prompts' pairs sampled from |
| | that algorithm's ``normalized`` policy, normalised |

Every run is a ``purerl lm`` run directory under ``--work`` (not committed; a finished run is read back, so
the script resumes where it stopped). Results in ``experiments/lm/results/learned_reward*``: every run's final
held-out evaluation (task reward, validity, KL, diversity, the proxy score), the table over seeds (mean and
rliable's 95% bootstrap CI; with 3 seeds it spans little more than the seeds' range) and samples.
"""

import argparse
import csv
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from purerl.core.stats import summarize_runs
from purerl.io.lm_align import run_method, run_pairs
from purerl.io.lm_sft import run_sft
from purerl.lm.grpo import LMGRPOConfig
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.preference_data import PairsConfig
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig

RESULTS = Path(__file__).parent / "results"
LOG = sys.stderr
SFT_STEPS, RL_STEPS, MEMBERS = 1000, 60, 3
ALGORITHMS = {
    "ppo": (LMPPOConfig, {}),
    "grpo": (LMGRPOConfig, {"prompts_per_step": 8, "group_size": 8}),  # PPO's 64 completions per rollout
}
VARIANTS = ("task", "raw", "raw_adaptive_kl", "normalized", "ensemble", "temperatures", "round2")
COLUMNS = ("reward", "validity", "kl_to_reference", "unique", "distinct_2", "proxy_score")


def finished(out: Path, run: Callable[[bool], dict]) -> dict:
    """``out``'s summary, after ``run(resume)`` unless the run already finished: a run stopped part-way
    resumes from its checkpoint (so does this script)."""
    summary = out / "summary.json"
    if not summary.exists():
        run((out / "checkpoints").exists())
    return json.loads(summary.read_text())


def train_policy(root: Path, seed: int, algorithm: str, variant: str, **fields) -> dict:
    """PPO or GRPO from seed ``seed``'s SFT run, trained on what ``fields`` say; returns its summary."""
    config_cls, shape = ALGORITHMS[algorithm]
    config = config_cls(init=str(root / "sft"), steps=RL_STEPS, eval_every=RL_STEPS // 3, seed=seed, **shape, **fields)
    out = root / f"{algorithm}_{variant}"
    summary = finished(out, lambda resume: run_method(algorithm, config, out, resume, stream=LOG))
    print(f"seed {seed} {algorithm} {variant}: {json.dumps(summary['eval'])}", flush=True)
    return summary


def pipeline(seed: int, work: Path) -> list[dict]:
    """Every run of one seed; returns one row per (algorithm, variant)."""
    root = work / f"seed_{seed}"
    sft = str(root / "sft")
    sft_config = SFTConfig(task="sentiment", steps=SFT_STEPS, seed=seed)
    finished(root / "sft", lambda resume: run_sft(sft_config, root / "sft", resume, stream=LOG))

    def pairs(name: str, **fields) -> str:
        config = PairsConfig(init=sft, prompts=512, seed=seed, **fields)
        finished(root / name, lambda resume: run_pairs(config, root / name, stream=LOG))
        return str(root / name)

    def reward_model(name: str, pair_dirs: tuple[str, ...], member: int = 0) -> str:
        config = RewardModelConfig(init=sft, pairs=pair_dirs, steps=200, seed=100 * seed + member)
        finished(root / name, lambda resume: run_method("rm", config, root / name, resume, stream=LOG))
        return str(root / name)

    first = pairs("pairs")
    members = tuple(reward_model(f"rm_{k}", (first,), k) for k in range(MEMBERS))
    hot = reward_model("rm_temperatures", (pairs("pairs_temperatures", temperatures=(0.7, 1.0, 1.5)),))
    rows = []
    for algorithm in ALGORITHMS:
        policy = partial(train_policy, root, seed, algorithm)
        normalized = {"reward_model": members[:1], "normalize_reward": True}
        summaries = {
            "task": policy("task"),
            "raw": policy("raw", reward_model=members[:1]),
            "normalized": policy("normalized", **normalized),
            "ensemble": policy("ensemble", reward_model=members, normalize_reward=True, ensemble_penalty=1.0),
            "temperatures": policy("temperatures", reward_model=(hot,), normalize_reward=True),
        }
        if algorithm == "ppo":
            summaries["raw_adaptive_kl"] = policy("raw_adaptive_kl", reward_model=members[:1], kl_target=3.0)
        second = pairs(f"pairs_round2_{algorithm}", policy=str(root / f"{algorithm}_normalized"))
        round2 = reward_model(f"rm_round2_{algorithm}", (first, second))
        summaries["round2"] = policy("round2", reward_model=(round2,), normalize_reward=True)
        for variant, summary in summaries.items():
            rows.append({"seed": seed, "algorithm": algorithm, "variant": variant} | summary["eval"])
    return rows


def write_results(rows: list[dict], work: Path, prefix: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / f"{prefix}_runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["algorithm", "variant", "seed", *COLUMNS])
        for row in rows:
            values = [f"{row[c]:.4f}" if c in row else "" for c in COLUMNS]
            writer.writerow([row["algorithm"], row["variant"], row["seed"], *values])
    seeds = sorted({row["seed"] for row in rows})
    lines = [
        f"# PPO and GRPO on a learned reward model: sentiment, {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        "",
        "Final held-out evaluation (256 prompts, temperature 1) after 60 rollouts of 64 completions. Each cell: mean "
        "over seeds [95% bootstrap CI (rliable)]. Task reward is the gold reward; proxy is what the policy was "
        "trained on (blank: the task's reward).",
        "",
        "| algorithm | variant | task reward | validity | KL to SFT | unique | proxy score | seeds at target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for algorithm in ALGORITHMS:
        for variant in VARIANTS:
            runs = [row for row in rows if row["algorithm"] == algorithm and row["variant"] == variant]
            if not runs:
                continue
            cells = []
            for column in ("reward", "validity", "kl_to_reference", "unique", "proxy_score"):
                if column not in runs[0]:
                    cells.append("")
                    continue
                stats = summarize_runs([run[column] for run in runs])
                cells.append(f"{stats['mean']:.2f} [{stats['iqm_ci_low']:.2f}, {stats['iqm_ci_high']:.2f}]")
            at_target = sum(run["reward"] >= 0.6 and run["validity"] >= 0.85 for run in runs)
            lines.append(f"| {algorithm} | {variant} | {' | '.join(cells)} | {at_target}/{len(runs)} |")
    lines += ["", "Target (issue 18): task reward >= 0.6 with validity >= 85%.", ""]
    (RESULTS / f"{prefix}.md").write_text("\n".join(lines))
    with (RESULTS / f"{prefix}_samples.txt").open("w") as f:
        for seed in seeds:
            for algorithm in ALGORITHMS:
                for variant in VARIANTS:
                    samples = work / f"seed_{seed}" / f"{algorithm}_{variant}" / "samples.txt"
                    if samples.exists():
                        final = samples.read_text().splitlines()
                        last = final[-1].split("\t")[0]
                        shown = [line.split("\t", 1)[1] for line in final if line.split("\t")[0] == last]
                        f.write(f"== seed {seed} {algorithm} {variant}\n" + "".join(f"  {s}\n" for s in shown))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/learned_reward"))
    parser.add_argument("--name", default="learned_reward", help="results prefix")
    args = parser.parse_args()
    rows: list[dict] = []
    for seed in args.seeds:
        rows += pipeline(seed, args.work)
        write_results(rows, args.work, args.name)  # after every seed: a partial table survives a stop
        print(f"seed {seed} done -> {RESULTS / args.name}.md", flush=True)


if __name__ == "__main__":
    main()
