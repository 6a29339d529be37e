"""Reward-model over-optimisation, measured as Gao, Schulman and Hilton (2022), "Scaling Laws for Reward Model
Overoptimization": the gold reward and the proxy (reward-model) score against ``d = sqrt(KL(pi || pi_init))``,
for best-of-n sampling and for RL, and the paper's functional forms fitted to the gold curves.

- **Best-of-n** draws ``n`` completions from the initial policy and keeps the one the proxy scores highest. Its
  KL to the initial policy is ``log n - (n - 1) / n`` (Stiennon et al. 2020, appendix; exact for a continuous
  score without ties, an upper bound otherwise: Beirami et al. 2024). Its expected rewards for every
  ``n <= N`` come from ``N`` samples per prompt without bias (Gao et al., appendix): sorted by proxy, the
  sample of rank ``i`` (1 = lowest) is the best of a uniformly drawn ``n``-subset with probability
  ``C(i - 1, n - 1) / C(N, n)``.
- **Functional forms** (Gao et al., eqs. 1 and 2), with ``R`` the reward gained over the initial policy:
  best-of-n ``R(d) = d (alpha - beta d)``, RL ``R(d) = d (alpha - beta log d)``. Both are linear in
  ``(alpha, beta)``, so least squares fits them exactly; the gold peak is at ``d* = alpha / (2 beta)``
  (best-of-n) and ``d* = exp(alpha / beta - 1)`` (RL), where ``dR/dd = 0``.
"""

import math

import numpy as np

from purerl.core.config import require_choice

GAO_FORMS = ("best_of_n", "rl")


def best_of_n_kl(n: int | np.ndarray) -> np.ndarray:
    """``log n - (n - 1) / n`` nats: the KL of best-of-``n`` sampling to the policy it samples from."""
    n = np.asarray(n, np.float64)
    if np.any(n < 1):
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return np.log(n) - (n - 1) / n


def best_of_n_weights(num_samples: int, n: int) -> np.ndarray:
    """``[num_samples]`` float64: the probability that the sample of proxy rank ``i`` (ascending, from 0) is
    the best of ``n`` drawn without replacement, ``C(i, n - 1) / C(num_samples, n)``; it sums to 1."""
    if not 1 <= n <= num_samples:
        raise ValueError(f"best-of-n needs 1 <= n <= the {num_samples} samples per prompt, got n={n}")
    total = math.comb(num_samples, n)
    return np.array([math.comb(i, n - 1) / total for i in range(num_samples)])


def best_of_n_expectations(proxy: np.ndarray, values: dict[str, np.ndarray], n: int) -> dict[str, float]:
    """The expected ``values`` (each ``[prompts, N]``, e.g. the gold reward and the proxy itself) of the
    completion best-of-``n`` keeps, by ``proxy [prompts, N]``, averaged over prompts: the unbiased estimate
    from ``N`` samples per prompt (ties in the proxy broken by sample order)."""
    proxy = np.asarray(proxy, np.float64)
    order = np.argsort(proxy, axis=1, kind="stable")
    weights = best_of_n_weights(proxy.shape[1], n)
    return {
        name: float(np.mean(np.take_along_axis(np.asarray(value, np.float64), order, axis=1) @ weights))
        for name, value in values.items()
    }


def _features(d: np.ndarray, form: str) -> np.ndarray:
    require_choice("form", form, GAO_FORMS)
    d = np.asarray(d, np.float64)
    curvature = d if form == "best_of_n" else np.log(d)
    return np.stack([d, -d * curvature], axis=-1)


def fit_gao(d: np.ndarray, gain: np.ndarray, form: str) -> tuple[float, float]:
    """``(alpha, beta)`` of Gao et al.'s ``form`` fitted by least squares to the reward ``gain`` over the
    initial policy at ``d = sqrt(KL) > 0`` (points at ``d = 0`` carry no information and are dropped)."""
    d, gain = np.asarray(d, np.float64), np.asarray(gain, np.float64)
    keep = d > 0
    if keep.sum() < 2:
        raise ValueError(f"fitting {form} needs at least 2 points with KL > 0, got {int(keep.sum())}")
    (alpha, beta), *_ = np.linalg.lstsq(_features(d[keep], form), gain[keep], rcond=None)
    return float(alpha), float(beta)


def gao_curve(d: np.ndarray, alpha: float, beta: float, form: str) -> np.ndarray:
    """The fitted gain at ``d`` (0 at ``d = 0``)."""
    d = np.asarray(d, np.float64)
    safe = np.where(d > 0, d, 1.0)
    return np.where(d > 0, _features(safe, form) @ np.array([alpha, beta]), 0.0)


def gao_peak(alpha: float, beta: float, form: str) -> tuple[float, float]:
    """``(d*, gain at d*)``: where the fitted gold gain peaks; ``(inf, inf)`` when ``beta <= 0`` (no peak)."""
    require_choice("form", form, GAO_FORMS)
    if beta <= 0:
        return math.inf, math.inf
    d = alpha / (2 * beta) if form == "best_of_n" else math.exp(alpha / beta - 1)
    return d, float(gao_curve(np.array(d), alpha, beta, form))
