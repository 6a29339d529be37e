"""Tunes PPO on the bsuite and misc envs (15; purerl's generic defaults before), on base seed 0, which the
benchmark never reports (it uses base seed 1).

Per env, one `purerl sweep` from the generic defaults at their budget (500k env steps) over
learning_rate x gamma, 8 seeds; the point with the highest eval IQM wins (ties, e.g. every point solving
Catch, go to the highest eval mean, then the highest area under the learning curve: the fastest learner).
Its config is written to purerl/configs/ppo/<env>.json with the tuning note, and every point's result to
experiments/ppo/results/suite_tuning.csv (+ .md). Each sweep is its own resumable run directory, so after any
stop the same command continues.

    python experiments/ppo/tune_suites.py [--envs Catch-bsuite ...]
"""

import argparse
import csv
import json
from pathlib import Path

import purerl  # noqa: F401  (XLA defaults before JAX starts)
from purerl.control.envs import SUITES
from purerl.control.ppo import PPOConfig
from purerl.io import cli
from purerl.io.run_dir import RUN_FILE

ROOT = Path(__file__).resolve().parents[2]
GRID = {"learning_rate": [2.5e-4, 1e-3], "gamma": [0.99, 0.999, 1.0]}
SEEDS = 8
# Pong-misc steps about 20x slower than the rest (10k env steps/s on 2 cores): last.
ENVS = [env for env in (*SUITES["bsuite"], *SUITES["misc"]) if env != "MNISTBandit-bsuite" and env != "Pong-misc"]
ENVS.append("Pong-misc")
# Why an env's return cannot rise above a bound whatever the hyperparameters, read from gymnax's source.
LIMITS = {
    "SimpleBandit-bsuite": "gymnax reshuffles the arms' rewards at every reset and the observation is constant, so "
    "no policy's expected return differs from the random policy's 0.5",
    "MemoryChain-bsuite": "the context is shown only at the first step: a memoryless (MLP) policy cannot act on it",
    "BernoulliBandit-misc": "a meta-bandit: the arm probabilities are redrawn each episode, so a good policy needs "
    "memory of the episode's pulls; an MLP policy has none",
    "MetaMaze-misc": "the goal moves each episode and is not observed: finding it again needs memory",
}
RESULTS = ROOT / "experiments" / "ppo" / "results"


def sweep(env: str) -> dict:
    out = ROOT / "runs" / "tuning" / "ppo" / env
    if not (out / "sweep.json").exists():
        if (out / RUN_FILE).exists():
            argv = ["sweep", "ppo", "--resume", str(out)]
        else:
            grid = [f"{name}={','.join(map(str, values))}" for name, values in GRID.items()]
            argv = ["sweep", "ppo", "--env", env, "--config", "defaults", "--seeds", str(SEEDS), "--seed", "0"]
            argv += [item for spec in grid for item in ("--grid", spec)] + ["--out", str(out)]
        assert cli.main(argv) == 0
    return json.loads((out / "sweep.json").read_text())


def best_point(result: dict) -> dict:
    """Highest eval IQM; among equal IQMs (to 3 digits) the highest eval mean, which the IQM's trimming hides
    (DeepSea: IQM 0.99 at every point, but a seed in four that never finds the treasure at some), then AUC."""

    def key(row: dict) -> tuple:
        mean = sum(row["eval_return_per_seed"]) / len(row["eval_return_per_seed"])
        return round(row["eval_return_iqm"], 3), round(mean, 3), row["auc_iqm"]

    return max(result["points"], key=key)


def fmt(x: float) -> str:
    """Three significant digits, without ``:.3g``'s exponent for returns of 1,000 and more (Pong-misc's 1e+03)."""
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def write_config(env: str, result: dict) -> None:
    best = best_point(result)
    defaults = {"learning_rate": PPOConfig().learning_rate, "gamma": PPOConfig().gamma}
    default = next(row for row in result["points"] if row["hyperparameters"] == defaults)
    low, high = best["eval_return_ci"]
    note = (
        f"Tuned for purerl on base seed 0 ({SEEDS} seeds; experiments/ppo/tune_suites.py, "
        f"experiments/ppo/results/suite_tuning.md): the generic defaults (PureJaxRL's CartPole settings) with "
        f"learning_rate x gamma swept over {GRID['learning_rate']} x {GRID['gamma']} at the defaults' 500k env "
        f"steps; the best eval IQM wins, ties go to the larger eval mean, then area under the learning curve. "
        f"Chosen: "
        f"{best['label']}, eval IQM {fmt(best['eval_return_iqm'])} [{fmt(low)}, {fmt(high)}] (defaults: "
        f"{fmt(default['eval_return_iqm'])}). Reported results use base seed 1."
    )
    if env in LIMITS:
        note += f" Bound: {LIMITS[env]}."
    values = {"_source": note, "env": env, "total_timesteps": PPOConfig().total_timesteps} | best["hyperparameters"]
    path = ROOT / "purerl" / "configs" / "ppo" / f"{env}.json"
    path.write_text(json.dumps(values, indent=2) + "\n")


def tuning_rows(env: str, result: dict) -> list[dict]:
    """One CSV row per point of an env's sweep."""
    best = best_point(result)
    return [{"env": env, **row["hyperparameters"], "eval_iqm": row["eval_return_iqm"],
             "eval_ci_low": row["eval_return_ci"][0], "eval_ci_high": row["eval_return_ci"][1],
             "auc_iqm": row["auc_iqm"], "chosen": row is best} for row in result["points"]]  # fmt: skip


def committed_rows() -> list[dict]:
    """The rows of ``suite_tuning.csv`` as committed, so that tuning some envs from a checkout whose ``runs/``
    lacks the others' sweeps keeps their rows."""
    path = RESULTS / "suite_tuning.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [row | {"chosen": row["chosen"] == "True"} for row in csv.DictReader(f)]


def write_tables(results: dict[str, dict]) -> None:
    """``suite_tuning.csv`` and ``.md``: every env's points, those swept here from ``results`` and the other
    envs' from the committed CSV, in ``ENVS`` order."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = [row for row in committed_rows() if row["env"] not in results]
    rows += [row for env, result in results.items() for row in tuning_rows(env, result)]
    rows.sort(key=lambda row: ENVS.index(row["env"]))
    with (RESULTS / "suite_tuning.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# PPO tuning on bsuite and misc (base seed 0, {SEEDS} seeds, 500k env steps)",
        "",
        "Command: `python experiments/ppo/tune_suites.py`. Eval IQM [95% CI] per point "
        "(learning_rate, gamma); the chosen point in bold.",
        "",
        "| env | " + " | ".join(f"lr {a:g}, gamma {g:g}" for a in GRID["learning_rate"] for g in GRID["gamma"]) + " |",
        "| --- " * (1 + len(GRID["learning_rate"]) * len(GRID["gamma"])) + "|",
    ]
    envs = list(dict.fromkeys(row["env"] for row in rows))
    for env in envs:
        cells = []
        for row in (row for row in rows if row["env"] == env):
            iqm, low, high = (float(row[name]) for name in ("eval_iqm", "eval_ci_low", "eval_ci_high"))
            cell = f"{fmt(iqm)} [{fmt(low)}, {fmt(high)}]"
            cells.append(f"**{cell}**" if row["chosen"] else cell)
        lines.append(f"| {env} | " + " | ".join(cells) + " |")
    if any(env in LIMITS for env in envs):
        lines += ["", "Bounds no hyperparameter moves:", ""]
        lines += [f"- {env}: {LIMITS[env]}." for env in envs if env in LIMITS]
    (RESULTS / "suite_tuning.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=ENVS, choices=ENVS, metavar="ENV")
    args = parser.parse_args()
    results = {}
    for env in ENVS:
        if env in args.envs or (ROOT / "runs" / "tuning" / "ppo" / env / "sweep.json").exists():
            results[env] = sweep(env)
            write_config(env, results[env])
            write_tables(results)  # after every env: the table grows as the sweeps finish


if __name__ == "__main__":
    main()
