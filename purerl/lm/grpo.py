"""GRPO for language models (Shao et al. 2024, DeepSeekMath), on the toy tasks: no critic.

One training step:
1. Sample ``group_size`` completions for each of ``prompts_per_step`` prompts at ``temperature``.
2. Score each (task reward or reward model; optional missing-EOS penalty) and give every token of a
   completion its group-relative advantage (``purerl.core.group_advantages``): ``(R - mean) / std`` over
   the group, or only ``R - mean`` (``advantage_scale="none"``, Dr. GRPO).
3. ``epochs`` x ``minibatches`` steps of the clipped surrogate (``clip_eps_high`` for DAPO's clip-higher)
   plus ``beta`` x a per-token KL to the SFT reference by a chosen estimator (k3 by default, as the paper;
   ``beta = 0`` drops the term, as TRL's default, but the KL is still measured), aggregated by ``loss_aggregation``
   (grpo: per-sequence means; dapo: token mean; dr_grpo: sum over a constant).
Reported: the fraction of groups whose completions all scored the same (they give no gradient) and the
fraction of unique completions per group.

Defaults: beta 0.1 and unscaled advantages (Dr. GRPO, Liu et al. 2025), not the paper's 0.04 and ``std``. On
``sentiment`` (3 seeds, ``experiments/lm/learned_reward.md``) they equal the paper's on the task's reward (0.88
task reward / 93% validity against 0.90 / 93%) and hold on a learned reward model, where the paper's settings
chase what the reward model ranks first in each group (0.60 / 56%, 1 seed of 3 at 85% validity; these: 0.86 / 90%,
3 of 3).
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import at_least, doc, non_negative, one_of, optional, positive
from purerl.core.group_advantages import ADVANTAGE_SCALES, group_advantages, zero_spread_fraction
from purerl.core.kl import KL_LOSS_ESTIMATOR_HELP, kl_estimate, require_loss_estimator
from purerl.core.losses import LOSS_AGGREGATIONS, aggregate_loss, clipped_surrogate_loss, masked_mean
from purerl.core.minibatch import minibatch_epochs
from purerl.core.optim import optimizer_step
from purerl.core.streams import Streams, seed_streams
from purerl.lm.model import CausalLM, completion_log_probs
from purerl.lm.rollout import Rollout, Scorer, ends_with_eos, make_collect, make_rollout
from purerl.lm.sft import SFTConfig, model_from_sft
from purerl.lm.tokenizer import Batch
from purerl.lm.training import LMMethod, PolicyGradientConfig, optimizer_and_schedule

GRPO_METRICS = (
    "loss",
    "score",
    "task_reward",
    "kl",
    "clip_fraction",
    "ratio",
    "zero_spread_fraction",
    "unique_per_group",
    "eos_fraction",
    "completion_length",
    "grad_norm",
)


@dataclass(frozen=True)
class LMGRPOConfig(PolicyGradientConfig):
    prompts_per_step: int = doc(16, "prompts per rollout", positive)
    group_size: int = doc(8, "completions sampled per prompt (G)", at_least(2, "(a group of one has no spread)"))
    clip_eps_high: float | None = doc(None, "high side of the clip (DAPO: 0.28); none: clip_eps", optional(positive))
    beta: float = doc(0.1, "KL-to-reference coefficient (0: no KL term; the paper: 0.04)", non_negative)
    kl_estimator: str = doc("k3", KL_LOSS_ESTIMATOR_HELP, require_loss_estimator)
    advantage_scale: str = doc(
        "none",
        "group advantage: none (Dr. GRPO: R - mean) or std ((R - mean) / std, the paper's)",
        one_of(*ADVANTAGE_SCALES),
    )
    loss_aggregation: str = doc(
        "grpo", f"token aggregation of the loss: {', '.join(LOSS_AGGREGATIONS)}", one_of(*LOSS_AGGREGATIONS)
    )

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size


class LMGRPOState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array
    streams: Streams  # the seed's random streams: step s samples with fold_in(rollout, s) (purerl.core.streams)


class GroupExperience(NamedTuple):
    batch: Batch
    old_log_probs: jax.Array  # [B, C]
    ref_log_probs: jax.Array  # [B, C]
    advantages: jax.Array  # [B]: one per completion, shared by its tokens


def grpo_objective(params, model: CausalLM, config: LMGRPOConfig, exp: GroupExperience):
    mask = exp.batch.completion_mask
    log_probs = completion_log_probs(model, params, exp.batch, config.temperature)
    log_ratio = (log_probs - exp.old_log_probs) * mask
    advantages = jnp.broadcast_to(exp.advantages[:, None], log_ratio.shape)
    per_token, clipped = clipped_surrogate_loss(log_ratio, advantages, config.clip_eps, config.clip_eps_high)
    kl = kl_estimate((exp.ref_log_probs - log_probs) * mask, config.kl_estimator)
    if config.beta > 0:
        per_token = per_token + config.beta * kl
    loss = aggregate_loss(per_token, mask, config.loss_aggregation, horizon=mask.shape[1], time_axis=1)
    return loss, {
        "loss": loss,
        "kl": masked_mean(kl, mask),
        "clip_fraction": masked_mean(clipped, mask),
        "ratio": masked_mean(jnp.exp(log_ratio), mask),
    }


def unique_per_group(completions: list[str], group_size: int) -> float:
    """Mean over groups of (distinct completions / group size)."""
    groups = [completions[i : i + group_size] for i in range(0, len(completions), group_size)]
    return float(np.mean([len(set(group)) / group_size for group in groups]))


def make_lm_grpo(config: LMGRPOConfig, sft_config: SFTConfig, sft_params, scorer: Scorer | None) -> LMMethod:
    """``train_step(state, step) -> (state, metrics)`` samples the groups of ``(seed, step)``, scores them
    with ``scorer`` (None: the task's reward) and runs the update epochs."""
    task = sft_config.task_instance
    model, _ = model_from_sft(sft_config, sft_params)
    rollout = make_rollout(task, model, config.temperature, scorer, config.missing_eos_penalty)
    optimizer, learning_rate = optimizer_and_schedule(config)
    state = LMGRPOState(sft_params, optimizer.init(sft_params), jnp.zeros((), jnp.int32), seed_streams(config.seed))

    @jax.jit
    def update(state: LMGRPOState, batch: Batch, scores: jax.Array, key: jax.Array):
        old_log_probs = completion_log_probs(model, state.params, batch, config.temperature)
        ref_log_probs = completion_log_probs(model, sft_params, batch, config.temperature)
        grouped = scores.reshape(config.prompts_per_step, config.group_size)
        advantages = group_advantages(grouped, scale=config.advantage_scale).reshape(-1)
        experience = GroupExperience(batch, old_log_probs, ref_log_probs, advantages)
        step = optimizer_step(lambda params, exp: grpo_objective(params, model, config, exp), optimizer)
        (params, opt_state), stats, _ = minibatch_epochs(
            step, (state.params, state.opt_state), experience, key, config.epochs, config.minibatches
        )
        metrics = {name: jnp.mean(value) for name, value in stats.items()}
        metrics |= {
            "score": jnp.mean(scores),
            "zero_spread_fraction": zero_spread_fraction(grouped),
            "eos_fraction": jnp.mean(ends_with_eos(batch).astype(jnp.float32)),
            "completion_length": jnp.mean(jnp.sum(batch.completion_mask, axis=-1).astype(jnp.float32)),
            "learning_rate": learning_rate(state.step * config.updates_per_step),
        }
        return LMGRPOState(params, opt_state, state.step + 1, state.streams), metrics

    sample = make_collect(rollout, task, config.seed, config.prompts_per_step, config.group_size)

    def collect(state: LMGRPOState, step: int) -> tuple[Rollout, jax.Array]:
        return sample(state.params, state.streams, step)

    def train_step(state: LMGRPOState, step: int):
        result, update_key = collect(state, step)
        state, metrics = update(state, result.batch, jnp.asarray(result.scores), update_key)
        return state, metrics | {
            "task_reward": float(np.mean(result.task_rewards)),
            "unique_per_group": unique_per_group(result.completions, config.group_size),
        }

    return LMMethod(model, state, train_step, collect, update, policy=lambda state: state.params)
