"""KL-penalised PPO for language models (RLHF; Ziegler et al. 2019, Ouyang et al. 2022), on the toy tasks.

One training step, following "The N Implementation Details of RLHF with PPO" (checklist numbers in
``shared/reference/lm-anchors.md`` (c)):
1. Sample one completion per prompt from the policy at ``temperature`` (no top-k/top-p), cut at ``<eos>``.
2. Score it: the task's verifiable reward, or a trained reward model at the last token (7); optionally
   ``missing_eos_penalty`` off the score of completions that never stopped (13).
3. Per-token reward ``r_t = -beta * (log pi_old - log pi_ref)`` (k1, detached), plus the score at the last
   token (16). Every log-prob divides the logits by the sampling temperature (10).
4. Values from a separate critic (the SFT transformer with a zero-initialised value head (11)), read before
   each token; GAE with gamma = 1, lambda = 0.95 through ``purerl.gae`` (14); advantages whitened over the
   batch's valid tokens (17).
5. ``epochs`` x ``minibatches`` steps of clipped surrogate + ``vf_coef`` x clipped value loss (18), token
   means over valid tokens (21), one AdamW over policy and critic.
6. Optionally the adaptive KL controller (19): ``beta <- beta (1 + clip(KL / target - 1, +-0.2) B / horizon)``.
The old log-probs are recomputed by the trainer's full forward pass, so at the first minibatch the ratio is
exactly 1, the approximate KL 0 and nothing is clipped (the ``first/`` metrics; tested).
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import doc, in_range, non_negative, optional, positive
from purerl.core.gae import gae
from purerl.core.losses import clipped_surrogate_loss, clipped_value_loss, masked_mean, normalize
from purerl.core.minibatch import minibatch_epochs
from purerl.core.optim import optimizer_step
from purerl.core.streams import Streams, seed_streams
from purerl.lm.model import CausalLM, completion_log_probs, forward_sequences
from purerl.lm.rollout import Rollout, Scorer, ends_with_eos, make_collect, make_rollout
from purerl.lm.sft import SFTConfig, model_from_sft
from purerl.lm.tokenizer import Batch
from purerl.lm.training import LMMethod, PolicyGradientConfig, optimizer_and_schedule

PPO_METRICS = (
    "rlhf_reward",
    "score",
    "task_reward",
    "kl",
    "kl_coef",
    "policy_loss",
    "value_loss",
    "clip_fraction",
    "approx_kl",
    "ratio",
    "first/ratio",
    "first/approx_kl",
    "first/clip_fraction",
    "entropy",
    "eos_fraction",
    "grad_norm",
)


@dataclass(frozen=True)
class LMPPOConfig(PolicyGradientConfig):
    prompts_per_step: int = doc(64, "prompts (one completion each) per rollout", positive)
    epochs: int = doc(4, "passes over each rollout")
    minibatches: int = doc(2, "minibatches per pass; must divide prompts_per_step")
    value_clip_eps: float = doc(0.2, "value clip around the rollout values", non_negative)
    vf_coef: float = doc(0.1, "value-loss coefficient", non_negative)
    gamma: float = doc(1.0, "discount over tokens", in_range(0.0, 1.0))
    gae_lambda: float = doc(0.95, "GAE lambda", in_range(0.0, 1.0))
    kl_coef: float = doc(
        0.04, "beta: per-token KL penalty to the SFT reference (initial value if adaptive)", non_negative
    )
    kl_target: float | None = doc(
        None, "adaptive KL controller's target sequence KL; none: fixed beta", optional(positive)
    )
    kl_horizon: int = doc(10000, "adaptive KL controller's horizon, in completions", positive)

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step


class PolicyAndCritic(NamedTuple):
    policy: Any  # the policy transformer's parameters
    critic: Any  # the critic's: its own transformer (started from SFT) and a value head


class LMPPOState(NamedTuple):
    params: PolicyAndCritic
    opt_state: Any
    kl_coef: jax.Array
    step: jax.Array
    streams: Streams  # the seed's random streams: step s samples with fold_in(rollout, s) (purerl.core.streams)


class Experience(NamedTuple):
    """One rollout, ready for the minibatch steps (row = completion)."""

    batch: Batch
    old_log_probs: jax.Array  # [B, C]
    old_values: jax.Array  # [B, C]
    advantages: jax.Array  # [B, C], whitened
    returns: jax.Array  # [B, C]


def kl_shaped_rewards(
    scores: jax.Array, log_probs: jax.Array, ref_log_probs: jax.Array, mask: jax.Array, kl_coef: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(rewards [B, C], kl [B, C])``: ``r_t = -kl_coef * kl_t`` with ``kl_t = log pi - log pi_ref`` on valid
    tokens, and the sequence's score added at its last valid token."""
    kl = (log_probs - ref_log_probs) * mask
    last = jnp.sum(mask, axis=-1) - 1
    at_last = jnp.arange(mask.shape[1])[None, :] == last[:, None]
    return -kl_coef * kl + at_last * scores[:, None], kl


def token_advantages(
    rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float, gae_lambda: float
) -> tuple[jax.Array, jax.Array]:
    """GAE over the tokens of each completion (``[B, C]`` in, ``[B, C]`` out) through ``purerl.gae``.

    Token ``t``'s next value is ``V(s_{t+1})``; the episode ends after the last valid token (no bootstrap);
    padding positions end at once, so they get advantage 0 and leak nothing backwards.
    """
    mask = mask.astype(values.dtype)
    values = values * mask
    next_mask = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1) * next_mask
    ends = 1.0 - next_mask
    advantages, returns = gae(rewards.T, values.T, next_values.T, ends.T, ends.T, gamma, gae_lambda)
    return advantages.T * mask, returns.T * mask


def ppo_objective(params, policy: CausalLM, critic: CausalLM, config: LMPPOConfig, exp: Experience):
    """Clipped surrogate + ``vf_coef`` x clipped value loss, token means over the valid tokens."""
    mask = exp.batch.completion_mask
    log_probs = completion_log_probs(policy, params.policy, exp.batch, config.temperature)
    values = forward_sequences(critic, params.critic, exp.batch).scalar[:, :-1]
    log_ratio = (log_probs - exp.old_log_probs) * mask
    surrogate, clipped = clipped_surrogate_loss(log_ratio, exp.advantages, config.clip_eps)
    policy_loss = masked_mean(surrogate, mask)
    value_loss = masked_mean(clipped_value_loss(values, exp.old_values, exp.returns, config.value_clip_eps), mask)
    loss = policy_loss + config.vf_coef * value_loss
    return loss, {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "clip_fraction": masked_mean(clipped, mask),
        "approx_kl": masked_mean(0.5 * jnp.square(log_ratio), mask),
        "ratio": masked_mean(jnp.exp(log_ratio), mask),
    }


def make_lm_ppo(config: LMPPOConfig, sft_config: SFTConfig, sft_params, scorer: Scorer | None) -> LMMethod:
    """``train_step(state, step) -> (state, metrics)`` samples the prompts of ``(seed, step)``, scores them
    with ``scorer`` (None: the task's reward) and runs the update epochs."""
    task = sft_config.task_instance
    policy, _ = model_from_sft(sft_config, sft_params)
    streams = seed_streams(config.seed)
    critic, critic_params = model_from_sft(sft_config, sft_params, "value", streams.head)
    rollout = make_rollout(task, policy, config.temperature, scorer, config.missing_eos_penalty)
    optimizer, learning_rate = optimizer_and_schedule(config)
    params = PolicyAndCritic(sft_params, critic_params)
    kl_coef, step = jnp.asarray(config.kl_coef, jnp.float32), jnp.zeros((), jnp.int32)
    state = LMPPOState(params, optimizer.init(params), kl_coef, step, streams)

    @jax.jit
    def update(state: LMPPOState, batch: Batch, scores: jax.Array, key: jax.Array):
        mask = batch.completion_mask
        old_log_probs = completion_log_probs(policy, state.params.policy, batch, config.temperature)
        ref_log_probs = completion_log_probs(policy, sft_params, batch, config.temperature)
        old_values = forward_sequences(critic, state.params.critic, batch).scalar[:, :-1] * mask
        rewards, kl = kl_shaped_rewards(scores, old_log_probs, ref_log_probs, mask, state.kl_coef)
        advantages, returns = token_advantages(rewards, old_values, mask, config.gamma, config.gae_lambda)
        advantages = normalize(advantages, mask) * mask
        experience = Experience(batch, old_log_probs, old_values, advantages, returns)
        step = optimizer_step(lambda params, exp: ppo_objective(params, policy, critic, config, exp), optimizer)
        (params, opt_state), stats, _ = minibatch_epochs(
            step, (state.params, state.opt_state), experience, key, config.epochs, config.minibatches
        )
        sequence_kl = jnp.sum(kl, axis=-1)
        kl_coef = state.kl_coef
        if config.kl_target is not None:
            error = jnp.clip(jnp.mean(sequence_kl) / config.kl_target - 1.0, -0.2, 0.2)
            kl_coef = kl_coef * (1.0 + error * scores.shape[0] / config.kl_horizon)
        metrics = {name: jnp.mean(value) for name, value in stats.items()}
        metrics |= {f"first/{name}": stats[name][0, 0] for name in ("ratio", "approx_kl", "clip_fraction")}
        metrics |= {
            "score": jnp.mean(scores),
            "kl": jnp.mean(sequence_kl),
            "kl_coef": state.kl_coef,
            "rlhf_reward": jnp.mean(scores - state.kl_coef * sequence_kl),
            "entropy": jnp.mean(-jnp.sum(old_log_probs, axis=-1)),
            "eos_fraction": jnp.mean(ends_with_eos(batch).astype(jnp.float32)),
            "learning_rate": learning_rate(state.step * config.updates_per_step),
        }
        return LMPPOState(params, opt_state, kl_coef, state.step + 1, state.streams), metrics

    sample = make_collect(rollout, task, config.seed, config.prompts_per_step)

    def collect(state: LMPPOState, step: int) -> tuple[Rollout, jax.Array]:
        return sample(state.params.policy, state.streams, step)

    def train_step(state: LMPPOState, step: int):
        result, update_key = collect(state, step)
        state, metrics = update(state, result.batch, jnp.asarray(result.scores), update_key)
        return state, metrics | {"task_reward": float(np.mean(result.task_rewards))}

    return LMMethod(policy, state, train_step, collect, update, policy=lambda state: state.params.policy)
