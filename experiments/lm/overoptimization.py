"""Reward-model over-optimisation on ``sentiment`` (Gao et al. 2022): the proxy score and the gold (task)
reward against ``d = sqrt(KL to the SFT policy)``, for best-of-n sampling and for RLHF-PPO, with a reward model
trained on few pairs and one on many.

    python experiments/lm/overoptimization.py            # 3 seeds, about 40 minutes on 2 CPU cores

Per seed (``experiments/lm/pipeline.py``; the SFT run, the 512-prompt pairs and reward model 0 are those of
``learned_reward.py``): a second reward model on the pairs of 64 prompts only. For each reward model,
normalised on SFT samples (``--normalize-reward``):

- **RL**: PPO with no KL penalty (``kl_coef 0``, as Gao et al.'s main curves) for 100 rollouts, evaluated every
  2 on the 256 held-out prompts: the proxy score, the gold reward and the KL of the same completions.
- **Best-of-n**: 64 completions per held-out prompt from the SFT policy; for n = 1, 2, ..., 64 the unbiased
  estimate of what best-of-n keeps (``purerl.lm.overoptimization``), at KL ``log n - (n - 1) / n``.

The gold gain over the SFT policy is fitted with the paper's forms (best-of-n ``d (alpha - beta d)``, RL
``d (alpha - beta log d)``) on the seed-mean curve; the report gives the coefficients, the fitted peak and the
KL where it occurs. Results in ``experiments/lm/results/overoptimization*``, with the samples of each RL run at
its gold peak and at its end.
"""

import argparse
import csv
import json
from pathlib import Path

import jax
import matplotlib
import numpy as np
from pipeline import Seed

from purerl.core.streams import NUMPY_EVAL_STREAM
from purerl.io.lm_align import load_scorer, load_sft_policy
from purerl.lm.overoptimization import best_of_n_expectations, best_of_n_kl, fit_gao, gao_curve, gao_peak
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.rollout import make_rollout
from purerl.lm.sft import model_from_sft

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SIZES = {"64 prompts": 64, "512 prompts": 512}  # pairs the reward model is trained on (about 0.9 per prompt)
BEST_OF = (1, 2, 4, 8, 16, 32, 64)
RL_STEPS, RL_EVAL_EVERY = 100, 2  # every 2 rollouts: the gold reward peaks and collapses within 40
BON_SEED_OFFSET = 1000  # best-of-n samples with jax.random.key(1000 + seed): a stream no purerl run uses


def reward_models(run: Seed) -> dict[str, str]:
    """The reward model of each training-set size (the 512-prompt one is learned_reward.py's member 0)."""
    return {
        "512 prompts": run.reward_model("rm_0", (run.pairs("pairs"),)),
        "64 prompts": run.reward_model("rm_small", (run.pairs("pairs_small", prompts=SIZES["64 prompts"]),)),
    }


def rl_curve(run: Seed, size: str, rm: str) -> list[dict]:
    name = "overopt_" + size.replace(" ", "_")
    fields = {"reward_model": (rm,), "normalize_reward": True, "kl_coef": 0.0}
    run.policy("ppo", name, steps=RL_STEPS, eval_every=RL_EVAL_EVERY, **fields)
    with (run.root / f"ppo_{name}" / "evals.csv").open() as f:
        evals = list(csv.DictReader(f))
    return [
        {"method": "rl", "size": size, "seed": run.seed, "x": int(row["step"])}
        | {"kl": max(float(row["kl_to_reference"]), 0.0), "gold": float(row["reward"])}
        | {"proxy": float(row["proxy_score"])}
        for row in evals
    ]


def samples_at(run: Seed, size: str, step: int) -> list[str]:
    """The samples the RL run printed at its evaluation of ``step``."""
    lines = (run.root / f"ppo_overopt_{size.replace(' ', '_')}" / "samples.txt").read_text().splitlines()
    return [line.split("\t", 1)[1] for line in lines if line.split("\t")[0] == f"step {step}"]


def best_of_n_curve(run: Seed, size: str, rm: str) -> list[dict]:
    out = run.root / f"best_of_n_{size.replace(' ', '_')}.json"
    if not out.exists():
        sft_config, params = load_sft_policy(run.sft)
        task = sft_config.task_instance
        model, _ = model_from_sft(sft_config, params)
        trained_on = LMPPOConfig(init=run.sft, reward_model=(rm,), normalize_reward=True)
        scorer, _ = load_scorer(trained_on, sft_config, params)
        prompts = task.prompts(np.random.default_rng([run.seed, NUMPY_EVAL_STREAM]), 256)
        samples = max(BEST_OF)
        result = make_rollout(task, model, 1.0, scorer)(
            params, [p for p in prompts for _ in range(samples)], jax.random.key(BON_SEED_OFFSET + run.seed)
        )
        proxy, gold = result.scores.reshape(len(prompts), samples), result.task_rewards.reshape(len(prompts), samples)
        rows = []
        for n in BEST_OF:
            estimate = best_of_n_expectations(proxy, {"gold": gold, "proxy": proxy}, n)
            rows.append({"method": "best_of_n", "size": size, "seed": run.seed, "x": n} | estimate)
            rows[-1]["kl"] = float(best_of_n_kl(n))
        out.write_text(json.dumps(rows))
    return json.loads(out.read_text())


def seed_mean(rows: list[dict], method: str, size: str) -> dict[str, np.ndarray]:
    """The curve averaged over seeds at each x (n or step): kl, d, gold, proxy."""
    xs = sorted({row["x"] for row in rows if row["method"] == method and row["size"] == size})
    curve = {key: [] for key in ("kl", "gold", "proxy")}
    for x in xs:
        at = [row for row in rows if row["method"] == method and row["size"] == size and row["x"] == x]
        for key in curve:
            curve[key].append(np.mean([row[key] for row in at]))
    curve = {key: np.array(values) for key, values in curve.items()}
    return curve | {"d": np.sqrt(curve["kl"])}


def write_results(rows: list[dict], seeds: list[int]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "overoptimization_points.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "size", "seed", "x", "kl", "gold", "proxy"])
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Reward-model over-optimisation on sentiment ({len(seeds)} seeds: {', '.join(map(str, seeds))})",
        "",
        "Gold = the task's reward, proxy = the normalised reward-model score, both on the 256 held-out prompts; "
        "d = sqrt(KL to the SFT policy) in sqrt(nats). Fits of the gold gain over the SFT policy on the seed-mean "
        "curve (Gao et al. 2022, eqs. 1-2).",
        "",
        "| method | reward model trained on | alpha | beta | fitted peak d | KL there | fitted gold gain there | "
        "measured peak gold (d, KL) | gold at the largest d (d) | proxy there |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for ax, method, form in ((axes[0], "best_of_n", "best_of_n"), (axes[1], "rl", "rl")):
        for color, size in zip(("tab:red", "tab:blue"), SIZES, strict=True):
            curve = seed_mean(rows, method, size)
            gain = curve["gold"] - curve["gold"][0]
            alpha, beta = fit_gao(curve["d"], gain, form)
            peak_d, peak_gain = gao_peak(alpha, beta, form)
            last, best = int(np.argmax(curve["d"])), int(np.argmax(curve["gold"]))
            lines.append(
                f"| {method} | {size} | {alpha:.3f} | {beta:.3f} | {peak_d:.2f} | {peak_d**2:.2f} | {peak_gain:.3f} "
                f"| {curve['gold'][best]:.3f} ({curve['d'][best]:.2f}, {curve['kl'][best]:.1f}) "
                f"| {curve['gold'][last]:.3f} ({curve['d'][last]:.2f}) | {curve['proxy'][last]:.2f} |"
            )
            ax.plot(curve["d"], curve["gold"], "o-", color=color, label=f"gold, RM on {size}")
            ax.plot(curve["d"], curve["proxy"] / 4, "s--", color=color, alpha=0.6, label=f"proxy / 4, RM on {size}")
            grid = np.linspace(0, curve["d"].max(), 200)
            ax.plot(grid, curve["gold"][0] + gao_curve(grid, alpha, beta, form), ":", color=color, label="fit")
        ax.set(xlabel="d = sqrt(KL to SFT)", ylabel="reward", title=f"{method}: mean of {len(seeds)} seeds")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "overoptimization.png")
    plt.close(fig)
    (RESULTS / "overoptimization.md").write_text("\n".join(lines) + "\n")
    with (RESULTS / "overoptimization_samples.txt").open("w") as f:
        for seed in seeds:
            for size in SIZES:
                curve = [row for row in rows if row["method"] == "rl" and row["size"] == size and row["seed"] == seed]
                peak = max(curve, key=lambda row: row["gold"])
                for label, row in (("gold peak", peak), ("end", curve[-1])):
                    f.write(f"== seed {seed}, RM on {size}, PPO beta 0, {label}: rollout {row['x']}, gold "
                            f"{row['gold']:.2f}, proxy {row['proxy']:.2f}, KL {row['kl']:.1f}\n")  # fmt: skip
                    f.writelines(f"  {line}\n" for line in samples_at(Seed("sentiment", seed), size, row["x"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows: list[dict] = []
    for seed in args.seeds:
        run = Seed("sentiment", seed)
        for size, rm in reward_models(run).items():
            rows += best_of_n_curve(run, size, rm) + rl_curve(run, size, rm)
        write_results(rows, args.seeds[: args.seeds.index(seed) + 1])
        print(f"seed {seed} done -> {RESULTS / 'overoptimization.md'}", flush=True)


if __name__ == "__main__":
    main()
