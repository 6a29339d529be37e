"""``purerl lm sft``: supervised fine-tuning as an ``LMTrainer`` for the shared run driver."""

from pathlib import Path
from typing import Any, TextIO

from purerl.core.streams import step_key
from purerl.io.lm_run import LMTrainer, load_lm_config, run_lm
from purerl.io.stopping import DEFAULT_STOP_GRACE
from purerl.lm.evaluation import POLICY_METRICS, make_evaluate
from purerl.lm.model import count_params
from purerl.lm.sft import SFTConfig, make_sft


def sft_trainer(config: SFTConfig) -> LMTrainer:
    method = make_sft(config)
    model = method.model
    evaluate = make_evaluate(
        config.task_instance, model, config.eval_prompts, config.seed, config.eval_temperature, config.samples_shown
    )
    total, non_embedding = count_params(method.state.params)
    return LMTrainer(
        algorithm="sft",
        config=config,
        init_state=method.state,
        train_step=method.train_step,
        evaluate=lambda state, step: evaluate(method.policy(state), step_key(state.streams.evaluation, step)),
        step_metrics=("loss", "token_accuracy", "grad_norm", "learning_rate"),
        eval_metrics=POLICY_METRICS,
        description=f"SFT on {config.task}: {config.preset} model, {total:,} parameters ({non_embedding:,} "
        f"non-embedding), {config.steps} steps x {config.batch_size} sequences of {model.config.max_len} tokens",
        tokens_per_step=config.batch_size * model.config.max_len,
        summary={
            "task": config.task,
            "preset": config.preset,
            "parameters": total,
            "non_embedding_parameters": non_embedding,
            "eval_protocol": f"{config.eval_prompts} prompts from a separate rng stream (not guaranteed disjoint "
            f"from the training prompts: some tasks have few), sampled at temperature {config.eval_temperature}",
        },
    )


def load_sft_config(out: Path) -> SFTConfig:
    return load_lm_config(out, "sft", SFTConfig)


def run_sft(
    config: SFTConfig,
    out: Path,
    resume: bool = False,
    stream: TextIO | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> dict[str, Any]:
    """Trains (or continues) the SFT run in ``out`` and writes its results; returns the summary."""
    return run_lm(sft_trainer(config), out, resume, stream, stop_grace)
