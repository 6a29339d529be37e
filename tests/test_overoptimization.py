"""Best-of-n and Gao et al.'s functional forms, each against a plain computation: the KL of best-of-n against
the exact KL of a fine discrete distribution, the unbiased best-of-n estimate against every subset, the fits
against curves with known coefficients, the peaks against a grid search."""

import itertools
import math

import numpy as np
import pytest

from purerl.lm.overoptimization import (
    best_of_n_expectations,
    best_of_n_kl,
    best_of_n_weights,
    fit_gao,
    gao_curve,
    gao_peak,
)


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_best_of_n_kl_is_the_limit_of_the_exact_discrete_kl(n):
    # M equally likely outcomes with distinct scores: best-of-n picks rank i with (i/M)^n - ((i-1)/M)^n.
    m = 200_000
    ranks = np.arange(1, m + 1, dtype=np.float64)
    p = (ranks / m) ** n - ((ranks - 1) / m) ** n
    p = p[p > 0]  # ranks so low that (i/M)^n underflows carry no mass
    exact = float(np.sum(p * np.log(p * m)))
    assert float(best_of_n_kl(n)) == pytest.approx(exact, abs=1e-3)
    assert float(best_of_n_kl(n)) == pytest.approx(math.log(n) - (n - 1) / n)
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n_kl(0)


@pytest.mark.parametrize("num_samples,n", [(7, 1), (7, 3), (7, 7), (5, 2)])
def test_best_of_n_weights_count_the_subsets_each_rank_wins(num_samples, n):
    wins = np.zeros(num_samples)
    subsets = list(itertools.combinations(range(num_samples), n))
    for subset in subsets:
        wins[max(subset)] += 1  # rank = index: the highest rank in the subset is its best
    np.testing.assert_allclose(best_of_n_weights(num_samples, n), wins / len(subsets))
    assert best_of_n_weights(num_samples, n).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 <= n <= the 7 samples"):
        best_of_n_weights(7, 8)


def test_best_of_n_expectations_average_every_subset_of_every_prompt():
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    for n in (1, 2, 4, 6):
        expected_gold, expected_proxy = [], []
        for p in range(3):
            subsets = list(itertools.combinations(range(6), n))
            best = [max(subset, key=lambda i: proxy[p, i]) for subset in subsets]
            expected_gold.append(np.mean([gold[p, i] for i in best]))
            expected_proxy.append(np.mean([proxy[p, i] for i in best]))
        estimates = best_of_n_expectations(proxy, {"gold": gold, "proxy": proxy}, n)
        assert estimates["gold"] == pytest.approx(np.mean(expected_gold))
        assert estimates["proxy"] == pytest.approx(np.mean(expected_proxy))
    assert best_of_n_expectations(proxy, {"gold": gold}, 1)["gold"] == pytest.approx(gold.mean())


@pytest.mark.parametrize("form,alpha,beta", [("best_of_n", 0.9, 0.3), ("rl", 0.5, 0.2)])
def test_fits_recover_known_coefficients_and_the_peak_is_the_grid_maximum(form, alpha, beta):
    d = np.linspace(0.0, 4.0, 30)
    gain = np.where(d > 0, d * (alpha - beta * (d if form == "best_of_n" else np.log(np.maximum(d, 1e-12)))), 0.0)
    fitted = fit_gao(d, gain, form)
    assert fitted == pytest.approx((alpha, beta), rel=1e-9)
    np.testing.assert_allclose(gao_curve(d, *fitted, form), gain, atol=1e-12)
    grid = np.linspace(1e-6, 20.0, 2_000_001)
    values = gao_curve(grid, alpha, beta, form)
    peak_d, peak_gain = gao_peak(alpha, beta, form)
    assert peak_d == pytest.approx(grid[np.argmax(values)], abs=1e-4)
    assert peak_gain == pytest.approx(values.max(), rel=1e-9)
    assert gao_peak(alpha, -0.1, form) == (math.inf, math.inf)  # still rising: no peak


def test_fits_refuse_too_few_points_and_unknown_forms():
    with pytest.raises(ValueError, match="at least 2 points with KL > 0"):
        fit_gao(np.array([0.0, 1.0]), np.array([0.0, 0.3]), "rl")
    with pytest.raises(ValueError, match="form must be one of best_of_n, rl"):
        fit_gao(np.array([1.0, 2.0]), np.array([0.1, 0.3]), "ppo")
