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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from purerl.control import bc, dagger, grpo, pbrl, ppo, sac
from purerl.core.sharding import BY_SEED, is_main_process, on_each_device, seed_mesh, to_host, unpad
from purerl.core.stats import summarize_runs
from purerl.io.checkpoints import RunCheckpoints
from purerl.io.chunked import entry_differences, train_in_chunks
from purerl.io.config_io import config_to_dict, stored_config_differences
from purerl.io.plots import plot_learning_curve
from purerl.io.progress_bar import ProgressBar
from purerl.io.stopping import DEFAULT_STOP_GRACE

STEPS_PER_CHUNK_UNIT = 512  # env steps per seed of PPO's default update (4 envs x 128 steps): one unit


def env_step_units(env_steps: int) -> int:
    """``env_steps`` per seed in units of PPO's default update (``STEPS_PER_CHUNK_UNIT``), rounded up."""
    return -(-env_steps // STEPS_PER_CHUNK_UNIT)


def ppo_update_cost(config: Any) -> int:
    return env_step_units(config.steps_per_update)


def grpo_update_cost(config: Any) -> int:
    return env_step_units(config.num_episodes * config.horizon)  # every rollout runs the whole horizon


def sac_update_cost(config: Any) -> int:
    return max(config.gradient_steps, env_step_units(config.steps_per_update))


def one_unit(config: Any) -> int:
    return 1


@dataclass(frozen=True)
class Algorithm:
    """A control algorithm as data and pure functions: ``init(key, config)``, ``update(state, index)``,
    ``evaluate(state)`` and ``policy(state, obs)`` (one seed's action distribution at raw observations), the
    state carrying its config. ``curve`` is the per-update metric that shows training progress (the progress
    bar, ``learning_curve.png``, the summary's ``train`` block, a sweep's area under the curve): the training
    episodes' return, or for BC, which plays no episodes while training, its loss, against updates.
    ``chunk_updates`` small updates make a CLI run's default jitted chunk (``purerl.io.chunked``): few enough
    that progress shows, a stop is honoured within the grace period and a chunk's end can save;
    ``update_cost(config)`` says how many small updates one update of ``config`` counts as, and ``cost_rule``
    says it in words for ``--help``."""

    config_cls: type
    init: Any
    update: Any
    evaluate: Any
    policy: Any
    curve: str = "episode_return"
    chunk_updates: int = 50  # ppo's overhead against one chunk: benchmarks/chunking_overhead.py
    update_cost: Callable[[Any], int] = ppo_update_cost
    cost_rule: str = f"an update counts as its env steps per seed in units of {STEPS_PER_CHUNK_UNIT}, rounded up"

    def default_chunk(self, config: Any) -> int:
        """Updates per chunk by default: ``chunk_updates // update_cost(config)``, at least 1. Costs were
        measured on 2 CPU cores: SAC with Brax's hopper settings takes 64 gradient steps an update, and its
        50-update chunks ran about 8 minutes for 8 seeds, past any stop grace; PPO with 128 brax envs x 80
        steps ran 50-update chunks of 29 minutes, so a stop lost up to that much; MinAtar's 64 x 128 (16 units)
        gets 3-update chunks, about 8 s for 4 seeds."""
        return max(1, self.chunk_updates // max(1, self.update_cost(config)))

    @property
    def chunk_help(self) -> str:
        """``default_chunk`` as ``--chunk-updates --help`` states it."""
        if self.chunk_updates == 1:
            return "1"
        return f"{self.chunk_updates} small updates' worth: {self.cost_rule}"

    @property
    def plays_episodes(self) -> bool:
        """Training plays env episodes: the curve is their return, against env steps."""
        return self.curve == "episode_return"


def module_algorithm(module: Any, config_cls: type, **fields: Any) -> Algorithm:
    """The ``Algorithm`` of a control module that defines ``init``, ``update``, ``evaluate`` and ``policy``."""
    return Algorithm(config_cls, module.init, module.update, module.evaluate, module.policy, **fields)


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": module_algorithm(ppo, ppo.PPOConfig),
    "grpo": module_algorithm(
        grpo,
        grpo.GRPOConfig,
        update_cost=grpo_update_cost,
        cost_rule=f"an update counts as num_groups*group_size episodes x the env's horizon (every rollout runs it "
        f"whole) in units of {STEPS_PER_CHUNK_UNIT} env steps, rounded up",
    ),
    "sac": module_algorithm(
        sac,
        sac.SACConfig,
        update_cost=sac_update_cost,
        cost_rule=f"an update counts as its gradient steps (utd_ratio*num_envs*num_steps) or its env steps per "
        f"seed in units of {STEPS_PER_CHUNK_UNIT}, rounded up, whichever is more",
    ),
    "bc": module_algorithm(bc, bc.BCConfig, curve="loss", update_cost=one_unit, cost_rule="an update is one Adam step"),
    # A DAgger update is a whole round (episodes played, labelled, then hundreds of Adam steps): one per chunk.
    "dagger": module_algorithm(dagger, dagger.DAggerConfig, chunk_updates=1, update_cost=one_unit),
    "pbrl": module_algorithm(pbrl, pbrl.PbRLConfig),
}


def title(algorithm: str) -> str:
    """How an algorithm's name is written in prose: its acronym as the literature writes it."""
    return {"dagger": "DAgger", "pbrl": "PbRL"}.get(algorithm, algorithm.upper())


VERSIONED_PACKAGES = ("purerl", "jax", "jaxlib", "flax", "optax", "chex", "gymnax", "distrax", "flashbax", "numpy")


@dataclass
class RunResult:
    """Results of ``num_points * num_seeds`` runs, point-major: run ``p * num_seeds + s`` is seed ``s`` of
    sweep point ``p`` (one point when nothing is swept)."""

    final_state: Any  # every run's final training state, leading axis = run (select_seed picks one)
    metrics: dict[str, np.ndarray]  # name -> [runs, updates]
    eval_returns: np.ndarray  # [runs, episodes]
    eval_lengths: np.ndarray
    compile_seconds: float
    train_seconds: float  # this process's
    eval_seconds: float
    resumed_from: int = 0  # updates that were restored from a checkpoint instead of trained here
    restored_train_seconds: float | None = 0.0  # the earlier processes' (None: saved before purerl kept it)


def seed_keys(base_seed: int, num_seeds: int) -> jax.Array:
    """Seed i of a run is ``jax.random.split(jax.random.key(base_seed), num_seeds)[i]``."""
    return jax.random.split(jax.random.key(base_seed), num_seeds)


def run_meta(algorithm: str, config: Any, num_seeds: int, base_seed: int, sweep: dict[str, list[float]]) -> dict:
    """What identifies a run; stored with its checkpoints, so a resume can tell it is the same run. A config
    that reads files (BC's demonstrations, DAgger's expert: ``config.inputs``) adds their SHA-256s, so a
    resume refuses inputs changed since."""
    meta = {
        "algorithm": algorithm,
        "config": config_to_dict(config),
        "num_seeds": num_seeds,
        "base_seed": base_seed,
        "sweep": sweep,
    }
    inputs = getattr(config, "inputs", {})
    if inputs:
        meta["inputs"] = inputs
    return meta


def run_meta_differences(meta: dict[str, Any], config: Any, stored_meta: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's ``stored_meta`` and this run's ``meta`` (from ``run_meta`` with
    ``config``): the config field by field (fields added to purerl since take their defaults), the rest as is."""
    rest = {name: value for name, value in meta.items() if name not in ("config", "inputs")}
    config_differences = [f"config field {d}" for d in stored_config_differences(stored_meta.get("config"), config)]
    inputs = input_differences(meta.get("inputs", {}), stored_meta.get("inputs", {}))
    return config_differences + inputs + entry_differences(rest, stored_meta)


def input_differences(inputs: dict[str, str], stored: dict[str, str]) -> list[str]:
    """One line per input (name -> SHA-256) that ``stored`` (a checkpoint's) does not hold as it is now."""
    return [
        f"input {name} changed since (SHA-256 {stored[name][:12]} there, {digest[:12]} here)"
        if name in stored
        else f"input {name} was not read by the run that saved it"
        for name, digest in inputs.items()
        if stored.get(name) != digest
    ]


def run_seeds(
    algorithm: str,
    config: Any,
    num_seeds: int,
    base_seed: int = 0,
    show_progress: bool = True,
    mesh=None,
    sweep: dict[str, list[float]] | None = None,
    chunk_updates: int | None = None,
    checkpoints: RunCheckpoints | None = None,
    checkpoint_every: int = 0,
    checkpoint_minutes: float = 0.0,
    stop_grace: float = DEFAULT_STOP_GRACE,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    on_accept: Callable[[], None] | None = None,
) -> RunResult:
    """Trains ``num_seeds`` agents (per sweep point) in one ``jit(vmap(...))`` and evaluates each final policy.

    ``sweep`` maps sweepable config fields to one value per sweep point (all lists equally long); every
    point trains the same ``num_seeds`` seed keys, so points are compared on common random numbers. The runs
    are split over the devices of ``mesh`` (default: all devices, ``purerl.core.sharding``); the results are
    the same as on one device up to float rounding (README, "Many devices, many hosts"). ``chunk_updates``,
    ``checkpoints``, ``checkpoint_every``, ``checkpoint_minutes``, ``stop_grace`` and ``on_chunk`` are those of
    ``purerl.io.chunked.train_in_chunks``; ``on_accept()`` runs once a resumed run's checkpoint is accepted (or
    at once for a new run), before anything compiles.
    """
    algo = ALGORITHMS[algorithm]
    mesh = seed_mesh() if mesh is None else mesh
    sweep = {} if sweep is None else sweep
    num_points = len(next(iter(sweep.values()))) if sweep else 1
    num_runs = num_points * num_seeds
    # Seed i trains with exactly seed_keys[i], so it can be rerun alone (evaluated with its evaluation stream).
    train_keys = jnp.tile(seed_keys(base_seed, num_seeds), num_points)
    configs = config.trace(
        **{name: jnp.repeat(jnp.asarray(values, jnp.float32), num_seeds) for name, values in sweep.items()}
    )
    bar = None
    if show_progress and is_main_process():  # every process has every run's metrics; process 0 draws
        bar = ProgressBar(config.num_updates, config.steps_per_update, num_runs, metric=algo.curve)
        devices = f" on {mesh.size} devices" if mesh.size > 1 else ""
        runs = f"{num_points} points x {num_seeds} seeds" if sweep else f"{num_seeds} seeds"
        precision = "" if config.compute_dtype == "float32" else f" in {config.compute_dtype}"
        heading = f"compiling {algorithm} on {config.env} for {runs}{devices}{precision} ..."

    meta = run_meta(algorithm, config, num_seeds, base_seed, sweep)
    try:
        output = train_in_chunks(
            algo.init,
            algo.update,
            config.num_updates,
            train_keys,
            configs,
            mesh,
            chunk_updates=chunk_updates,
            checkpoints=checkpoints,
            checkpoint_every=checkpoint_every,
            checkpoint_minutes=checkpoint_minutes,
            meta=meta,
            meta_differences=partial(run_meta_differences, meta, config),
            progress=bar,
            on_compile=partial(before_compile, on_accept, None if bar is None else heading),
            on_start=None if bar is None else bar.start,
            on_chunk=on_chunk,
            run_name=lambda r: f"seed {r % num_seeds}" + (f" of sweep point {r // num_seeds}" if sweep else ""),
            stop_grace=stop_grace,
            progress_metric=algo.curve,
        )
    finally:
        if bar is not None:
            bar.close()  # also when the run stops: the bar ends on where it stopped

    start = time.perf_counter()
    evaluation = jax.block_until_ready(evaluation_program(algorithm, mesh)(output.padded_state))
    eval_seconds = time.perf_counter() - start
    evaluation = unpad(to_host(evaluation), num_runs)
    return RunResult(
        unpad(output.padded_state, num_runs),
        output.metrics,
        evaluation["returns"],
        evaluation["lengths"],
        output.compile_seconds,
        output.train_seconds,
        eval_seconds,
        output.resumed_from,
        output.restored_train_seconds,
    )


def before_compile(on_accept: Callable[[], None] | None, heading: str | None) -> None:
    if on_accept is not None:
        on_accept()
    if heading is not None:
        print(heading, file=sys.stderr, flush=True)


def evaluation_program(algorithm: str, mesh: Any) -> Any:
    """The jitted ``evaluate(states) -> {"returns": [runs, E], "lengths": [runs, E]}`` of the runs' final
    states, each with its seed's evaluation stream: every device evaluates its own runs, no communication."""
    evaluate = jax.vmap(ALGORITHMS[algorithm].evaluate)
    return jax.jit(on_each_device(evaluate, mesh, BY_SEED, BY_SEED))


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


def train_curve_per_seed(
    metrics: dict[str, np.ndarray], curve: str = "episode_return", last_fraction: float = 0.05
) -> np.ndarray:
    """Mean of the training curve (by default the training-episode return) over the last ``last_fraction``
    of updates, per seed."""
    values = metrics[curve]
    tail = max(1, round(values.shape[1] * last_fraction))
    with warnings.catch_warnings():  # NaN for a seed none of whose episodes ended then, without numpy's warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[:, -tail:], axis=1)


def run_train_seconds(result: RunResult) -> float | None:
    """The run's training seconds over all its processes: this one's and those its checkpoint recorded (None if
    that checkpoint was saved before purerl recorded them)."""
    if result.restored_train_seconds is None:
        return None
    return result.restored_train_seconds + result.train_seconds


def summarize(algorithm: str, config: Any, result: RunResult, base_seed: int) -> dict[str, Any]:
    """``summary.json``'s content. Timings: ``compile_seconds``, ``train_seconds`` and ``env_steps_per_second``
    are this process's (a resumed run's last session), ``run_train_seconds`` the whole run's; a finished run
    evaluated again trained nothing here, so its rate is the whole run's (None if unknown)."""
    num_seeds = result.eval_returns.shape[0]
    final_env_steps = result.metrics["env_steps"][:, -1]  # equal across seeds for PPO, not for GRPO
    restored_env_steps = result.metrics["env_steps"][:, result.resumed_from - 1] if result.resumed_from else 0
    trained_env_steps = final_env_steps - restored_env_steps  # by this process (a resumed run restored the rest)
    eval_per_seed = result.eval_returns.mean(axis=1)
    curve = ALGORITHMS[algorithm].curve
    train_per_seed = train_curve_per_seed(result.metrics, curve)
    train_name = "training-episode return" if curve == "episode_return" else f"training {curve}"
    run_seconds = run_train_seconds(result)
    if trained_env_steps.sum() > 0:
        rate = float(trained_env_steps.sum()) / max(result.train_seconds, 1e-9)
    else:  # a finished run evaluated again: no rate of its own, the whole run's instead
        rate = None if not run_seconds else float(final_env_steps.sum()) / run_seconds
    return {
        "algorithm": algorithm,
        "env": config.env,
        "compute_dtype": config.compute_dtype,
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
            "metric": curve,
            "protocol": f"mean {train_name} over the last 5% of updates",
            ("return_per_seed" if curve == "episode_return" else f"{curve}_per_seed"): train_per_seed.tolist(),
        }
        | summarize_runs(train_per_seed),
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "run_train_seconds": run_seconds,
        "eval_seconds": result.eval_seconds,
        "env_steps_per_second": rate,
        "resumed_from_update": result.resumed_from,
        "command": " ".join(sys.argv),
    } | environment_info()


def write_metrics_csv(path: Path, metrics: dict[str, np.ndarray], seeds_per_point: int | None = None) -> None:
    """Long format: one row per (seed, update), one column per metric. With ``seeds_per_point`` (a sweep,
    runs point-major) a ``point`` column comes first and ``seed`` counts within the point."""
    names = sorted(metrics)
    num_runs, num_updates = metrics[names[0]].shape
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow((["point"] if seeds_per_point else []) + ["seed", "update", *names])
        for run in range(num_runs):
            index = list(divmod(run, seeds_per_point)) if seeds_per_point else [run]
            for update in range(num_updates):
                writer.writerow([*index, update, *(metrics[name][run, update].item() for name in names)])


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
    if not is_main_process():
        return summary
    write_metrics_csv(out / "metrics.csv", result.metrics)
    np.savez_compressed(out / "eval.npz", returns=result.eval_returns, lengths=result.eval_lengths)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    algo = ALGORITHMS[algorithm]
    plot_learning_curve(
        out / "learning_curve.png",
        {f"{title(algorithm)} ({summary['num_seeds']} seeds)": result.metrics},
        title=f"{config.env}: " + ("training-episode return" if algo.plays_episodes else f"training {algo.curve}"),
        metric=algo.curve,
        x="env_steps" if algo.plays_episodes else "update",
    )
    return summary
