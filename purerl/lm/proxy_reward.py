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


def score_statistics(scores: np.ndarray) -> ScoreStatistics:
    """``scores [K, N]`` (member ``k``'s scores of ``N`` reference completions) -> their mean and std per
    member. Raises ``ValueError`` naming the member whose scores are all equal (std 0: nothing to scale by)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"score_statistics needs scores shaped [members, completions >= 2], got {scores.shape}")
    mean, std = scores.mean(axis=1), scores.std(axis=1)
    constant = np.flatnonzero(~(std > 0))
    if constant.size:
        raise ValueError(f"reward model {int(constant[0])} gives every reference completion the same score")
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
