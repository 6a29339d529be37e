"""Mixed precision against float32: does compute_dtype=bfloat16 change what PPO and GRPO learn?

    python experiments/ppo/compute_dtype.py                   # all rows, about 7 minutes on a 2-core CPU
    python experiments/ppo/compute_dtype.py --rows grpo/CartPole-v1

``compute_dtype="bfloat16"`` runs the hidden layers in bfloat16 (parameters, heads and losses stay float32).
Each row trains the same seeds (base seed 1, held out from tuning) in float32 and in bfloat16:

- ppo/CartPole-v1: PureJaxRL's settings (``benchmarks/ppo_throughput.py``'s config, 499,712 steps per seed,
  16 seeds), the program whose GPU throughput bfloat16 is for;
- ppo/Pendulum-v1: its tuned config (``purerl/configs/ppo/Pendulum-v1.json``; continuous actions, observation
  normalisation and reward scaling, 1M steps, 8 seeds), where precision has more room to matter;
- grpo/CartPole-v1: its tuned config (``purerl/configs/grpo/CartPole-v1.json``, 8 seeds).

Reported per run: the separate evaluation's IQM with its 95% CI, and the mean training-episode return over
the whole run (the area under the learning curve over its length) with its standard error over seeds.
Run directories go to ``runs/experiments/compute_dtype/`` under the current directory (not committed): a
finished one is read back, an interrupted one resumed. Results accumulate in
``experiments/ppo/results/compute_dtype.json`` (rows not rerun are kept) and are tabulated in ``.md`` beside it.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.core.stats import format_iqm_ci
from purerl.io.run import read_metrics_csv
from purerl.io.run_dir import RunSettings, run_in_dir, run_script
from purerl.io.tuned import tuned_config

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
RUNS = Path("runs/experiments/compute_dtype")
RESULTS = HERE / "results" / "compute_dtype"
SEEDS = {"ppo/CartPole-v1": 16, "ppo/Pendulum-v1": 8, "grpo/CartPole-v1": 8}


def base_config(row: str):
    algorithm, env = row.split("/")
    if row == "ppo/CartPole-v1":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from ppo_throughput import PUREJAXRL_CARTPOLE

        return PUREJAXRL_CARTPOLE
    return tuned_config(algorithm, env)


def train(row: str, dtype: str) -> dict:
    """The finished run of ``row`` in ``dtype``: trained, resumed or read back."""
    run_dir = RUNS / row / dtype
    if not (run_dir / "summary.json").exists():
        config = dataclasses.replace(base_config(row), compute_dtype=dtype)
        settings = RunSettings(num_seeds=SEEDS[row], base_seed=1)
        run_in_dir(run_dir, row.split("/")[0], config, settings, resume=(run_dir / "run.json").exists())
    summary = json.loads((run_dir / "summary.json").read_text())
    returns = read_metrics_csv(run_dir / "metrics.csv")["episode_return"]  # [seeds, updates]
    per_seed = np.nanmean(returns, axis=1)
    return {
        "row": row,
        "compute_dtype": dtype,
        "seeds": summary["num_seeds"],
        "env_steps_per_seed": summary["env_steps_per_seed"],
        "eval": {key: summary["eval"][key] for key in ("iqm", "iqm_ci_low", "iqm_ci_high", "mean")},
        "run_mean_return": float(per_seed.mean()),
        "run_mean_return_se": float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))),
        "train_seconds": summary["train_seconds"],
        "device": summary["device"]["kind"],
        "jax": summary["versions"]["jax"],
        "date": summary["date"],
    }


def write_table(results: list[dict]) -> str:
    lines = [
        "# PPO and GRPO, float32 against bfloat16 hidden layers (`python experiments/ppo/compute_dtype.py`)",
        "",
        "| run | compute_dtype | seeds | env steps per seed | eval IQM [95% CI] | mean training return over the run "
        "(± s.e.) | train time | jax, date |",
        "| --- " * 8 + "|",
    ]
    for r in results:
        ev = r["eval"]
        lines.append(
            f"| {r['row']} | {r['compute_dtype']} | {r['seeds']} | {r['env_steps_per_seed']:,} | "
            f"{format_iqm_ci(ev['iqm'], ev['iqm_ci_low'], ev['iqm_ci_high'])} | {r['run_mean_return']:.1f} ± "
            f"{r['run_mean_return_se']:.1f} | {r['train_seconds']:.0f} s ({r['device']}) | {r['jax']}, "
            f"{r['date'][:10]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(SEEDS), choices=list(SEEDS))
    args = parser.parse_args()
    path = RESULTS.with_suffix(".json")
    results = json.loads(path.read_text()) if path.exists() else []
    for row in args.rows:
        for dtype in ("float32", "bfloat16"):
            result = train(row, dtype)
            results = [r for r in results if (r["row"], r["compute_dtype"]) != (row, dtype)] + [result]
            results.sort(key=lambda r: (list(SEEDS).index(r["row"]), r["compute_dtype"] != "float32"))
            path.write_text(json.dumps(results, indent=2) + "\n")
            RESULTS.with_suffix(".md").write_text(write_table(results))
    print(RESULTS.with_suffix(".md").read_text())


if __name__ == "__main__":
    run_script(main)
