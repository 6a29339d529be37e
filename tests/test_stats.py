"""Across-seed statistics against plain definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.stats import (
    bootstrap_ci,
    bootstrap_mean_ci_curve,
    common_step_grid,
    explained_variance,
    interpolate_curves,
    iqm,
    summarize_runs,
)


def test_iqm_is_mean_of_middle_half_when_n_divisible_by_4():
    x = np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0])
    assert iqm(x) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))


def test_iqm_weights_boundary_values_for_other_n():
    # n = 5: the middle 50% spans positions [1.25, 3.75): 0.75 of the 2nd value, the 3rd, 0.75 of the 4th.
    x = np.array([10.0, 20.0, 30.0, 40.0, 1000.0])
    assert iqm(x) == pytest.approx((0.75 * 20 + 30 + 0.75 * 40) / 2.5)
    assert iqm(np.array([7.0])) == 7.0


def test_bootstrap_ci_brackets_the_statistic_and_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=16), rng.normal(size=256)
    low_s, high_s = bootstrap_ci(small)
    low_l, high_l = bootstrap_ci(large)
    assert low_s <= iqm(small) <= high_s and low_l <= iqm(large) <= high_l
    assert (high_l - low_l) < (high_s - low_s)
    assert bootstrap_ci(np.full(10, 3.0)) == (3.0, 3.0)


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
