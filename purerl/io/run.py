"""Running an algorithm over many seeds and writing what a researcher needs: config, per-update metrics,
summary (with IQM and bootstrap CIs), learning curve. Used by the CLI and by the experiment scripts."""

import csv
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purerl.control import grpo, ppo
from purerl.core.sharding import seed_mesh, shard_seeds, unpad
from purerl.core.stats import summarize_runs
from purerl.io.config_io import save_config
from purerl.io.plots import plot_learning_curve
from purerl.io.progress_bar import ProgressBar


@dataclass(frozen=True)
class Algorithm:
    config_cls: type
    make_train: Any
    make_evaluate: Any


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm(ppo.PPOConfig, ppo.make_train, ppo.make_evaluate),
    "grpo": Algorithm(grpo.GRPOConfig, grpo.make_train, grpo.make_evaluate),
}

EVAL_STREAM = 1  # fold_in constant that derives a seed's evaluation key from its training key
VERSIONED_PACKAGES = ("purerl", "jax", "jaxlib", "flax", "optax", "chex", "gymnax", "distrax", "numpy")


@dataclass
class RunResult:
    final_state: Any  # every seed's final training state, leading axis = seed (select_seed picks one)
    metrics: dict[str, np.ndarray]  # name -> [seeds, updates]
    eval_returns: np.ndarray  # [seeds, episodes]
    eval_lengths: np.ndarray
    compile_seconds: float
    train_seconds: float
    eval_seconds: float


def seed_keys(base_seed: int, num_seeds: int) -> jax.Array:
    """Seed i of a run is ``jax.random.split(jax.random.key(base_seed), num_seeds)[i]``."""
    return jax.random.split(jax.random.key(base_seed), num_seeds)


def run_seeds(
    algorithm: str, config: Any, num_seeds: int, base_seed: int = 0, show_progress: bool = True, mesh=None
) -> RunResult:
    """Trains ``num_seeds`` agents in one ``jit(vmap(train))`` and evaluates each final policy.

    The seeds are split over the devices of ``mesh`` (default: all devices, ``purerl.core.sharding``); the
    results are the same as on one device, up to float reassociation."""
    algo = ALGORITHMS[algorithm]
    mesh = seed_mesh() if mesh is None else mesh
    train_keys = seed_keys(base_seed, num_seeds)
    # Seed i trains with exactly train_keys[i] (so it can be rerun alone) and evaluates on a folded-in stream.
    eval_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(train_keys, EVAL_STREAM)
    train_keys, eval_keys = shard_seeds((train_keys, eval_keys), mesh)
    bar = ProgressBar(config.num_updates, config.steps_per_update, num_seeds) if show_progress else None
    train = jax.jit(jax.vmap(algo.make_train(config, progress=bar)))

    if show_progress:
        devices = f" on {mesh.size} devices" if mesh.size > 1 else ""
        print(f"compiling {algorithm} on {config.env} for {num_seeds} seeds{devices} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    compiled = train.lower(train_keys).compile()
    compile_seconds = time.perf_counter() - start
    if bar is not None:
        bar.start()
    start = time.perf_counter()
    final_state, metrics = jax.block_until_ready(compiled(train_keys))
    train_seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

    start = time.perf_counter()
    evaluation = jax.block_until_ready(jax.jit(jax.vmap(algo.make_evaluate(config)))(final_state, eval_keys))
    eval_seconds = time.perf_counter() - start
    final_state, metrics, evaluation = unpad((final_state, metrics, evaluation), num_seeds)
    return RunResult(
        final_state,
        {k: np.asarray(v) for k, v in metrics.items()},
        np.asarray(evaluation["returns"]),
        np.asarray(evaluation["lengths"]),
        compile_seconds,
        train_seconds,
        eval_seconds,
    )


def environment_info() -> dict[str, Any]:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "versions": versions | {"python": platform.python_version()},
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()},
        "machine": {"cpu_count": os.cpu_count(), "system": platform.platform()},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def train_return_per_seed(metrics: dict[str, np.ndarray], last_fraction: float = 0.05) -> np.ndarray:
    """Mean training-episode return over the last ``last_fraction`` of updates, per seed."""
    returns = metrics["episode_return"]
    tail = max(1, round(returns.shape[1] * last_fraction))
    with np.errstate(invalid="ignore"):
        return np.nanmean(returns[:, -tail:], axis=1)


def summarize(algorithm: str, config: Any, result: RunResult, base_seed: int) -> dict[str, Any]:
    num_seeds = result.eval_returns.shape[0]
    final_env_steps = result.metrics["env_steps"][:, -1]  # equal across seeds for PPO, not for GRPO
    eval_per_seed = result.eval_returns.mean(axis=1)
    train_per_seed = train_return_per_seed(result.metrics)
    return {
        "algorithm": algorithm,
        "env": config.env,
        "num_seeds": num_seeds,
        "base_seed": base_seed,
        "seed_keys": f"jax.random.split(jax.random.key({base_seed}), {num_seeds})",
        "env_steps_per_seed": round(float(final_env_steps.mean())),
        "env_steps_per_seed_range": [int(final_env_steps.min()), int(final_env_steps.max())],
        "eval": {
            "protocol": f"{config.eval_episodes} episodes per seed, "
            + ("greedy (policy mode)" if config.eval_greedy else "stochastic policy"),
            "return_per_seed": eval_per_seed.tolist(),
        }
        | summarize_runs(eval_per_seed),
        "train": {
            "protocol": "mean training-episode return over the last 5% of updates",
            "return_per_seed": train_per_seed.tolist(),
        }
        | summarize_runs(train_per_seed),
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "env_steps_per_second": float(final_env_steps.sum()) / result.train_seconds,
        "command": " ".join(sys.argv),
    } | environment_info()


def check_writable(out: Path) -> None:
    """Fails early, with one line, if ``out`` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--out {str(out)!r} is not writable: {error.strerror or error}") from None


def write_metrics_csv(path: Path, metrics: dict[str, np.ndarray]) -> None:
    """Long format: one row per (seed, update), one column per metric."""
    names = sorted(metrics)
    num_seeds, num_updates = metrics[names[0]].shape
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "update", *names])
        for seed in range(num_seeds):
            for update in range(num_updates):
                writer.writerow([seed, update, *(metrics[name][seed, update].item() for name in names)])


def read_metrics_csv(path: Path) -> dict[str, np.ndarray]:
    """Inverse of ``write_metrics_csv``: metric name -> ``[seeds, updates]`` array."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = np.array([[float(x) for x in row] for row in reader])
    num_seeds, num_updates = int(rows[:, 0].max()) + 1, int(rows[:, 1].max()) + 1
    return {name: rows[:, i].reshape(num_seeds, num_updates) for i, name in enumerate(header) if i >= 2}


def write_outputs(out: Path, algorithm: str, config: Any, result: RunResult, base_seed: int) -> dict[str, Any]:
    summary = summarize(algorithm, config, result, base_seed)
    write_metrics_csv(out / "metrics.csv", result.metrics)
    np.savez_compressed(out / "eval.npz", returns=result.eval_returns, lengths=result.eval_lengths)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_learning_curve(
        out / "learning_curve.png",
        {f"{algorithm.upper()} ({summary['num_seeds']} seeds)": result.metrics},
        title=f"{config.env}: training-episode return",
    )
    return summary


def run_and_write(algorithm: str, config: Any, num_seeds: int, out: Path, base_seed: int = 0) -> dict[str, Any]:
    check_writable(out)
    save_config(config, out / "config.json", algorithm)
    result = run_seeds(algorithm, config, num_seeds, base_seed)
    return write_outputs(out, algorithm, config, result, base_seed)
