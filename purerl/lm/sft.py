"""Supervised fine-tuning of the causal LM on a task's (imperfect) demonstrations.

Next-token cross-entropy on completion tokens only: the prompt is context, never a target, and ``<eos>``
is a target, so the model learns to stop. AdamW (decay on matrices only, as nanoGPT), linear warm-up then
cosine decay, global-norm clipping (``purerl.lm.training``). Batches are generated on the fly from
``rng([seed, step])``, so a run resumed at step ``s`` sees exactly the batches an uninterrupted run would.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import doc, in_range, one_of, optional, positive
from purerl.core.losses import masked_mean
from purerl.core.networks import COMPUTE_DTYPES
from purerl.core.optim import gradient_step
from purerl.core.streams import Streams, split_streams
from purerl.lm.model import POSITIONS, CausalLM, ModelConfig, forward_sequences, token_log_probs
from purerl.lm.tasks import TASKS, Task, make_task
from purerl.lm.tokenizer import Batch, CharTokenizer, completion_block_length, encode_batch, prompt_block_length
from purerl.lm.training import LMMethod, TrainingConfig, optimizer_and_schedule

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "n_layers": 2, "n_heads": 4},  # ~0.1M parameters: about a minute on 2 CPU cores
    "small": {"d_model": 384, "n_layers": 6, "n_heads": 6},  # ~10.7M (nanoGPT's Shakespeare-char size): a GPU
}


@dataclass(frozen=True)
class SFTConfig(TrainingConfig):
    task: str = doc("sentiment", f"toy task: {', '.join(TASKS)}", one_of(*TASKS))
    demo_quality: float | None = doc(
        None,
        "fraction of good demonstrations (right answers; positive words for sentiment); none: the task's default",
        optional(in_range(0.0, 1.0)),
    )
    preset: str = doc("tiny", f"model size: {', '.join(PRESETS)}", one_of(*PRESETS))
    positions: str = doc("learned", "position encoding: learned or rope", one_of(*POSITIONS))
    compute_dtype: str = doc(
        "float32",
        "matmul and activation dtype: float32, or bfloat16 (params, logits and losses stay float32; for a GPU: "
        "fewer bytes per layer; slower on a CPU)",
        one_of(*COMPUTE_DTYPES),
    )
    batch_size: int = doc(64, "demonstrations per step", positive)
    steps: int = doc(1000, "training steps (sentiment: 84% of the samples parse at 400, 98-99% at 1000)")

    @property
    def task_instance(self) -> Task:
        return make_task(self.task, self.demo_quality)


def model_config_for(config: SFTConfig, task: Task, tokenizer: CharTokenizer, scalar_head: str | None = None):
    """The ``ModelConfig`` of ``config.preset`` sized for ``task``'s prompt and completion blocks."""
    max_len = prompt_block_length(task.max_prompt_chars) + completion_block_length(task.max_completion_chars)
    return ModelConfig(
        tokenizer.vocab_size,
        max_len,
        positions=config.positions,
        compute_dtype=config.compute_dtype,
        scalar_head=scalar_head,
        **PRESETS[config.preset],
    )


class SFTState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array  # optimiser steps done
    streams: Streams  # the seed's random streams (purerl.core.streams): init, evaluation


def sft_loss(params, model: CausalLM, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean next-token cross-entropy over the valid completion tokens (``<eos>`` included) of the batch."""
    logits = forward_sequences(model, params, batch).logits
    nll = -token_log_probs(logits, batch.completion)
    accuracy = (jnp.argmax(logits, axis=-1) == batch.completion).astype(jnp.float32)
    loss = masked_mean(nll, batch.completion_mask)
    return loss, {"loss": loss, "token_accuracy": masked_mean(accuracy, batch.completion_mask)}


def make_sft(config: SFTConfig) -> LMMethod:
    """SFT as an ``LMMethod``: the state from the seed's key (parameters from its ``init`` stream), and
    ``update(state, batch)`` one jitted optimiser step on the batch ``sample`` draws for the step."""
    model = sft_model(config)
    optimizer, learning_rate = optimizer_and_schedule(config)
    streams = split_streams(jax.random.key(config.seed))
    tokens = jnp.zeros((1, model.config.max_len), jnp.int32)
    params = model.init(streams.init, tokens, tokens, jnp.ones(tokens.shape, bool))
    state = SFTState(params, optimizer.init(params), jnp.zeros((), jnp.int32), streams)
    task, tokenizer = config.task_instance, CharTokenizer()

    @jax.jit
    def update(state: SFTState, batch: Batch) -> tuple[SFTState, dict[str, jax.Array]]:
        params, opt_state, metrics = gradient_step(sft_loss, optimizer, state.params, state.opt_state, model, batch)
        metrics |= {"learning_rate": learning_rate(state.step)}
        return SFTState(params, opt_state, state.step + 1, state.streams), metrics

    def sample(state: SFTState, step: int) -> Batch:
        return demonstration_batch(config, task, tokenizer, step)

    def train_step(state: SFTState, step: int) -> tuple[SFTState, dict[str, jax.Array]]:
        return update(state, sample(state, step))

    return LMMethod(model, state, train_step, sample, update, policy=lambda state: state.params)


def demonstration_batch(config: SFTConfig, task: Task, tokenizer: CharTokenizer, step: int) -> Batch:
    """The batch of step ``step``: a pure function of ``(seed, step)``."""
    prompts, completions = task.demonstrations(np.random.default_rng([config.seed, step]), config.batch_size)
    return encode_batch(tokenizer, prompts, completions, task.max_prompt_chars, task.max_completion_chars)


def sft_model(config: SFTConfig, scalar_head: str | None = None) -> CausalLM:
    """The SFT run's model (with a ``scalar_head``, "value" or "reward", when one is asked for)."""
    return CausalLM(model_config_for(config, config.task_instance, CharTokenizer(), scalar_head))


def model_from_sft(config: SFTConfig, params, scalar_head: str | None = None, key: jax.Array | None = None):
    """``(model, params)``: the SFT run's model, with a fresh ``scalar_head`` ("value" or "reward"), drawn with
    ``key`` (a ``head`` stream), on top of its trained transformer when one is asked for (the critic and the
    reward model start from the policy)."""
    model = sft_model(config, scalar_head)
    if scalar_head is None:
        return model, params
    tokens = jnp.zeros((1, model.config.max_len), jnp.int32)
    if key is None:
        raise ValueError(f"a fresh {scalar_head} head needs a key (a seed's head stream)")
    fresh = model.init(key, tokens, tokens, jnp.ones(tokens.shape, bool))
    head = f"{scalar_head}_head"
    return model, {"params": params["params"] | {head: fresh["params"][head]}}
