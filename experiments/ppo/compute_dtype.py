"""Does mixed precision change what PPO learns? float32 against ``compute_dtype="bfloat16"`` (hidden layers in
bfloat16, parameters, heads and losses in float32) on the same seeds, side by side.

    python experiments/ppo/compute_dtype.py        # about 10 minutes on a 2-core CPU

- CartPole-v1 at PureJaxRL's settings (``benchmarks/ppo_throughput.py``'s config, 499,712 steps per seed), the
  program whose GPU throughput bfloat16 is for, with truncation bootstrapped (purerl's default).
- Pendulum-v1 with its tuned config (``experiments/ppo/Pendulum-v1.json``): continuous actions, observation
  normalisation and reward scaling, 1M steps, where precision has more room to matter.

Seeds from base seed 1 (held out from tuning). Per env and dtype: the separate evaluation's IQM with its 95% CI
and the mean training-episode return over the whole run (the area under the learning curve divided by its
length) with its standard error over seeds. Run directories go to runs/experiments/compute_dtype/ (not
committed); the table to experiments/ppo/results/compute_dtype.md.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.io.config_io import config_from_dict, load_config_values
from purerl.io.run import ALGORITHMS, read_metrics_csv
from purerl.io.run_dir import RunSettings, run_in_dir

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
RUNS = Path("runs/experiments/compute_dtype")
SEEDS = {"CartPole-v1": 16, "Pendulum-v1": 8}


def base_configs() -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ppo_throughput import PUREJAXRL_CARTPOLE

    pendulum = config_from_dict(ALGORITHMS["ppo"].config_cls, load_config_values(HERE / "Pendulum-v1.json"))
    return {"CartPole-v1": PUREJAXRL_CARTPOLE, "Pendulum-v1": pendulum}


def curve_mean(run_dir: Path) -> tuple[float, float]:
    """Mean over seeds of each seed's mean training-episode return over all updates, and its standard error."""
    returns = read_metrics_csv(run_dir / "metrics.csv")["episode_return"]  # [seeds, updates]
    per_seed = np.nanmean(returns, axis=1)
    return float(per_seed.mean()), float(per_seed.std(ddof=1) / np.sqrt(len(per_seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(SEEDS), choices=list(SEEDS))
    args = parser.parse_args()
    rows = [
        "| env | compute_dtype | seeds | eval IQM [95% CI] | mean training return over the run (± s.e.) | train time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    configs = base_configs()
    for env in args.envs:
        for dtype in ("float32", "bfloat16"):
            run_dir = RUNS / env / dtype
            config = dataclasses.replace(configs[env], compute_dtype=dtype)
            run_in_dir(run_dir, "ppo", config, RunSettings(num_seeds=SEEDS[env], base_seed=1))
            summary = json.loads((run_dir / "summary.json").read_text())
            ev = summary["eval"]
            mean, se = curve_mean(run_dir)
            rows.append(
                f"| {env} | {dtype} | {summary['num_seeds']} | {ev['iqm']:.1f} [{ev['iqm_ci_low']:.1f}, "
                f"{ev['iqm_ci_high']:.1f}] | {mean:.1f} ± {se:.1f} | {summary['train_seconds']:.0f} s "
                f"({summary['device']['kind']}) |"
            )
    info = f"jax {summary['versions']['jax']}, {summary['date'][:10]}, `python experiments/ppo/compute_dtype.py`"
    out = HERE / "results" / "compute_dtype.md"
    out.write_text(f"# PPO, float32 vs bfloat16 hidden layers ({info})\n\n" + "\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
