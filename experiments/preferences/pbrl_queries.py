"""PPO on a reward learnt from preferences (``purerl train pbrl``) against the number of queries, with exact and
noisy labels and random or disagreement query selection, beside PPO on the true reward.

    python experiments/preferences/pbrl_queries.py                       # every env, 8 seeds
    python experiments/preferences/pbrl_queries.py --envs CartPole-v1    # some envs

Per env (CartPole-v1, Acrobot-v1, Pendulum-v1) and 8 seeds (base seed 1): pbrl from the env's tuned config
(``purerl/configs/pbrl/``: PPO's tuned settings and budget) with 50, 200 and 1000 queries, each with
(a) exact labels and random pairs, (b) labels flipped with probability 0.1 and random pairs, (c) exact labels
and pairs chosen by the disagreement of a 3-member ensemble; and PPO on the true reward with its tuned config
(``purerl/configs/ppo/``; on Pendulum that one also normalises observations and scales rewards, which pbrl
does not allow: the table says so, and PPO also runs without them, pbrl's settings). Final evaluation: 128
episodes per seed on the true reward, IQM over seeds with a 95% stratified-bootstrap CI (rliable). Also
reported: the reward model's held-out accuracy and the correlation of its segment returns with the true ones
at the last query round (mean over seeds).

Each run is a directory under ``runs/preferences/`` (not committed), resumed after any stop and read back once
finished. Results in ``experiments/preferences/results/``: ``pbrl_queries.md``, ``.json`` and ``.png``.
"""

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

import purerl  # noqa: F401  (the CPU hazard's cure, before any compile)
from purerl.core.stats import format_iqm_ci
from purerl.io.run import read_metrics_csv
from purerl.io.run_dir import RunSettings, finished_run, run_script
from purerl.io.tuned import tuned_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/preferences")
ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1")
QUERIES = (50, 200, 1000)
VARIANTS = {
    "exact, random pairs": {},
    "10% flipped, random pairs": {"label_noise": 0.1},
    "exact, disagreement": {"query_selection": "disagreement"},
}


def cell(env: str, method: str, queries: int | None, out: Path) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text())
    evaluation = summary["eval"]  # rliable's IQM and its CI
    row = {
        "env": env,
        "method": method,
        "queries": queries,
        "seeds": len(evaluation["return_per_seed"]),
        "env_steps": summary["env_steps_per_seed"],
        "eval_iqm": evaluation["iqm"],
        "eval_ci": [evaluation["iqm_ci_low"], evaluation["iqm_ci_high"]],
        "eval_per_seed": evaluation["return_per_seed"],
        "train_seconds": summary["train_seconds"],
    }
    if queries is not None:
        metrics = read_metrics_csv(out / "metrics.csv")
        row["heldout_accuracy"] = float(np.nanmean(metrics["heldout_accuracy"][:, -1]))
        row["return_correlation"] = float(np.nanmean(metrics["return_correlation"][:, -1]))
    return row


def write_results(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pbrl_queries.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    lines = [
        "# PPO on a reward learnt from preferences, against queries",
        "",
        "Final evaluation on the true reward: IQM over seeds [95% stratified-bootstrap CI]. Held-out accuracy "
        "and correlation: the reward model's at the last query round, on fresh pairs, against the perfectly "
        "rational teacher (mean over seeds).",
        "",
        "| env | method | queries | env steps | eval return IQM [CI] | held-out accuracy | return correlation |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        queries = "-" if r["queries"] is None else str(r["queries"])
        accuracy = f"{r['heldout_accuracy']:.3f}" if "heldout_accuracy" in r else "-"
        correlation = f"{r['return_correlation']:.3f}" if "return_correlation" in r else "-"
        lines.append(f"| {r['env']} | {r['method']} | {queries} | {r['env_steps']:,} | "
                     f"{format_iqm_ci(r['eval_iqm'], *r['eval_ci'])} | {accuracy} | {correlation} |")  # fmt: skip
    (RESULTS / "pbrl_queries.md").write_text("\n".join(lines) + "\n")

    envs = [env for env in ENVS if any(r["env"] == env for r in rows)]
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.8), dpi=100, squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for variant in VARIANTS:
            chosen = sorted((r for r in rows if r["env"] == env and r["method"] == f"pbrl: {variant}"),
                            key=lambda r: r["queries"])  # fmt: skip
            if chosen:
                q = [r["queries"] for r in chosen]
                (line,) = ax.plot(q, [r["eval_iqm"] for r in chosen], marker="o", label=variant)
                ax.fill_between(q, [r["eval_ci"][0] for r in chosen], [r["eval_ci"][1] for r in chosen],
                                color=line.get_color(), alpha=0.15)  # fmt: skip
        baselines = [r for r in rows if r["env"] == env and r["method"].startswith("PPO")]
        for r, style in zip(baselines, ("--", ":"), strict=False):
            ax.axhline(r["eval_iqm"], color="grey", linestyle=style, label=r["method"])
        ax.set(xscale="log", title=env, xlabel="queries (labelled pairs)", ylabel="eval return (IQM, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "pbrl_queries.png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the runs go [{WORK}]")
    args = parser.parse_args()
    plan = []
    for env in args.envs:
        ppo_config = tuned_config("ppo", env)
        normalised = ppo_config.normalize_observations or ppo_config.scale_rewards
        plan.append((env, "PPO on the true reward" + (" (normalised obs, scaled rewards)" if normalised else ""),
                     None, "ppo", ppo_config, args.work / env / "ppo"))  # fmt: skip
        if normalised:  # and with pbrl's settings, which cannot normalise: the like-for-like baseline
            plain = dataclasses.replace(ppo_config, normalize_observations=False, scale_rewards=False)
            plan.append((env, "PPO on the true reward (pbrl's settings: raw obs and rewards)", None, "ppo", plain,
                         args.work / env / "ppo_raw"))  # fmt: skip
        for queries in QUERIES:
            for variant, fields in VARIANTS.items():
                config = tuned_config("pbrl", env, queries=queries, **fields)
                name = f"pbrl_{queries}_" + ("_".join(f"{k}={v}" for k, v in fields.items()) or "exact")
                plan.append((env, f"pbrl: {variant}", queries, "pbrl", config, args.work / env / name))
    rows = []
    settings = RunSettings(num_seeds=args.seeds, base_seed=1)  # the tuned configs came from base seed 0
    for env, method, queries, algorithm, config, out in plan:  # every config checked before the first run
        rows.append(cell(env, method, queries, finished_run(out, algorithm, config, settings)))
        write_results(rows)


if __name__ == "__main__":
    run_script(main)
