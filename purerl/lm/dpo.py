"""Direct Preference Optimisation (Rafailov et al. 2023) on preference pairs, from the SFT policy.

The policy and the frozen reference both start as the SFT model. The reference's **summed** completion
log-probs of every pair are computed once, in one jitted pass, before training; each step then needs one
forward pass of the policy over the ``2B`` completions of ``B`` pairs. The loss and its variants (sigmoid
with cDPO label smoothing, IPO, hinge) are ``purerl.core.preference.dpo_loss``; the metrics carry TRL's
names. At the start the policy is the reference: the loss is ln 2 and every implicit reward is 0.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from purerl.core.config import doc, in_range, one_of, positive
from purerl.core.optim import gradient_step
from purerl.core.preference import DPO_LOSS_TYPES, dpo_loss
from purerl.core.streams import Streams, seed_streams
from purerl.lm.model import CausalLM, completion_log_probs
from purerl.lm.preference_data import load_pair_split, on_both_sides, step_pair_rows
from purerl.lm.sft import SFTConfig, model_from_sft
from purerl.lm.tokenizer import Batch
from purerl.lm.training import LMMethod, PairwiseConfig, optimizer_and_schedule

DPO_METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "grad_norm",
)


@dataclass(frozen=True)
class DPOConfig(PairwiseConfig):
    beta: float = doc(0.1, "DPO beta: the strength of the implicit KL to the reference", positive)
    loss_type: str = doc("sigmoid", f"loss: {', '.join(DPO_LOSS_TYPES)}", one_of(*DPO_LOSS_TYPES))
    label_smoothing: float = doc(
        0.0, "cDPO label smoothing: assumed probability that a label is flipped", in_range(0.0, 0.49)
    )
    steps: int = doc(200, "optimiser steps")
    learning_rate: float = doc(
        1e-5, "peak AdamW learning rate (sentiment, 3 seeds: 3e-5 and up break the grammar; experiments/lm/defaults.md)"
    )
    eval_every: int = doc(50, "evaluate every this many steps (and at the start and the end)")


class DPOState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array
    streams: Streams  # the seed's random streams (purerl.core.streams): evaluation


def summed_log_probs(model: CausalLM, params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """``(sum_t log pi(y_t | x, y_<t), number of tokens)`` per sequence, over the valid completion tokens."""
    return jnp.sum(completion_log_probs(model, params, batch), axis=-1), jnp.sum(batch.completion_mask, axis=-1)


def pair_log_probs(model: CausalLM, params, chosen: Batch, rejected: Batch):
    """``(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths)``, in one forward pass over the
    ``2B`` sequences."""
    sides = on_both_sides(lambda both: summed_log_probs(model, params, both), chosen, rejected)
    (chosen_logps, chosen_lengths), (rejected_logps, rejected_lengths) = sides
    return chosen_logps, rejected_logps, chosen_lengths, rejected_lengths


def dpo_objective(params, model: CausalLM, config: DPOConfig, chosen: Batch, rejected: Batch, ref_logps):
    chosen_logps, rejected_logps, chosen_lengths, rejected_lengths = pair_log_probs(model, params, chosen, rejected)
    losses, metrics = dpo_loss(
        chosen_logps,
        rejected_logps,
        *ref_logps,
        config.beta,
        config.loss_type,
        config.label_smoothing,
        chosen_lengths,
        rejected_lengths,
    )
    loss = jnp.mean(losses)
    return loss, metrics | {"loss": loss}


def make_dpo(config: DPOConfig, sft_config: SFTConfig, sft_params) -> LMMethod:
    """DPO as an ``LMMethod``: ``sample(state, step)`` draws ``batch_size`` pairs from ``rng([seed, step])``
    with the reference's log-probs (computed once, before training), ``update(state, chosen, rejected,
    ref_logps)`` takes one optimiser step, and ``evaluate(state)`` gives the DPO metrics on the held-out
    pairs (``held_out/<name>``) and their ``preference_accuracy`` (the implicit reward margin's sign against
    the labels)."""
    model, _ = model_from_sft(sft_config, sft_params)
    task = sft_config.task_instance
    pairs = load_pair_split(config.pairs, config.held_out_fraction, config.seed, task)
    reference = jax.jit(lambda chosen, rejected: pair_log_probs(model, sft_params, chosen, rejected)[:2])
    train_ref, held_out_ref = reference(*pairs.train), reference(*pairs.held_out)  # once, before training
    optimizer, learning_rate = optimizer_and_schedule(config)
    state = DPOState(sft_params, optimizer.init(sft_params), jnp.zeros((), jnp.int32), seed_streams(config.seed))

    @jax.jit
    def update(state: DPOState, chosen: Batch, rejected: Batch, ref_logps):
        params, opt_state, metrics = gradient_step(
            dpo_objective, optimizer, state.params, state.opt_state, model, config, chosen, rejected, ref_logps
        )
        metrics |= {"learning_rate": learning_rate(state.step)}
        return DPOState(params, opt_state, state.step + 1, state.streams), metrics

    def sample(state: DPOState, step: int):
        rows = step_pair_rows(config.seed, step, len(pairs.train_rows), config.batch_size)
        return jax.tree.map(lambda x: x[rows], (*pairs.train, train_ref))

    def train_step(state: DPOState, step: int):
        return update(state, *sample(state, step))

    held_out = jax.jit(lambda params: dpo_objective(params, model, config, *pairs.held_out, held_out_ref)[1])

    def evaluate(state: DPOState) -> dict[str, float]:
        metrics = {f"held_out/{name}": float(value) for name, value in held_out(state.params).items()}
        return metrics | {"preference_accuracy": metrics["held_out/rewards/accuracies"]}

    return LMMethod(model, state, train_step, sample, update, policy=lambda state: state.params, evaluate=evaluate)
