"""Statistics: a training diagnostic (explained variance, in JAX) and across-seed summaries (host-side NumPy).

Across seeds we report the interquartile mean (IQM) with a percentile-bootstrap 95% confidence interval,
following Agarwal et al., "Deep RL at the Edge of the Statistical Precipice" (NeurIPS 2021): the IQM is
robust to a few outlier seeds yet uses half the runs, unlike the median.
"""

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.spread import range_has_spread


def explained_variance(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """``1 - Var[targets - predictions] / Var[targets]``; NaN when the targets have no spread (all equal up to
    rounding, ``purerl.core.spread``), where the ratio is undefined."""
    return jnp.where(range_has_spread(targets), 1.0 - jnp.var(targets - predictions) / jnp.var(targets), jnp.nan)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of values (the 25%-trimmed mean).

    Values are sorted and each contributes with the fraction of it that lies inside the [25%, 75%] quantile
    range of the empirical distribution, so it is exact for any n (as ``scipy.stats.trim_mean`` is for n
    divisible by 4).
    """
    values = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = values.size
    if n == 0:
        raise ValueError("iqm of an empty array")
    lower, upper = 0.25 * n, 0.75 * n
    # Element i occupies [i, i + 1) of [0, n); weight it by its overlap with [lower, upper).
    starts = np.arange(n)
    weights = np.clip(np.minimum(starts + 1, upper) - np.maximum(starts, lower), 0.0, 1.0)
    return float(np.sum(weights * values) / np.sum(weights))


def bootstrap_ci(
    x: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic`` over the runs in ``x`` (1-D)."""
    values = np.asarray(x, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, values.size, size=(num_resamples, values.size))
    stats = np.array([statistic(values[idx]) for idx in resamples])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize_runs(x: np.ndarray) -> dict[str, float]:
    """Mean, std, IQM and its 95% bootstrap CI of one value per run (NaN runs are dropped and counted)."""
    values = np.asarray(x, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    summary = {"num_runs": int(values.size), "num_nan": int(values.size - finite.size)}
    if finite.size == 0:
        return summary | {k: float("nan") for k in ("mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high")}
    low, high = bootstrap_ci(finite)
    return summary | {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "iqm": iqm(finite),
        "iqm_ci_low": low,
        "iqm_ci_high": high,
    }


def bootstrap_mean_ci_curve(
    curves: np.ndarray, confidence: float = 0.95, num_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs of ``curves [runs, points]`` with a percentile-bootstrap CI at every point.

    NaN entries (e.g. before a run finished its first episode) are left out of that point's mean.
    Returns ``(mean, low, high)``, each ``[points]``.
    """
    curves = np.asarray(curves, dtype=np.float64)
    rng = np.random.default_rng(seed)
    resampled = curves[rng.integers(0, curves.shape[0], size=(num_resamples, curves.shape[0]))]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, which is what we want
        means = np.nanmean(resampled, axis=1)
        alpha = (1.0 - confidence) / 2.0
        low, high = np.nanquantile(means, [alpha, 1.0 - alpha], axis=0)
        return np.nanmean(curves, axis=0), low, high


def interpolate_curves(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each run's curve ``values[i]`` over its own x values ``steps[i]`` (both ``[runs, points]``, increasing
    x), linearly interpolated at the shared ``grid`` (GRPO's env steps per update differ between seeds).
    Grid points outside a run's own range are NaN: never extrapolated."""
    pairs = zip(np.asarray(steps), np.asarray(values), strict=True)
    return np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in pairs])


def common_step_grid(steps: np.ndarray) -> np.ndarray:
    """The x values shared by all runs: the runs' own when they agree, else evenly spaced points over the
    range every run covers."""
    steps = np.asarray(steps, dtype=np.float64)
    if np.all(steps == steps[:1]):
        return steps[0]
    return np.linspace(steps[:, 0].max(), steps[:, -1].min(), steps.shape[1])


def learning_curve_auc(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Normalised area under each learning curve: the trapezoid integral of ``values`` over ``steps``
    divided by the steps covered, i.e. the average return over training (higher = learned sooner).
    ``steps, values: [runs, points]``; points where ``values`` is NaN (no episode had ended yet) are skipped."""
    areas = []
    for x, y in zip(np.asarray(steps, float), np.asarray(values, float), strict=True):
        keep = np.isfinite(y)
        x, y = x[keep], y[keep]
        if len(x) < 2 or x[-1] == x[0]:
            areas.append(float(y.mean()) if len(y) else np.nan)
            continue
        areas.append(float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0])))
    return np.array(areas)
