"""The one driver of every language-model training run (``purerl lm sft|rm|dpo|ppo|grpo``): a run in a
directory, with progress, evaluations, checkpoints and results.

The directory gets ``config.json`` at the start; orbax checkpoints (the whole training state and the
metrics so far) every ``checkpoint_every`` steps, at the end and on Ctrl-C/SIGTERM; then ``metrics.csv``
(per step), ``evals.csv`` (per evaluation), ``samples.txt``, ``summary.json`` and ``<algorithm>.png``.
``--resume DIR`` continues from the newest checkpoint. Every method draws step ``s``'s data from
``(seed, s)`` alone, so a resumed run is the uninterrupted one.
"""

import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jax
import matplotlib
import numpy as np

from purerl.io.checkpoints import TRAIN_SECONDS, CheckpointError, RunCheckpoints, new_run_checkpoints
from purerl.io.config_io import (
    config_from_dict,
    config_to_dict,
    load_config_values,
    save_config,
    stored_config_differences,
)
from purerl.io.run import environment_info, input_differences
from purerl.io.stopping import DEFAULT_STOP_GRACE, Interrupted, NonFiniteError, StopSignals
from purerl.lm.evaluation import Evaluation
from purerl.lm.training import TrainingConfig

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class LMTrainer:
    """One training method as the driver sees it."""

    algorithm: str  # "sft", "rm", "dpo", "ppo", "grpo": names the files and the resume command
    config: TrainingConfig
    init_state: Any  # the training state before step 0 (a pytree of arrays)
    train_step: Callable[[Any, int], tuple[Any, dict[str, Any]]]  # (state, step) -> (state, metrics)
    evaluate: Callable[[Any, int], Evaluation]  # (state, step) -> Evaluation
    step_metrics: tuple[str, ...]  # the first is the loss: NaN stops the run; the first three are printed
    eval_metrics: tuple[str, ...]
    description: str  # one line printed at the start
    tokens_per_step: int  # for the progress line's throughput
    summary: dict[str, Any] = field(default_factory=dict)  # extra fields of summary.json
    inputs: dict[str, str] = field(default_factory=dict)  # what the run reads -> SHA-256 (lm_align.run_inputs)


def run_directory_values(out: Path, flag: str, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """The saved config of the ``purerl lm`` run in ``out`` (given as ``--flag``), which must be a run of one
    of ``algorithms``: one line naming the flag and what it got otherwise."""
    kinds = " or ".join(f"purerl lm {name}" for name in algorithms)
    if not (Path(out) / "config.json").is_file():
        raise ValueError(f"--{flag} {str(out)!r} is not a {kinds} run directory (no config.json in it)")
    values = load_config_values(Path(out) / "config.json")
    if values.get("_algorithm") not in algorithms:
        raise ValueError(f"--{flag} {str(out)!r} is a {values.get('_algorithm')} run, not a {kinds} run")
    return values


def load_lm_config(out: Path, algorithm: str, config_cls: type, flag: str = "resume") -> Any:
    """The config of the ``algorithm`` run in ``out`` (given as ``--flag``)."""
    return config_from_dict(config_cls, run_directory_values(out, flag, (algorithm,)))


def keep_samples(path: Path, last_step: int) -> None:
    """Keeps the samples of the evaluations up to ``last_step`` (those a resumed run restored; none for a run
    from step 0): a run killed after an evaluation and before its next checkpoint evaluates that step again."""
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if last_step and int(line.split("\t")[0][5:]) <= last_step))


def run_lm(
    trainer: LMTrainer,
    out: Path,
    resume: bool = False,
    stream: TextIO | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> dict[str, Any]:
    """Trains (or continues) ``trainer``'s run in ``out`` and writes its results; returns the summary. A stop
    signal saves after the running step, or exits after ``stop_grace`` seconds if the step does not end."""
    stream = sys.stderr if stream is None else stream
    config, algorithm = trainer.config, trainer.algorithm
    if resume:
        checkpoints = RunCheckpoints(out / "checkpoints", writer=True)
    else:
        checkpoints = new_run_checkpoints(out, f"purerl lm {algorithm} --resume {out}")
        save_config(config, out / "config.json", algorithm)
    meta = {"algorithm": algorithm, "config": config_to_dict(config), "inputs": trainer.inputs}
    state = trainer.init_state
    eval_columns = tuple(f"eval/{name}" for name in trainer.eval_metrics)  # apart from step metrics' names
    names = (*trainer.step_metrics, "eval_step", *eval_columns)
    history: dict[str, np.ndarray] = {name: np.zeros(0, np.float32) for name in names}
    first_step, restored_seconds = 0, 0.0
    latest = checkpoints.latest_step() if resume else None
    if latest is not None:
        stored = checkpoints.meta(latest)
        differences = stored_config_differences(stored.get("config"), config)
        if differences:
            raise CheckpointError(
                f"checkpoint {checkpoints.directory}/{latest} belongs to a run with another config: "
                + "; ".join(differences)
            )
        if "inputs" in stored:  # saved by purerl since it fingerprints an LM run's inputs
            changed = input_differences(trainer.inputs, stored["inputs"])
            if changed:
                raise CheckpointError(f"checkpoint {checkpoints.directory}/{latest} was saved by a run that read "
                                      "other inputs: " + "; ".join(changed))  # fmt: skip
        state, history, stored_meta = checkpoints.restore(latest, jax.eval_shape(lambda: state))
        restored_seconds = stored_meta.get(TRAIN_SECONDS)
        first_step = latest
        print(f"resuming at step {first_step} of {config.steps}", file=stream)
    elif resume:  # stopped before its first checkpoint (killed: a stop signal saves one), as control runs do
        print(f"{out} has no checkpoint yet: starting at step 0", file=stream)
    print(trainer.description, file=stream)
    evaluations = len(history.get("eval_step", ()))

    def restored(name: str) -> list[float]:
        """A metric the checkpoint lacks (saved before purerl reported it) is NaN for the restored steps or
        evaluations, so that every column keeps one value per row (its absence failed the resume)."""
        if name in history:
            return [float(x) for x in history[name]]
        return [float("nan")] * (first_step if name in trainer.step_metrics else evaluations)

    columns = {name: restored(name) for name in names}

    def save(step: int) -> None:
        """Saves ``step`` with the run's training seconds so far over all its processes (None if a checkpoint
        saved before purerl kept them was restored); at the last step, training ends there."""
        nonlocal train_end
        now = time.perf_counter()
        if step == config.steps:
            train_end = now
        here = 0.0 if train_start is None else now - train_start
        so_far = None if restored_seconds is None else restored_seconds + here
        history = {name: np.asarray(v, np.float32) for name, v in columns.items()}
        checkpoints.save(step, state, history, meta | {TRAIN_SECONDS: so_far})
        signals.last_saved = f"step {step} in {checkpoints.directory}"

    def record_eval(step: int, samples_file: TextIO) -> None:
        evaluation = trainer.evaluate(state, step)
        columns["eval_step"].append(step)
        for name in trainer.eval_metrics:  # float32, as checkpoints keep the history: a resumed run writes alike
            columns[f"eval/{name}"].append(float(np.float32(evaluation.metrics[name])))
        shown = "  ".join(f"{name} {evaluation.metrics[name]:+.3f}" for name in trainer.eval_metrics)
        print(f"step {step:>6}: eval {shown}", file=stream)
        for prompt, completion in evaluation.samples:
            print(f"    {prompt!r} -> {completion!r}", file=stream)
            samples_file.write(f"step {step}\t{prompt!r}\t{completion!r}\n")
        samples_file.flush()

    loss_name = trainer.step_metrics[0]
    compile_seconds, train_start, train_end, timed_steps = 0.0, None, None, 0
    keep_samples(out / "samples.txt", first_step)
    with StopSignals("the current step", stop_grace) as signals, (out / "samples.txt").open("a") as samples_file:
        if first_step:
            signals.last_saved = f"step {first_step} in {checkpoints.directory}"
        if first_step == 0:
            record_eval(0, samples_file)
        compile_start = time.perf_counter()
        for step in range(first_step, config.steps):
            state, metrics = trainer.train_step(state, step)
            metrics = jax.device_get(metrics)
            if not np.isfinite(metrics[loss_name]):
                raise NonFiniteError(f"non-finite {loss_name} at step {step}; the last good checkpoint is kept")
            for name in trainer.step_metrics:
                columns[name].append(float(metrics[name]))
            if train_start is None:  # the first step compiled; time the rest
                compile_seconds, train_start = time.perf_counter() - compile_start, time.perf_counter()
            else:
                timed_steps += 1
            done = step + 1
            if done % max(1, config.steps // 10) == 0 or done == config.steps:
                rate = timed_steps * trainer.tokens_per_step / max(time.perf_counter() - train_start, 1e-9)
                shown = "  ".join(f"{name} {float(metrics[name]):.4g}" for name in trainer.step_metrics[:3])
                print(f"step {done:>6}/{config.steps}  {shown}  {rate:,.0f} tokens/s", file=stream)
            if done % config.eval_every == 0 or done == config.steps:
                record_eval(done, samples_file)
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done != config.steps:
                save(done)
            if signals.received and done != config.steps:
                save(done)
                raise Interrupted(
                    f"{signals.received}: stopped after step {done}; saved a checkpoint in {out}", signals.signum
                )
    save(config.steps)
    train_seconds = 0.0 if train_start is None else train_end - train_start
    run_seconds = None if restored_seconds is None else restored_seconds + train_seconds
    summary = (
        {"algorithm": algorithm, "steps": config.steps, "resumed_from_step": first_step}
        | trainer.summary
        | {f"final_{name}": columns[name][-1] for name in trainer.step_metrics}
        | {
            "eval": {name: columns[f"eval/{name}"][-1] for name in trainer.eval_metrics},
            "eval_at_start": {name: columns[f"eval/{name}"][0] for name in trainer.eval_metrics},
            # this process's rate; none for a finished run evaluated again, which trained no step
            "tokens_per_second": timed_steps * trainer.tokens_per_step / train_seconds if timed_steps else None,
            "tokens_per_step": trainer.tokens_per_step,
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "run_train_seconds": run_seconds,
        }
        | environment_info()
    )
    write_outputs(out, summary, columns, trainer.step_metrics, trainer.eval_metrics)
    return summary


def write_csv(path: Path, columns: dict[str, list[float]], index: str, index_values: list[int]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([index, *columns])
        for row, value in enumerate(index_values):
            writer.writerow([value, *(columns[name][row] for name in columns)])


def write_outputs(
    out: Path,
    summary: dict,
    columns: dict[str, list[float]],
    step_metrics: tuple[str, ...],
    eval_metrics: tuple[str, ...],
) -> None:
    """``metrics.csv``, ``evals.csv``, ``summary.json`` and the plot; ``columns`` holds every step metric,
    ``eval_step`` and each eval metric as ``eval/<name>``."""
    algorithm, loss_name = summary["algorithm"], step_metrics[0]
    steps = list(range(1, len(columns[loss_name]) + 1))
    write_csv(out / "metrics.csv", {name: columns[name] for name in step_metrics}, "step", steps)
    eval_steps = [int(s) for s in columns["eval_step"]]
    write_csv(out / "evals.csv", {name: columns[f"eval/{name}"] for name in eval_metrics}, "step", eval_steps)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    fig, (loss_ax, eval_ax) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    loss_ax.plot(steps, columns[loss_name], linewidth=1.0)
    loss_ax.set(xlabel="step", ylabel=loss_name, title=f"{algorithm}: training")
    for name in eval_metrics:
        eval_ax.plot(eval_steps, columns[f"eval/{name}"], marker="o", label=name)
    eval_ax.set(xlabel="step", title=f"{summary.get('task', '')}: evaluation")
    eval_ax.legend(fontsize=8)
    for ax in (loss_ax, eval_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{algorithm}.png")
    plt.close(fig)
