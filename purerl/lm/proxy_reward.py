"""The proxy reward a policy is trained on when learned reward models score it, instead of the task.

Two pieces practitioners add between a Bradley-Terry reward model and the RL step:

- **Normalisation by the SFT policy's statistics.** A Bradley-Terry score is defined only up to a shift, and
  its scale is whatever the training reached (a reward model trained to zero loss separates its pairs by
  margins of 10-20). Each member's score is standardised, ``z = (s - mean) / std``, by its mean and std over
  completions the SFT policy samples (each reward model reports them, ``sft_score_mean`` and
  ``sft_score_std``): lm-human-preferences' gain and bias to mean 0 and std 1 on the reference policy's
  samples (Ziegler et al. 2019; detail 9 of "The N Implementation Details of RLHF with PPO"), so the KL
  coefficient reads in units of the SFT samples' spread.
- **An ensemble whose disagreement is penalised.** ``K`` reward models trained on different seeds score every
  completion; the policy receives their mean minus ``penalty`` times their standard deviation (the
  uncertainty-penalised objective of Coste et al. 2023 and Eisenstein et al. 2023, with the std, in reward
  units, as the disagreement). Where the members extrapolate differently (text none of them was trained on)
  the proxy is lowered, so the policy is not paid for leaving the reward models' data.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from purerl.lm.rollout import Scorer


class ScoreStatistics(NamedTuple):
    """Per-member normalisation: ``mean`` and ``std``, each ``[K]`` float64."""

    mean: np.ndarray
    std: np.ndarray


def score_statistics(
    mean: Sequence[float], std: Sequence[float], names: Sequence[str] | None = None
) -> ScoreStatistics:
    """The members' mean and std of their scores on SFT samples (each ``[K]``: what every reward model reports
    as ``sft_score_mean`` and ``sft_score_std``). Raises ``ValueError`` naming (by ``names``, else by index) a
    member whose std is not > 0: its scores cannot be standardised."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    if mean.ndim != 1 or mean.shape != std.shape:
        raise ValueError(f"score_statistics needs one mean and one std per member, got {mean.shape} and {std.shape}")
    constant = np.flatnonzero(~(std > 0))
    if constant.size:
        name = repr(names[constant[0]]) if names is not None else str(int(constant[0]))
        raise ValueError(f"reward model {name} gives every SFT sample the same score (std {std[constant[0]]})")
    return ScoreStatistics(mean, std)


def ensemble_score(
    scores: np.ndarray, statistics: ScoreStatistics | None = None, penalty: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(proxy [B], disagreement [B])`` from ``scores [K, B]`` (member ``k``'s score of completion ``b``).

    Each member is standardised by ``statistics`` (None: used raw); ``disagreement`` is the members'
    standard deviation (population, ``ddof=0``; 0 for one member) and ``proxy = mean - penalty *
    disagreement``. Float32 out.
    """
    scores = np.asarray(scores, np.float64)
    if statistics is not None:
        scores = (scores - statistics.mean[:, None]) / statistics.std[:, None]
    disagreement = scores.std(axis=0)
    proxy = scores.mean(axis=0) - penalty * disagreement
    return proxy.astype(np.float32), disagreement.astype(np.float32)


def make_proxy_scorer(
    members: Sequence[Scorer], statistics: ScoreStatistics | None = None, penalty: float = 0.0
) -> Scorer:
    """One ``Scorer`` from the members' scorers: ``ensemble_score`` of their scores."""

    def score(prompts, completions, batch) -> np.ndarray:
        scores = np.stack([member(prompts, completions, batch) for member in members])
        return ensemble_score(scores, statistics, penalty)[0]

    return score
