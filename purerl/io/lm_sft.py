"""``purerl lm sft``: a supervised fine-tuning run in a directory, with progress, checkpoints and results.

The directory gets ``config.json`` at the start, orbax checkpoints (params, optimiser state, step, RNG key,
and the metrics so far) every ``checkpoint_every`` steps, at the end and on Ctrl-C/SIGTERM, then
``metrics.csv`` (per step), ``evals.csv`` (per evaluation), ``samples.txt``, ``summary.json`` and
``sft.png``. ``--resume DIR`` continues from the newest checkpoint; because every batch is a function of
``(seed, step)``, the resumed run is the uninterrupted one.
"""

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import jax
import matplotlib
import numpy as np

from purerl.io.checkpoints import CheckpointError, RunCheckpoints
from purerl.io.chunked import Interrupted, NonFiniteError, StopSignals
from purerl.io.config_io import config_from_dict, config_to_dict, load_config_values, save_config
from purerl.io.run import environment_info, new_run_checkpoints
from purerl.lm.model import count_params
from purerl.lm.sft import SFTConfig, demonstration_batch, make_evaluate, make_sft
from purerl.lm.tokenizer import CharTokenizer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STEP_METRICS = ("loss", "token_accuracy", "grad_norm", "learning_rate")
EVAL_METRICS = ("reward", "validity", "accuracy")


def start_sft_dir(out: Path, config: SFTConfig) -> RunCheckpoints:
    checkpoints = new_run_checkpoints(out, f"purerl lm sft --resume {out}")
    save_config(config, out / "config.json", "sft")
    return checkpoints


def load_sft_config(out: Path) -> SFTConfig:
    values = load_config_values(out / "config.json")
    if values.get("_algorithm") != "sft":
        raise ValueError(f"--resume {str(out)!r} is not an SFT run directory (its config.json is not an SFT config)")
    return config_from_dict(SFTConfig, values)


def run_sft(config: SFTConfig, out: Path, resume: bool = False, stream: TextIO | None = None) -> dict[str, Any]:
    """Trains (or continues) the run in ``out`` and writes its results; returns the summary."""
    stream = sys.stderr if stream is None else stream
    checkpoints = RunCheckpoints(out / "checkpoints") if resume else start_sft_dir(out, config)
    model, init, step_fn = make_sft(config)
    task, tokenizer = config.task_instance, CharTokenizer()
    evaluate = make_evaluate(config, model)
    meta = {"algorithm": "sft", "config": config_to_dict(config)}

    state = init(jax.random.key(config.seed))
    history: dict[str, np.ndarray] = {
        name: np.zeros(0, np.float32) for name in (*STEP_METRICS, "eval_step", *EVAL_METRICS)
    }
    first_step = 0
    if resume:
        latest = checkpoints.latest_step()
        if latest is None:
            raise CheckpointError(f"--resume {out}: no checkpoint to resume from")
        state, history, saved_meta = checkpoints.restore(latest, jax.eval_shape(lambda: state))
        if saved_meta.get("config") != meta["config"]:
            raise CheckpointError(f"checkpoint {checkpoints.directory}/{latest} belongs to a run with another config")
        first_step = latest
        print(f"resuming at step {first_step} of {config.steps}", file=stream)

    total, non_embedding = count_params(state.params)
    tokens_per_step = config.batch_size * model.config.max_len
    print(
        f"SFT on {config.task}: {config.preset} model, {total:,} parameters ({non_embedding:,} non-embedding), "
        f"{config.steps} steps x {config.batch_size} sequences of {model.config.max_len} tokens",
        file=stream,
    )
    step_metrics = {name: [float(x) for x in history[name]] for name in STEP_METRICS}
    evals = {name: [float(x) for x in history[name]] for name in ("eval_step", *EVAL_METRICS)}

    def save(step: int) -> None:
        saved = {name: np.asarray(values, np.float32) for name, values in (step_metrics | evals).items()}
        checkpoints.save(step, state, saved, meta)

    def record_eval(step: int, samples_file: TextIO) -> None:
        evaluation = evaluate(state.params, jax.random.fold_in(state.key, step))
        evals["eval_step"].append(step)
        for name in EVAL_METRICS:
            evals[name].append(getattr(evaluation, name))
        print(
            f"step {step:>6}: eval reward {evaluation.reward:+.3f}  valid {evaluation.validity:.1%}  "
            f"accuracy {evaluation.accuracy:.1%}",
            file=stream,
        )
        for prompt, completion in evaluation.samples:
            print(f"    {prompt!r} -> {completion!r}", file=stream)
            samples_file.write(f"step {step}\t{prompt!r}\t{completion!r}\n")
        samples_file.flush()

    compile_seconds, train_start, timed_steps = 0.0, None, 0
    with StopSignals("the current step") as signals, (out / "samples.txt").open("a") as samples_file:
        if first_step == 0:
            record_eval(0, samples_file)
        compile_start = time.perf_counter()
        for step in range(first_step, config.steps):
            batch = demonstration_batch(config, task, tokenizer, step)
            state, metrics = step_fn(state, batch)
            metrics = jax.device_get(metrics)
            if not np.isfinite(metrics["loss"]):
                raise NonFiniteError(f"non-finite loss at step {step}; the last good checkpoint is kept")
            for name in STEP_METRICS:
                step_metrics[name].append(float(metrics[name]))
            if train_start is None:  # the first step compiled; time the rest
                compile_seconds, train_start = time.perf_counter() - compile_start, time.perf_counter()
            else:
                timed_steps += 1
            done = step + 1
            if done % max(1, config.steps // 10) == 0 or done == config.steps:
                rate = timed_steps * tokens_per_step / max(time.perf_counter() - train_start, 1e-9)
                print(
                    f"step {done:>6}/{config.steps}  loss {metrics['loss']:.4f}  "
                    f"lr {metrics['learning_rate']:.2e}  {rate:,.0f} tokens/s",
                    file=stream,
                )
            if done % config.eval_every == 0 or done == config.steps:
                record_eval(done, samples_file)
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done != config.steps:
                save(done)
            if signals.received and done != config.steps:
                save(done)
                raise Interrupted(f"{signals.received}: stopped after step {done}; saved a checkpoint in {out}")
    save(config.steps)
    train_seconds = 0.0 if train_start is None else time.perf_counter() - train_start
    summary = {
        "algorithm": "sft",
        "task": config.task,
        "preset": config.preset,
        "parameters": total,
        "non_embedding_parameters": non_embedding,
        "steps": config.steps,
        "resumed_from_step": first_step,
        "final_loss": step_metrics["loss"][-1],
        "final_token_accuracy": step_metrics["token_accuracy"][-1],
        "eval": {name: evals[name][-1] for name in EVAL_METRICS},
        "eval_at_start": {name: evals[name][0] for name in EVAL_METRICS},
        "eval_protocol": f"{config.eval_prompts} prompts from a separate rng stream (not guaranteed disjoint from "
        f"the training prompts: some tasks have few), sampled at temperature {config.eval_temperature}",
        "tokens_per_second": timed_steps * tokens_per_step / max(train_seconds, 1e-9),
        "tokens_per_step": tokens_per_step,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
    } | environment_info()
    write_sft_outputs(out, summary, step_metrics, evals)
    return summary


def write_csv(path: Path, columns: dict[str, list[float]], index: str, index_values: list[int]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([index, *columns])
        for row, value in enumerate(index_values):
            writer.writerow([value, *(columns[name][row] for name in columns)])


def write_sft_outputs(out: Path, summary: dict, step_metrics: dict[str, list], evals: dict[str, list]) -> None:
    steps = list(range(1, len(step_metrics["loss"]) + 1))
    write_csv(out / "metrics.csv", step_metrics, "step", steps)
    write_csv(
        out / "evals.csv", {name: evals[name] for name in EVAL_METRICS}, "step", [int(s) for s in evals["eval_step"]]
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    fig, (loss_ax, eval_ax) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    loss_ax.plot(steps, step_metrics["loss"], linewidth=1.0)
    loss_ax.set(xlabel="step", ylabel="completion cross-entropy", yscale="log", title="training loss")
    for name in EVAL_METRICS:
        eval_ax.plot(evals["eval_step"], evals[name], marker="o", label=name)
    eval_ax.set(xlabel="step", title=f"{summary['task']}: evaluation ({summary['eval_protocol'].split(' from')[0]})")
    eval_ax.legend(fontsize=8)
    for ax in (loss_ax, eval_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "sft.png")
    plt.close(fig)
