"""On-policy rollouts for the RL methods (PPO, GRPO) and the preference data: a step's prompts, sampled
completions, and their scores.

Sampling runs jitted on the device; the task's reward is plain Python over the decoded strings (the
tasks' verifiable rewards), a reward model's score runs jitted. Completions are cut at the first ``<eos>``;
one that never emits it runs to the block's end and may be penalised (``missing_eos_penalty``, TRL's "EOS
trick").
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.streams import Streams, step_key
from purerl.lm.model import CausalLM, forward_sequences
from purerl.lm.sampling import SamplingConfig, make_generate
from purerl.lm.tasks import Task
from purerl.lm.tokenizer import EOS, Batch, CharTokenizer, completion_block_length, encode_prompts

Scorer = Callable[[list[str], list[str], Batch], np.ndarray]  # (prompts, completions, batch) -> [B] scores


class Rollout(NamedTuple):
    batch: Batch  # prompts and sampled completions; completion_mask covers up to and including the first <eos>
    log_probs: jax.Array  # [B, C] of the sampled tokens at the sampling temperature (0 where masked)
    scores: np.ndarray  # [B] float32: what the policy is trained on (task reward or reward model, EOS penalty)
    task_rewards: np.ndarray  # [B] float32: the task's verifiable reward, always reported
    prompts: list[str]
    completions: list[str]


def step_prompts(task: Task, seed: int, step: int, n: int) -> list[str]:
    """The prompts of training step ``step``: a pure function of ``(seed, step)``."""
    return task.prompts(np.random.default_rng([seed, step]), n)


def make_collect(
    rollout: Callable[[object, list[str], jax.Array], Rollout],
    task: Task,
    seed: int,
    prompts_per_step: int,
    group_size: int = 1,
) -> Callable[[object, Streams, int], tuple[Rollout, jax.Array]]:
    """``collect(params, streams, step) -> (rollout, update_key)`` of training step ``step`` (PPO and GRPO):
    the prompts of ``(seed, step)``, each ``group_size`` times in a row, sampled with the step's key of the
    ``rollout`` stream; ``update_key`` is the step's key of the ``minibatch`` stream (``purerl.core.streams``)."""

    def collect(params, streams: Streams, step: int):
        prompts = [p for p in step_prompts(task, seed, step, prompts_per_step) for _ in range(group_size)]
        return rollout(params, prompts, step_key(streams.rollout, step)), step_key(streams.minibatch, step)

    return collect


def ends_with_eos(batch: Batch) -> jax.Array:
    """``[B]`` bool: the completion emitted ``<eos>`` inside its block."""
    return jnp.any((batch.completion == EOS) & batch.completion_mask, axis=-1)


def last_token_scores(model: CausalLM, params, batch: Batch) -> jax.Array:
    """``[B]``: the scalar head at each completion's last real token (its ``<eos>``, or the block's last
    token when it never stopped): the reward-model convention of lm-human-preferences."""
    scalar = forward_sequences(model, params, batch).scalar  # [B, C + 1]; slot j + 1 is *at* token j
    last = jnp.sum(batch.completion_mask, axis=-1)
    return jnp.sum(scalar * jax.nn.one_hot(last, scalar.shape[-1], dtype=scalar.dtype), axis=-1)  # no scatter


def reward_model_scorer(model: CausalLM, params) -> Scorer:
    score = jax.jit(lambda batch: last_token_scores(model, params, batch))
    return lambda prompts, completions, batch: np.asarray(score(batch), np.float32)


def make_rollout(
    task: Task,
    model: CausalLM,
    temperature: float,
    scorer: Scorer | None = None,
    missing_eos_penalty: float | None = None,
) -> Callable[[object, list[str], jax.Array], Rollout]:
    """``rollout(params, prompts, key) -> Rollout``: one completion per prompt (repeat prompts for groups).
    ``scorer`` None scores with the task's verifiable reward."""
    tokenizer = CharTokenizer()
    generate = make_generate(
        model, SamplingConfig(completion_block_length(task.max_completion_chars), temperature=temperature)
    )

    def rollout(params, prompts: list[str], key: jax.Array) -> Rollout:
        prompt, prompt_mask = encode_prompts(tokenizer, prompts, task.max_prompt_chars)
        generation = generate(params, prompt, prompt_mask, key)
        batch = Batch(jnp.asarray(prompt), jnp.asarray(prompt_mask), generation.tokens, generation.mask)
        completions = [tokenizer.decode(row) for row in np.asarray(generation.tokens)]
        task_rewards = task.rewards(prompts, completions).astype(np.float32)
        scores = task_rewards if scorer is None else scorer(prompts, completions, batch)
        if missing_eos_penalty is not None:
            scores = scores - missing_eos_penalty * ~np.asarray(ends_with_eos(batch))
        return Rollout(batch, generation.log_probs, scores.astype(np.float32), task_rewards, prompts, completions)

    return rollout
