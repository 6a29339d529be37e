"""Pairwise preference losses: Bradley-Terry for reward models, DPO and its variants for policies.

Inputs are per pair (chosen ``w``, rejected ``l``), shaped ``[B]``. For DPO they are **summed** completion
log-probs, ``l(y) = sum_t log pi(y_t | x, y_<t)`` over the valid tokens, under the policy and under the frozen
reference; ``h = (l(w) - l_ref(w)) - (l(l) - l_ref(l))``. Formulas follow TRL's ``DPOTrainer`` and OpenRLHF's
``DPOLoss`` (collected in ``shared/reference/lm-anchors.md`` B.1-B.2); where they differ, the choice is named.
"""

from typing import Literal

import chex
import jax
import jax.numpy as jnp

DPOLossType = Literal["sigmoid", "ipo", "hinge"]
DPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "hinge")


def bradley_terry_loss(
    chosen_rewards: jax.Array, rejected_rewards: jax.Array, margin: float | jax.Array = 0.0, center_coef: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``-log sigmoid(r_w - r_l - margin)`` per pair, plus ``center_coef * (r_w + r_l)^2`` (the centring term
    of arXiv 2312.09244, TRL's ``center_rewards_coefficient``) which pins the rewards' mean near 0."""
    chex.assert_equal_shape((chosen_rewards, rejected_rewards))
    difference = chosen_rewards - rejected_rewards
    loss = -jax.nn.log_sigmoid(difference - margin) + center_coef * jnp.square(chosen_rewards + rejected_rewards)
    metrics = {
        "accuracy": jnp.mean((difference > 0).astype(jnp.float32)),
        "margin": jnp.mean(difference),
        "mean_reward": jnp.mean(jnp.concatenate([chosen_rewards, rejected_rewards])),
    }
    return loss, metrics


def dpo_loss(
    chosen_logps: jax.Array,
    rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    beta: float | jax.Array,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: jax.Array | None = None,
    rejected_lengths: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-pair DPO loss and TRL's metrics (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``).

    - ``sigmoid`` (Rafailov et al. 2023) with cDPO label smoothing ``eps`` (OpenRLHF, legacy TRL):
      ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``; ``eps = 0`` is plain DPO.
    - ``ipo`` (Azar et al. 2023): ``(h' - 1 / (2 beta))^2`` where ``h'`` uses log-ratios **averaged per
      token** (TRL's choice, confirmed with the IPO authors; OpenRLHF sums), so it needs the lengths.
    - ``hinge`` (SLiC / RSO): ``relu(1 - beta h)``.

    Implicit rewards are ``beta * (l(y) - l_ref(y))``. With policy = reference the sigmoid loss is ln 2 and
    every reward is 0.
    """
    chex.assert_equal_shape((chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps))
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {DPO_LOSS_TYPES}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 0.5)")
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        loss = -(1 - label_smoothing) * jax.nn.log_sigmoid(beta * h) - label_smoothing * jax.nn.log_sigmoid(-beta * h)
    elif loss_type == "hinge":
        loss = jax.nn.relu(1 - beta * h)
    else:
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("the ipo loss averages log-ratios per token: pass chosen_lengths and rejected_lengths")
        h_per_token = chosen_ratio / chosen_lengths - rejected_ratio / rejected_lengths
        loss = jnp.square(h_per_token - 1 / (2 * beta))
    chosen_rewards, rejected_rewards = beta * chosen_ratio, beta * rejected_ratio
    metrics = {
        "rewards/chosen": jnp.mean(chosen_rewards),
        "rewards/rejected": jnp.mean(rejected_rewards),
        "rewards/margins": jnp.mean(chosen_rewards - rejected_rewards),
        "rewards/accuracies": jnp.mean((chosen_rewards > rejected_rewards).astype(jnp.float32)),
        "logps/chosen": jnp.mean(chosen_logps),
        "logps/rejected": jnp.mean(rejected_logps),
    }
    return loss, metrics
