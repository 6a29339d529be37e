"""Fixed-seed runs through the command line whose every metric was recorded before a refactor, so that a
change meant to move no number can be checked to move none (``tests/test_reference_results.py``).

    python tests/reference_results.py     # re-record tests/data/reference_results.json (only on purpose)

Each run is small: PPO and GRPO on CartPole (2 seeds, a few updates in chunks of 2, the bar on), a PPO sweep
of 2 points, and the LM path SFT -> GRPO on ``sentiment`` (a few steps each).
"""

import csv
import json
import sys
from pathlib import Path

import jax
import jaxlib
import numpy as np

from purerl.io import cli

RECORDED = Path(__file__).parent / "data" / "reference_results.json"
CONTROL = ["--config", "defaults", "--seeds", "2", "--chunk-updates", "2", "--eval-episodes", "4"]  # generic defaults
RUNS = {
    "ppo": ["train", "ppo", "--env", "CartPole-v1", "--total-timesteps", "2048", "--num-envs", "4", *CONTROL],
    "grpo": ["train", "grpo", "--env", "CartPole-v1", "--num-updates", "3", "--num-groups", "2", *CONTROL],
    "ppo_sweep": [
        "sweep",
        "ppo",
        "--env",
        "CartPole-v1",
        "--total-timesteps",
        "1024",
        "--grid",
        "learning_rate=1e-3,3e-3",
        "--grid",
        "gamma=0.9,0.99",
        *CONTROL,
    ],
}
LM_SFT = [
    "lm",
    "sft",
    "--task",
    "sentiment",
    "--steps",
    "6",
    "--warmup-steps",
    "2",
    "--eval-every",
    "6",
    "--eval-prompts",
    "16",
    "--batch-size",
    "16",
]
LM_GRPO = [
    "lm",
    "grpo",
    "--steps",
    "2",
    "--prompts-per-step",
    "4",
    "--group-size",
    "4",
    "--eval-every",
    "2",
    "--eval-prompts",
    "16",
    "--beta",  # the defaults when the runs were recorded
    "0.04",
    "--advantage-scale",
    "std",
]


def read_columns(path: Path) -> dict[str, list[float]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {name: [float(row[name]) for row in rows] for name in rows[0]}


def environment() -> dict[str, str]:
    """What decides the bits: on the recording environment the runs reproduce exactly. XLA compiles for the
    host's vector instructions, so a CPU's count too: the same jax on an AVX2-only machine differed from a
    recording in the last bits (approx_kl 1.5753230e-4 against 1.5753231e-4), and the exact test failed there.
    A recording that does not name its CPU's (this one's) is compared to float rounding everywhere."""
    platform = jax.devices()[0].platform
    found = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "platform": platform}
    return found | ({"cpu": cpu_features()} if platform == "cpu" else {})


def cpu_features() -> str:
    """The vector instruction sets of this machine's CPU that XLA may compile for (Linux; else unknown)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(sorted(f for f in flags.split(":")[1].split() if f.startswith(("avx", "fma", "amx"))))


# The runs of each group: one per control run; "lm" is SFT, then GRPO from it.
GROUP_RUNS = {**{name: (name,) for name in RUNS}, "lm": ("sft", "lm_grpo")}
GROUPS = tuple(GROUP_RUNS)


def run_group(group: str, work: Path) -> dict[str, dict[str, list[float]]]:
    """The reference runs of ``group`` (a name of ``RUNS``, or ``"lm"``: SFT then GRPO from it) into ``work``:
    run name -> column name -> values (metrics.csv, evals.csv and the evaluation returns)."""
    if group in RUNS:
        out = work / group
        assert cli.main([*RUNS[group], "--out", str(out)]) == 0
        columns = read_columns(out / "metrics.csv")
        return {group: columns | {"eval_returns": np.load(out / "eval.npz")["returns"].ravel().tolist()}}
    assert cli.main([*LM_SFT, "--out", str(work / "sft")]) == 0
    assert cli.main([*LM_GRPO, "--init", str(work / "sft"), "--out", str(work / "lm_grpo")]) == 0
    results = {}
    for name in GROUP_RUNS["lm"]:
        results[name] = read_columns(work / name / "metrics.csv")
        results[name] |= {f"eval/{k}": v for k, v in read_columns(work / name / "evals.csv").items()}
    return results


def run_all(work: Path) -> dict[str, dict[str, list[float]]]:
    """Every group's reference runs into ``work`` (see ``run_group``)."""
    return {name: columns for group in GROUPS for name, columns in run_group(group, work).items()}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        results = run_all(Path(work))
    RECORDED.parent.mkdir(exist_ok=True)
    RECORDED.write_text(json.dumps({"environment": environment(), "runs": results}, indent=1) + "\n")
    print(f"recorded {sum(len(v) for r in results.values() for v in r.values())} values in {RECORDED}", file=sys.stderr)
