"""Statistics: a training diagnostic (explained variance, in JAX) and across-seed summaries (host-side NumPy).

Across seeds we report the interquartile mean (IQM) with a 95% stratified-bootstrap confidence interval,
exactly as rliable computes them (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice",
NeurIPS 2021): the IQM is scipy's 25%-trimmed mean (``rliable.metrics.aggregate_iqm``), and intervals are
rliable's percentile intervals over runs resampled within each task, with a fixed resampling seed so a summary
is reproducible. One statistic everywhere (summaries, sweeps, benchmarks), the one papers report.
"""

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.spread import range_has_spread

# Resamples per interval. rliable's default is 50,000; on the 14 committed PPO benchmark envs, 5,000 moved a
# bound by at most 3.9% of the interval's width (Pendulum-v1), for a tenth of the time.
BOOTSTRAP_REPS = 5000


def explained_variance(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """``1 - Var[targets - predictions] / Var[targets]``; NaN when the targets have no spread (all equal up to
    rounding, ``purerl.core.spread``), where the ratio is undefined."""
    return jnp.where(range_has_spread(targets), 1.0 - jnp.var(targets - predictions) / jnp.var(targets), jnp.nan)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of all values in ``x``: rliable's ``aggregate_iqm``, scipy's ``trim_mean(x, 0.25)``,
    which drops ``floor(n / 4)`` values from each end and averages the rest (7 runs: the middle 5).

    Computed in float64 as scipy computes it (one partition, then the mean of the middle), so the bits are
    rliable's for float64 input, without scipy's argument handling: a bootstrap interval calls this once per
    resample (``BOOTSTRAP_REPS``), and through ``trim_mean`` that handling made each interval take a second, two
    per training run's summary. NaN if any value is NaN, as scipy's (a partition would trim NaNs as the best).

    Raises ValueError for an empty ``x``."""
    values = np.asarray(x, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("iqm of an empty array")
    if np.isnan(values).any():
        return float("nan")
    cut = values.size // 4
    middle = np.partition(values, (cut, values.size - cut - 1))[cut : values.size - cut]
    return float(np.mean(middle))


@contextlib.contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` inside the block and restored after it. rliable's
    stratified bootstrap draws its resamples from the global generator (``np.random.choice`` in
    ``StratifiedBootstrap.update_indices``, rliable 1.2.0) whatever ``random_state`` it is given, so this is
    what makes its intervals reproducible without leaving global state changed."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    aggregate: Callable[[np.ndarray], np.ndarray],
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's ``get_interval_estimates``: for each ``scores[name]`` (``[runs, tasks]``), the point estimate
    ``aggregate(scores) -> [k]`` and its 95% stratified-bootstrap percentile interval ``[2, k]`` (runs
    resampled within each task), from ``reps`` resamples seeded by ``seed`` (the same scores give the same
    interval)."""
    from rliable import library

    with numpy_global_seed(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arch deprecates the random_state rliable passes
        return library.get_interval_estimates(scores, aggregate, reps=reps, random_state=np.random.RandomState(seed))


def iqm_aggregate(scores: np.ndarray) -> np.ndarray:
    """``[1]``: the IQM of ``scores``, in the form ``interval_estimates`` takes for its ``aggregate``."""
    return np.array([iqm(scores)])


def iqm_ci(x: np.ndarray, reps: int = BOOTSTRAP_REPS) -> tuple[float, float]:
    """95% stratified-bootstrap interval (rliable) of the IQM of one value per run (one task)."""
    values = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    _, intervals = interval_estimates({"runs": values}, iqm_aggregate, reps)
    return float(intervals["runs"][0, 0]), float(intervals["runs"][1, 0])


def format_iqm_ci(point: float, low: float, high: float, digits: int = 1) -> str:
    """``IQM [low, high]`` with ``digits`` decimals: how every purerl table writes an IQM and its 95% CI."""
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


AGGREGATES = ("iqm", "mean", "optimality_gap")


def score_aggregates(scores: np.ndarray) -> np.ndarray:
    """``[3]``: the IQM, mean and optimality gap (below 1, rliable's ``aggregate_optimality_gap``) of normalised
    scores ``[runs, tasks]`` across all runs and tasks, the aggregate metrics of Agarwal et al. (2021), in the
    order of ``AGGREGATES``."""
    from rliable import metrics

    return np.array([iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_optimality_gap(scores)])


def summarize_runs(x: np.ndarray) -> dict[str, float]:
    """Mean, std, IQM and its 95% stratified-bootstrap CI (rliable) of one value per run (NaN runs are dropped
    and counted)."""
    values = np.asarray(x, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    summary = {"num_runs": int(values.size), "num_nan": int(values.size - finite.size)}
    if finite.size == 0:
        return summary | {k: float("nan") for k in ("mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high")}
    low, high = iqm_ci(finite)
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
    x), linearly interpolated at the shared ``grid`` (GRPO's env steps per update differ between seeds)
    between its finite points (NaN: no episode had ended yet, or DAgger's round 0). Grid points outside the
    range of a run's finite points are NaN: never extrapolated."""
    curves = []
    for x, y in zip(np.asarray(steps, np.float64), np.asarray(values, np.float64), strict=True):
        keep = np.isfinite(y)
        curves.append(np.interp(grid, x[keep], y[keep], left=np.nan, right=np.nan) if keep.any() else grid * np.nan)
    return np.stack(curves)


def common_step_grid(steps: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """The x values shared by all runs (``steps: [runs, points]``): the runs' own when they agree, else evenly
    spaced points over the range every run covers (with ``values``: covers with finite values, where a run
    has any)."""
    steps = np.asarray(steps, dtype=np.float64)
    if np.all(steps == steps[:1]):
        return steps[0]
    finite = np.ones(steps.shape, bool) if values is None else np.isfinite(values)
    finite[~finite.any(axis=1)] = True  # a run with no finite value constrains nothing it could show
    first = np.where(finite, steps, np.inf).min(axis=1).max()
    last = np.where(finite, steps, -np.inf).max(axis=1).min()
    return np.linspace(first, last, steps.shape[1])


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
