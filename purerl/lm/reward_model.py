"""A Bradley-Terry reward model: the SFT transformer with a scalar head read at the last real token.

Loss ``-log sigmoid(r(x, y_w) - r(x, y_l) - margin)`` plus an optional centring term
(``purerl.core.preference.bradley_terry_loss``). The head starts ``N(0, 1/sqrt(d_model + 1))``
(lm-human-preferences); the transformer starts from the SFT policy. Evaluated on held-out pairs: accuracy
against the labels it was given (which may be noisy), ``true_accuracy`` against the task's ground-truth
order, and the correlation of its score with the ground-truth reward over the held-out completions.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import doc, non_negative, positive
from purerl.core.optim import gradient_step
from purerl.core.preference import bradley_terry_loss
from purerl.core.spread import range_has_spread
from purerl.core.streams import NUMPY_REFERENCE_STREAM, seed_streams, step_key
from purerl.lm.model import CausalLM
from purerl.lm.preference_data import load_pair_split, on_both_sides, step_pair_rows
from purerl.lm.rollout import last_token_scores, make_rollout
from purerl.lm.sft import SFTConfig, model_from_sft
from purerl.lm.tokenizer import Batch
from purerl.lm.training import LMMethod, PairwiseConfig, optimizer_and_schedule

REWARD_MODEL_METRICS = ("loss", "accuracy", "margin", "mean_reward", "grad_norm")
REWARD_MODEL_EVAL_METRICS = ("accuracy", "true_accuracy", "reward_correlation", "sft_score_mean", "sft_score_std")


@dataclass(frozen=True)
class RewardModelConfig(PairwiseConfig):
    margin: float = doc(0.0, "Bradley-Terry margin")
    center_coef: float = doc(
        0.0, "centring coefficient (TRL's center_rewards_coefficient; 0.01 recommended)", non_negative
    )
    steps: int = doc(300, "optimiser steps")
    learning_rate: float = doc(1e-3, "peak AdamW learning rate")
    eval_every: int = doc(100, "evaluate on the held-out pairs every this many steps")
    reference_prompts: int = doc(
        512, "SFT samples whose score mean and std each evaluation reports (what --normalize-reward uses)", positive
    )
    eval_prompts: int = doc(
        256, "unused: a reward model is evaluated on its held-out pairs and reference_prompts", positive
    )
    eval_temperature: float = doc(
        1.0, "unused: the SFT samples of reference_prompts are drawn at temperature 1", positive
    )
    samples_shown: int = doc(0, "unused: a reward model writes no samples", non_negative)


class RewardModelState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array


def sequence_rewards(model: CausalLM, params, chosen: Batch, rejected: Batch) -> tuple[jax.Array, jax.Array]:
    """Scores of both sides of each pair, in one forward pass over the ``2B`` sequences."""
    return on_both_sides(lambda both: last_token_scores(model, params, both), chosen, rejected)


def reward_model_loss(params, model: CausalLM, config: RewardModelConfig, chosen: Batch, rejected: Batch):
    chosen_rewards, rejected_rewards = sequence_rewards(model, params, chosen, rejected)
    loss, metrics = bradley_terry_loss(chosen_rewards, rejected_rewards, config.margin, config.center_coef)
    loss = jnp.mean(loss)
    return loss, metrics | {"loss": loss}


def reward_model_start(
    config: RewardModelConfig, sft_config: SFTConfig, sft_params, head_key: jax.Array
) -> tuple[CausalLM, RewardModelState]:
    """The model and its state before training: the SFT transformer with a fresh reward head drawn with
    ``head_key`` (the ``head`` stream of the run's seed)."""
    model, params = model_from_sft(sft_config, sft_params, "reward", head_key)
    return model, RewardModelState(params, optimizer_and_schedule(config)[0].init(params), jnp.zeros((), jnp.int32))


def pearson_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two samples; NaN when either has no spread (``purerl.core.spread``): r is undefined."""
    if not (range_has_spread(x) and range_has_spread(y)):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def make_reward_model(config: RewardModelConfig, sft_config: SFTConfig, sft_params) -> LMMethod:
    """The reward model as an ``LMMethod`` over the pairs in ``config.pairs``: ``sample(state, step)`` draws
    ``batch_size`` training pairs from ``rng([seed, step])``, ``update(state, chosen, rejected)`` takes one
    optimiser step, and ``evaluate(state)`` scores the held-out pairs (accuracy against the labels and against
    the true rewards, Pearson correlation with the true rewards) and reports the mean and std of its scores on
    ``reference_prompts`` completions the SFT policy samples at temperature 1 (drawn once, from the ``pairs``
    stream). It trains no policy."""
    task, streams = sft_config.task_instance, seed_streams(config.seed)
    model, state = reward_model_start(config, sft_config, sft_params, streams.head)
    pairs = load_pair_split(config.pairs, config.held_out_fraction, config.seed, task)
    true_order = np.array([not row["flipped"] for row in pairs.held_out_rows])  # chosen really is the better one
    true_rewards = np.array([[row["chosen_reward"], row["rejected_reward"]] for row in pairs.held_out_rows]).T.ravel()
    optimizer, learning_rate = optimizer_and_schedule(config)

    @jax.jit
    def update(state: RewardModelState, chosen: Batch, rejected: Batch):
        params, opt_state, metrics = gradient_step(
            reward_model_loss, optimizer, state.params, state.opt_state, model, config, chosen, rejected
        )
        metrics |= {"learning_rate": learning_rate(state.step)}
        return RewardModelState(params, opt_state, state.step + 1), metrics

    def sample(state: RewardModelState, step: int) -> tuple[Batch, Batch]:
        rows = step_pair_rows(config.seed, step, len(pairs.train_rows), config.batch_size)
        return jax.tree.map(lambda x: x[rows], pairs.train)

    def train_step(state: RewardModelState, step: int):
        return update(state, *sample(state, step))

    score_pairs = jax.jit(lambda params: sequence_rewards(model, params, *pairs.held_out))
    # The SFT policy's samples, drawn once: the scale a policy trained on this model sees at its start.
    policy, _ = model_from_sft(sft_config, sft_params)
    prompts = task.prompts(np.random.default_rng([config.seed, NUMPY_REFERENCE_STREAM]), config.reference_prompts)
    reference = make_rollout(task, policy, 1.0)(sft_params, prompts, step_key(streams.pairs, 0)).batch
    score_reference = jax.jit(lambda params: last_token_scores(model, params, reference))

    def evaluate(state: RewardModelState) -> dict[str, float]:
        chosen, rejected = (np.asarray(x) for x in score_pairs(state.params))
        prefers_chosen = chosen > rejected
        scores = np.concatenate([chosen, rejected])
        reference_scores = np.asarray(score_reference(state.params), np.float64)
        return {
            "accuracy": float(np.mean(prefers_chosen)),
            "true_accuracy": float(np.mean(prefers_chosen == true_order)),
            "reward_correlation": pearson_correlation(scores, true_rewards),
            "sft_score_mean": float(np.mean(reference_scores)),
            "sft_score_std": float(np.std(reference_scores)),
        }

    return LMMethod(model, state, train_step, sample, update, evaluate=evaluate)
