"""A control run directory: ``purerl train`` and ``purerl sweep`` start one, ``--resume`` continues it.

    out/config.json    the algorithm's config (for a sweep, the compiled base: see ``sweep_base_config``)
    out/run.json       the algorithm and the ``RunSettings``: with config.json, all that a resume needs
    out/checkpoints/   orbax checkpoints of every run's state and metrics (``purerl.io.checkpoints``)
    then the results: metrics.csv, eval.npz and summary.json + learning_curve.png (train), or sweep.json,
    sweep.md and its figures (sweep).

``run_in_dir`` is the one path from the command line to ``purerl.io.run.run_seeds``: a new run and a resumed
one, a single config and a sweep, all go through it.
"""

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax

from purerl.core.sharding import is_main_process
from purerl.io.checkpoints import RunCheckpoints, new_run_checkpoints
from purerl.io.config_io import config_from_dict, load_config_values, save_config
from purerl.io.run import ALGORITHMS, run_seeds, seed_keys, write_outputs
from purerl.io.stopping import DEFAULT_STOP_GRACE, Interrupted
from purerl.io.sweep import expand_grid, point_labels, sweep_base_config, write_sweep_outputs
from purerl.io.trackers import TRACKERS, Trackers

RUN_FILE = "run.json"
DEFAULT_CHECKPOINT_EVERY = 500  # updates between periodic checkpoints of a CLI run (also saved at the end and on stop)
DEFAULT_CHECKPOINT_MINUTES = 10.0  # and at the first chunk's end this long after the last save: a SIGKILL loses less
CHUNKING = ("chunk_updates", "checkpoint_every", "checkpoint_minutes")  # the RunSettings of when a run saves and stops


@dataclass(frozen=True)
class RunSettings:
    """How a run directory trains, besides the algorithm's config; fixed for the run's life (a resume keeps
    them). Raises ``ValueError`` naming the flag of a bad value."""

    num_seeds: int = 16  # --seeds: seeds trained in parallel (per sweep point)
    base_seed: int = 0  # --seed: seed i trains from split(key(base_seed), num_seeds)[i]
    chunk_updates: int | None = None  # updates per jitted chunk (None: the algorithm's); a run stops between chunks
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY  # 0: only at the end and on a stop signal
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES  # also save this long after the last save (0: never)
    grid: dict[str, list[float]] | None = None  # a sweep: field -> values, one point per element of the product
    tensorboard: bool = False  # --tensorboard: event files per seed (purerl.io.trackers)
    wandb: bool = False  # --wandb: W&B offline runs per seed

    def __post_init__(self) -> None:
        for flag, value in (("seeds", self.num_seeds), ("chunk-updates", self.chunk_updates)):
            if value is not None and value <= 0:
                raise ValueError(f"--{flag} must be > 0, got {value}")
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        if not 0 <= self.checkpoint_minutes < float("inf"):  # NaN too
            raise ValueError(f"--checkpoint-minutes must be finite and >= 0, got {self.checkpoint_minutes}")

    @property
    def command(self) -> str:
        return "sweep" if self.grid else "train"

    @property
    def trackers(self) -> tuple[str, ...]:
        return tuple(name for name in TRACKERS if getattr(self, name))


def load_run_dir(out: Path, flag: str = "--resume") -> tuple[str, Any, RunSettings]:
    """``(algorithm, config, settings)`` of a run directory that ``run_in_dir`` started; ``flag`` names where
    ``out`` came from in the one-line error for a directory that is not one."""
    try:
        info = json.loads((out / RUN_FILE).read_text())
        values = load_config_values(out / "config.json")
    except (OSError, ValueError):
        if (out / "config.json").exists() and not (out / RUN_FILE).exists():  # a language-model run
            lm = load_config_values(out / "config.json").get("_algorithm")
            raise ValueError(f"{flag} {str(out)!r} is an LM run; use: purerl lm {lm} --resume {out}") from None
        missing = f"no readable {RUN_FILE} and config.json"
        raise ValueError(f"{flag} {str(out)!r} is not a purerl run directory ({missing})") from None
    algorithm = info["algorithm"]
    names = [field.name for field in dataclasses.fields(RunSettings)]
    settings = RunSettings(**{name: info[name] for name in names if name in info})
    return algorithm, config_from_dict(ALGORITHMS[algorithm].config_cls, values), settings


def load_trained_state(out: Path, flag: str = "--from") -> tuple[str, Any, RunSettings, Any]:
    """``(algorithm, config, settings, state)`` of a finished run directory (not a sweep): ``state`` is every
    seed's final training state, leading axis = seed (``purerl.control.evaluation.select_seed`` takes one)."""
    algorithm, config, settings = load_run_dir(out, flag)
    if settings.grid:
        raise ValueError(f"{flag} {str(out)!r} is a sweep; train the point you want with purerl train, then use that")
    checkpoints = RunCheckpoints(out / "checkpoints")
    if not (out / "summary.json").exists() or checkpoints.latest_step() != config.num_updates:
        raise ValueError(f"{str(out)!r} has not finished training; finish it first: purerl train {algorithm} "
                         f"--resume {out}")  # fmt: skip
    keys = seed_keys(settings.base_seed, settings.num_seeds)
    like = jax.eval_shape(jax.vmap(ALGORITHMS[algorithm].init, in_axes=(0, None)), keys, config)
    state, _, _ = checkpoints.restore(config.num_updates, like)
    return algorithm, config, settings, state


def run_in_dir(
    out: Path,
    algorithm: str,
    config: Any,
    settings: RunSettings,
    resume: bool = False,
    stop_grace: float = DEFAULT_STOP_GRACE,
    note: str = "",
) -> dict[str, Any]:
    """Trains ``algorithm`` with ``config`` as ``settings`` say, in ``out``, and writes the results; returns
    the summary (``summary.json`` or ``sweep.json``). ``note`` (where the config came from) is printed once
    the directory is accepted, before anything compiles.

    A new run (``resume=False``) writes ``config.json`` and ``run.json`` first, refusing a directory that
    holds another run's checkpoints; a resumed one continues from its newest checkpoint, bitwise as if
    uninterrupted, with the trackers it was saved with and those ``settings`` add (kept in ``run.json``; a
    tracker added at a resume first receives the restored metrics); a finished one is evaluated again.
    ``stop_grace``: see ``purerl.io.stopping.StopSignals``."""
    points = None
    if resume:
        checkpoints = RunCheckpoints(out / "checkpoints", writer=True)
        saved = json.loads((out / RUN_FILE).read_text())
        settings = dataclasses.replace(settings, **{name: getattr(settings, name) or saved.get(name, False)
                                                    for name in TRACKERS})  # fmt: skip
        if settings.chunk_updates is None:  # the run's own chunks, not today's default for its config
            settings = dataclasses.replace(settings, chunk_updates=saved.get("chunk_updates"))
    if settings.chunk_updates is None:  # resolved before run.json is written: a resume keeps the chunks
        settings = dataclasses.replace(settings, chunk_updates=ALGORITHMS[algorithm].default_chunk(config))
    if settings.grid:
        config, points = sweep_base_config(config, settings.grid), expand_grid(settings.grid)
    trackers = None
    if settings.trackers and is_main_process():
        trackers = run_trackers(out, algorithm, config, settings, points)  # refuses a missing extra first
    if not resume:
        checkpoints = new_run_checkpoints(out, f"--resume {out}")
        if is_main_process():
            save_config(config, out / "config.json", algorithm)
    if is_main_process():
        info = {"algorithm": algorithm, "command": settings.command} | dataclasses.asdict(settings)
        (out / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if note and is_main_process():
        print(note, file=sys.stderr, flush=True)
    announce = None
    if resume and is_main_process():  # once the checkpoint is accepted: a refused one gets its one line alone
        line = resume_line(out, checkpoints.latest_step(), config.num_updates)
        announce = partial(print, line, file=sys.stderr, flush=True)
    result = run_seeds(
        algorithm,
        config,
        settings.num_seeds,
        settings.base_seed,
        sweep=points,
        chunk_updates=settings.chunk_updates,
        checkpoints=checkpoints,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_minutes=settings.checkpoint_minutes,
        stop_grace=stop_grace,
        on_chunk=None if trackers is None else trackers.log_chunk,
        on_accept=announce,
    )
    if points is not None:
        summary = write_sweep_outputs(out, algorithm, config, points, result, settings.num_seeds)
    else:
        summary = write_outputs(out, algorithm, config, result, settings.base_seed)
    if trackers is not None:  # after the results are safe
        trackers.finish(result.metrics, result.eval_returns)
    return summary


def resume_line(out: Path, step: int | None, num_updates: int) -> str:
    """What a resume starts from: the newest checkpoint's update, or update 0 for a run stopped before its first
    checkpoint (killed while compiling: a stop signal saves one once training has begun)."""
    if step is None:
        return f"{out} has no checkpoint yet: starting at update 0"
    if step == num_updates:
        return f"{out} finished training ({num_updates:,} updates): evaluating its final state again"
    return f"resuming at update {step:,} of {num_updates:,}"


def run_trackers(
    out: Path, algorithm: str, config: Any, settings: RunSettings, points: dict[str, list[float]] | None
) -> Trackers:
    """The trackers of a run directory, one tracker run per seed (per sweep point): ``seed_<s>``, or
    ``<field>=<value>,.../seed_<s>`` in a sweep."""
    seeds = range(settings.num_seeds)
    seed_info = [{"seed": s, "base_seed": settings.base_seed, "num_seeds": settings.num_seeds} for s in seeds]
    if points is None:
        names, run_config = [f"seed_{s}" for s in seeds], seed_info
    else:
        labels = [label.replace(", ", ",") for label in point_labels(points)]
        names = [f"{label}/seed_{s}" for label in labels for s in seeds]
        run_config = [
            seed_info[s] | {name: values[p] for name, values in points.items()}
            for p in range(len(labels))
            for s in seeds
        ]
    return Trackers(settings.trackers, out, algorithm, config, names, run_config)


def finished_run(out: Path, algorithm: str, config: Any, settings: RunSettings) -> Path:
    """``out`` holding a finished run: trained there if new, resumed from its newest checkpoint if stopped, read
    back as it is if finished. What an experiment script runs each cell with, so that the same command continues
    a study after any stop."""
    if not (out / "summary.json").exists():
        run_in_dir(out, algorithm, config, settings, resume=(out / RUN_FILE).exists())
    return out


def run_script(main: Callable[[], None], continues: bool = True) -> None:
    """An experiment script's entry point: a stop signal (Ctrl-C, SIGTERM) ends it as ``purerl`` ends, with one
    line (where the stopped run was saved; ``continues``: that the same command goes on from there) and exit
    code 128 + the signal, instead of a traceback."""
    try:
        main()
    except Interrupted as stop:
        print(f"stopped: {stop}" + ("; the same command continues it" if continues else ""), file=sys.stderr)
        sys.exit(128 + stop.signum)
