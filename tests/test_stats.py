"""Across-seed statistics against plain definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.stats import (
    BOOTSTRAP_REPS,
    bootstrap_mean_ci_curve,
    common_step_grid,
    explained_variance,
    format_iqm_ci,
    interpolate_curves,
    iqm,
    iqm_ci,
    score_aggregates,
    summarize_runs,
)


def test_iqm_is_the_25_percent_trimmed_mean_for_any_seed_count():
    """floor(n / 4) values dropped from each end, the rest averaged: scipy's trim_mean, rliable's IQM."""
    x8 = np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0])
    assert iqm(x8) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))
    x7 = np.array([10.0, -40.0, 20.0, 30.0, 1000.0, 40.0, 50.0])  # drop -40 and 1000
    assert iqm(x7) == pytest.approx(np.mean([10.0, 20.0, 30.0, 40.0, 50.0]))
    x10 = np.arange(10.0) ** 2  # drop 0, 1 and 64, 81
    assert iqm(x10) == pytest.approx(np.mean([4.0, 9.0, 16.0, 25.0, 36.0, 49.0]))
    assert iqm(np.array([7.0])) == 7.0
    with pytest.raises(ValueError, match="empty"):
        iqm(np.array([]))


def test_iqm_and_the_aggregates_are_rliables_to_the_bit_at_every_seed_count():
    """purerl's IQM is computed as scipy's trim_mean computes it, without its per-call overhead."""
    from rliable import metrics

    rng = np.random.default_rng(0)
    for num_runs in range(1, 41):
        x = rng.normal(size=num_runs) ** 3
        assert iqm(x) == metrics.aggregate_iqm(x[:, None]), num_runs
    with_nan = np.array([1.0, 2.0, 3.0, np.nan])  # a diverged seed: NaN, not trimmed away as the best run
    assert np.isnan(iqm(with_nan)) and np.isnan(metrics.aggregate_iqm(with_nan))
    scores = rng.normal(0.5, 0.5, size=(7, 3))  # [runs, tasks]: one IQM over all
    expected = [metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_optimality_gap(scores)]
    assert list(score_aggregates(scores)) == expected


@pytest.mark.parametrize("num_runs", [5, 7, 10, 13, 16])
def test_iqm_and_its_ci_are_rliables_on_odd_seed_counts(num_runs):
    from rliable import library, metrics

    x = np.random.default_rng(num_runs).normal(size=num_runs) ** 3
    summary = summarize_runs(x)
    assert summary["iqm"] == metrics.aggregate_iqm(x[:, None])
    aggregate = lambda scores: np.array([metrics.aggregate_iqm(scores)])  # noqa: E731
    np.random.seed(0)  # rliable resamples from NumPy's global generator
    _, intervals = library.get_interval_estimates({"a": x[:, None]}, aggregate, reps=BOOTSTRAP_REPS)
    assert (summary["iqm_ci_low"], summary["iqm_ci_high"]) == (intervals["a"][0, 0], intervals["a"][1, 0])
    assert summary["iqm_ci_low"] <= summary["iqm"] <= summary["iqm_ci_high"]


def test_an_iqm_and_its_ci_are_written_as_every_table_writes_them():
    assert format_iqm_ci(999.0, 994.6875, 1000.0) == "999.0 [994.7, 1000.0]"
    assert format_iqm_ci(-0.04, -0.125, 0.5, digits=2) == "-0.04 [-0.12, 0.50]"


def test_iqm_ci_is_reproducible_and_leaves_numpys_global_generator_as_it_was():
    x = np.random.default_rng(1).normal(size=9)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    assert iqm_ci(x) == iqm_ci(x)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_iqm_ci_narrows_with_more_runs_and_is_a_point_without_spread():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=16), rng.normal(size=256)
    (low_s, high_s), (low_l, high_l) = iqm_ci(small), iqm_ci(large)
    assert (high_l - low_l) < (high_s - low_s)
    assert iqm_ci(np.full(10, 3.0)) == (3.0, 3.0)


def test_bootstrap_mean_curve_ignores_nan_and_brackets_the_mean():
    curves = np.array([[np.nan, 1.0, 2.0], [np.nan, 3.0, 4.0], [np.nan, 5.0, 9.0]])
    mean, low, high = bootstrap_mean_ci_curve(curves)
    assert np.isnan(mean[0]) and np.isnan(low[0])
    np.testing.assert_allclose(mean[1:], [3.0, 5.0])
    assert np.all(low[1:] <= mean[1:]) and np.all(mean[1:] <= high[1:])
    assert low[1] >= 1.0 and high[1] <= 5.0  # a mean of resampled values stays within their range


def test_summarize_runs_drops_and_counts_nan():
    summary = summarize_runs(np.array([1.0, 2.0, np.nan, 3.0]))
    assert summary["num_runs"] == 4 and summary["num_nan"] == 1
    assert summary["mean"] == pytest.approx(2.0) and summary["std"] == pytest.approx(1.0)


def test_explained_variance():
    targets = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert float(explained_variance(targets, targets)) == pytest.approx(1.0)
    assert float(explained_variance(jnp.full(4, 2.5), targets)) == pytest.approx(0.0)
    residual_var = np.var([1.0 - 1.5, 2.0 - 2.0, 3.0 - 2.5, 4.0 - 4.0])
    expected = 1.0 - residual_var / np.var([1.0, 2.0, 3.0, 4.0])
    assert float(explained_variance(jnp.array([1.5, 2.0, 2.5, 4.0]), targets)) == pytest.approx(expected)
    assert np.isnan(float(explained_variance(targets, jnp.ones(4))))
    assert np.isnan(float(explained_variance(jnp.zeros(64), jnp.full(64, 1 / 3, jnp.float32))))  # a residue


def test_curves_over_different_steps_are_interpolated_on_the_range_all_runs_cover():
    steps = np.array([[10, 20, 40], [15, 30, 35]])
    values = np.array([[1.0, 2.0, 4.0], [0.0, 3.0, 1.0]])
    grid = common_step_grid(steps)
    np.testing.assert_allclose(grid, [15, 25, 35])
    curves = interpolate_curves(steps, values, grid)
    # by hand: run 0 is 1.5, 2.5, 3.5 there; run 1 is 0, 2, 1
    np.testing.assert_allclose(curves, [[1.5, 2.5, 3.5], [0.0, 2.0, 1.0]])
    assert np.isnan(interpolate_curves(steps, values, np.array([5.0, 38.0]))).tolist() == [[True, False], [True, True]]
    same = np.array([[1, 2, 3], [1, 2, 3]])
    np.testing.assert_array_equal(common_step_grid(same), [1, 2, 3])


def test_curves_that_start_with_nan_are_gridded_and_interpolated_over_their_finite_points():
    """DAgger's round 0 plays no episode (NaN at 0 env steps) and its seeds' later steps differ: the grid
    starts where every seed has a return, so round 1 shows (before: a grid from 0 put a NaN mean there)."""
    steps = np.array([[0, 100, 200, 300], [0, 120, 260, 330]])
    values = np.array([[np.nan, 1.0, 3.0, 5.0], [np.nan, 2.0, 2.0, 4.0]])
    grid = common_step_grid(steps, values)
    np.testing.assert_allclose(grid, [120, 180, 240, 300])
    curves = interpolate_curves(steps, values, grid)
    # by hand: run 0 is 1 + 2 (x - 100) / 100; run 1 is 2 up to 260, then 2 + 2 (x - 260) / 70
    np.testing.assert_allclose(curves, [[1.4, 2.6, 3.8, 5.0], [2.0, 2.0, 2.0, 2.0 + 80 / 70]])
    gap = interpolate_curves(np.array([[0, 10, 20, 30]]), np.array([[1.0, np.nan, 3.0, np.nan]]), np.array([15.0, 25]))
    # 1 + 2 * 15 / 20: across a NaN inside, never past the last finite point
    np.testing.assert_allclose(gap, [[2.5, np.nan]])
