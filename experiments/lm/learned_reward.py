"""RLHF on a learned reward model that works: which pieces PPO and GRPO need on ``sentiment``, over seeds.

    python experiments/lm/learned_reward.py                 # 3 seeds, about an hour on 2 CPU cores
    python experiments/lm/learned_reward.py --seeds 0 1 2 3 4

Per seed ``s`` (every piece of the pipeline draws from ``s``; ``experiments/lm/pipeline.py``): SFT (1000
steps), 512 prompts x 4 samples of best-vs-worst pairs labelled by the task's reward, and three reward models
on them (seeds ``100 s + k``). Then PPO (64 prompts x 1) and GRPO (8 prompts x 8) for 60 rollouts each, from
the SFT policy, trained on:

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
| ``unscaled`` | GRPO only: ``normalized`` with Dr. GRPO's unscaled advantages ``R - mean`` |
| | (``--advantage-scale none``) |
| ``unscaled_ensemble`` | GRPO only: ``ensemble`` with unscaled advantages |
| ``unscaled_temperatures`` | GRPO only: ``temperatures`` with unscaled advantages |
| ``beta0.1``, ``unscaled_beta0.1`` | GRPO only: ``normalized`` (scaled, unscaled) with the KL coefficient 0.1 (0.04) |
| ``unscaled_temperatures_beta0.1`` | GRPO only: ``unscaled_temperatures`` with the KL coefficient 0.1 |

Results in ``experiments/lm/results/learned_reward*``: every run's final held-out evaluation (task reward,
validity, KL, diversity, the proxy score), the table over seeds and the final samples.
"""

import argparse
import csv
from pathlib import Path

from pipeline import Seed, final_samples, iqm_ci

RESULTS = Path(__file__).parent / "results"
ALGORITHMS = ("ppo", "grpo")
MEMBERS = 3
VARIANTS = ("task", "raw", "raw_adaptive_kl", "normalized", "ensemble", "temperatures", "round2")
VARIANTS += ("unscaled", "unscaled_ensemble", "unscaled_temperatures", "beta0.1", "unscaled_beta0.1")
VARIANTS += ("unscaled_temperatures_beta0.1",)
UNSCALED = {"advantage_scale": "none"}
PAPER_GRPO = {"beta": 0.04, "advantage_scale": "std"}  # GRPO's settings in the paper (its defaults then)
COLUMNS = ("reward", "validity", "kl_to_reference", "unique", "distinct_2", "proxy_score")


def pipeline(run: Seed) -> list[dict]:
    """Every run of one seed; returns one row per (algorithm, variant)."""
    first = run.pairs("pairs")
    members = tuple(run.reward_model(f"rm_{k}", (first,), k) for k in range(MEMBERS))
    hot = run.reward_model("rm_temperatures", (run.pairs("pairs_temperatures", temperatures=(0.7, 1.0, 1.5)),))
    rows = []
    raw = {"reward_model": members[:1], "normalize_reward": False}
    normalized = {"reward_model": members[:1], "normalize_reward": True}
    ensemble = {"reward_model": members, "normalize_reward": True, "ensemble_penalty": 1.0}
    temperatures = {"reward_model": (hot,), "normalize_reward": True}
    shared = {"task": {}, "raw": raw, "normalized": normalized, "ensemble": ensemble, "temperatures": temperatures}
    own = {
        "ppo": {"raw_adaptive_kl": raw | {"kl_target": 3.0}},
        # GRPO's (R - mean) / std is blind to the score's scale: only unscaled advantages see normalisation.
        "grpo": {
            "unscaled": normalized | UNSCALED,
            "unscaled_ensemble": ensemble | UNSCALED,
            "unscaled_temperatures": temperatures | UNSCALED,
            "beta0.1": normalized | {"beta": 0.1},
            "unscaled_beta0.1": normalized | UNSCALED | {"beta": 0.1},
            "unscaled_temperatures_beta0.1": temperatures | UNSCALED | {"beta": 0.1},
        },
    }
    for algorithm in ALGORITHMS:
        base = PAPER_GRPO if algorithm == "grpo" else {}
        summaries = {
            variant: run.policy(algorithm, variant, **(base | fields))
            for variant, fields in (shared | own[algorithm]).items()
        }
        second = run.pairs(f"pairs_round2_{algorithm}", policy=str(run.root / f"{algorithm}_normalized"))
        round2 = run.reward_model(f"rm_round2_{algorithm}", (first, second))
        summaries["round2"] = run.policy(algorithm, "round2", **base, reward_model=(round2,), normalize_reward=True)
        for variant, summary in summaries.items():
            rows.append({"seed": run.seed, "algorithm": algorithm, "variant": variant} | summary["eval"])
    return rows


def write_results(rows: list[dict], runs: list[Seed], prefix: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / f"{prefix}_runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["algorithm", "variant", "seed", *COLUMNS])
        for row in rows:
            values = [f"{row[c]:.4f}" if c in row else "" for c in COLUMNS]
            writer.writerow([row["algorithm"], row["variant"], row["seed"], *values])
    seeds = [run.seed for run in runs]
    lines = [
        f"# PPO and GRPO on a learned reward model: sentiment, {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        "",
        "Final held-out evaluation (256 prompts, temperature 1) after 60 rollouts of 64 completions. Each cell: IQM "
        "over seeds (for 3 seeds, the mean) [95% bootstrap CI (rliable)]. Task reward is the gold reward; proxy is "
        "what the policy was trained on, on the same completions (blank: the task's reward).",
        "",
        "| algorithm | variant | task reward | validity | KL to SFT | unique | proxy score | seeds at target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for algorithm in ALGORITHMS:
        for variant in VARIANTS:
            cell = [row for row in rows if row["algorithm"] == algorithm and row["variant"] == variant]
            if not cell:
                continue
            shown = ("reward", "validity", "kl_to_reference", "unique", "proxy_score")
            values = [iqm_ci([row[c] for row in cell]) if c in cell[0] else "" for c in shown]
            at_target = sum(row["reward"] >= 0.6 and row["validity"] >= 0.85 for row in cell)
            lines.append(f"| {algorithm} | {variant} | {' | '.join(values)} | {at_target}/{len(cell)} |")
    lines += ["", "Target (issue 18): task reward >= 0.6 with validity >= 85%.", ""]
    (RESULTS / f"{prefix}.md").write_text("\n".join(lines))
    with (RESULTS / f"{prefix}_samples.txt").open("w") as f:
        for run in runs:
            for algorithm in ALGORITHMS:
                for variant in VARIANTS:
                    if (run.root / f"{algorithm}_{variant}" / "samples.txt").exists():
                        shown = final_samples(run.root / f"{algorithm}_{variant}")
                        f.write(f"== seed {run.seed} {algorithm} {variant}\n" + "".join(f"  {s}\n" for s in shown))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="learned_reward", help="results prefix")
    args = parser.parse_args()
    rows: list[dict] = []
    runs: list[Seed] = []
    for seed in args.seeds:
        runs.append(Seed("sentiment", seed))
        rows += pipeline(runs[-1])
        write_results(rows, runs, args.name)  # after every seed: a partial table survives a stop
        print(f"seed {seed} done -> {RESULTS / args.name}.md", flush=True)


if __name__ == "__main__":
    main()
