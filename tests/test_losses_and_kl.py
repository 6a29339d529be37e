"""Loss pieces and KL estimators against hand computations and closed forms."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.kl import KL_LOSS_ESTIMATORS, kl_estimate, kl_k1, kl_k2, kl_k3, require_loss_estimator
from purerl.core.losses import clipped_surrogate_loss, clipped_value_loss, masked_mean, normalize


def test_clipped_surrogate_by_hand():
    ratios = np.array([0.5, 0.9, 1.0, 1.3, 1.3, 0.7])
    advantages = np.array([1.0, -2.0, 3.0, 2.0, -1.0, -1.0])
    # -min(r A, clip(r, 0.8, 1.2) A), element by element:
    # r=0.5,A=1: min(0.5, 0.8)=0.5 -> -0.5 ; r=0.9,A=-2: min(-1.8,-1.8) -> 1.8 ; r=1,A=3 -> -3
    # r=1.3,A=2: min(2.6, 2.4)=2.4 -> -2.4 ; r=1.3,A=-1: min(-1.3,-1.2)=-1.3 -> 1.3 ; r=0.7,A=-1: min(-0.7,-0.8) -> 0.8
    expected = np.array([-0.5, 1.8, -3.0, -2.4, 1.3, 0.8])
    loss, clipped = clipped_surrogate_loss(jnp.log(ratios), jnp.asarray(advantages), 0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_array_equal(clipped, [1, 0, 0, 1, 1, 1])


def test_clip_higher_uses_asymmetric_range():
    loss, clipped = clipped_surrogate_loss(jnp.log(jnp.array([1.25, 1.25])), jnp.array([1.0, 1.0]), 0.2, 0.28)
    np.testing.assert_allclose(loss, [-1.25, -1.25], rtol=1e-6)  # 1.25 < 1.28: not clipped
    np.testing.assert_array_equal(clipped, [0, 0])


def test_clipped_value_loss_by_hand():
    values = jnp.array([1.0, 3.0, 0.0])
    old_values = jnp.array([0.0, 2.0, 0.0])
    targets = jnp.array([2.0, 2.0, 1.0])
    # clip eps 0.5: clipped values = [0.5, 2.5, 0.0]
    # unclipped sq err = [1, 1, 1]; clipped sq err = [2.25, 0.25, 1] -> 0.5*max = [1.125, 0.5, 0.5]
    np.testing.assert_allclose(clipped_value_loss(values, old_values, targets, 0.5), [1.125, 0.5, 0.5])
    np.testing.assert_allclose(clipped_value_loss(values, old_values, targets, None), [0.5, 0.5, 0.5])


def test_normalize_and_masked_mean():
    x = jnp.array([1.0, 2.0, 3.0, 100.0])
    mask = jnp.array([1, 1, 1, 0])
    assert masked_mean(x, mask) == pytest.approx(2.0)
    y = normalize(x, mask)
    np.testing.assert_allclose(y[:3], (np.array([1, 2, 3]) - 2) / (np.std([1, 2, 3]) + 1e-8), rtol=1e-5)
    z = normalize(jnp.array([3.0, 5.0, 7.0, 9.0]))
    assert float(jnp.mean(z)) == pytest.approx(0.0, abs=1e-6)
    assert float(jnp.std(z)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("value", "size"), [(1 / 3, 512), (0.6, 100), (123.4, 4096), (-3.1e6, 257)])
def test_normalize_of_equal_values_is_exactly_zero(value, size):
    x = jnp.full(size, value, jnp.float32)
    assert np.all(np.asarray(normalize(x)) == 0.0)
    mask = jnp.arange(size) % 3 != 0
    assert np.all(np.asarray(normalize(x.at[0].set(7.0), mask)) == 0.0)  # equal where it counts


def test_kl_estimators_pointwise_formulas():
    log_ratio = jnp.array([-1.0, 0.0, 0.5])
    np.testing.assert_allclose(kl_k1(log_ratio), [1.0, 0.0, -0.5])
    np.testing.assert_allclose(kl_k2(log_ratio), [0.5, 0.0, 0.125])
    np.testing.assert_allclose(kl_k3(log_ratio), np.exp([-1.0, 0.0, 0.5]) - 1 - np.array([-1.0, 0.0, 0.5]), rtol=1e-6)
    for name in ("k1", "k2", "k3"):
        np.testing.assert_array_equal(kl_estimate(jnp.zeros(5), name), np.zeros(5))  # identical policies
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_estimate(log_ratio, "k4")


def test_k1_and_k3_are_unbiased_for_gaussian_kl():
    """Monte Carlo means of k1 and k3 under p match the closed-form KL(p || q) of two Gaussians."""
    mu_p, s_p, mu_q, s_q = 0.0, 1.0, 0.3, 1.2
    closed = np.log(s_q / s_p) + (s_p**2 + (mu_p - mu_q) ** 2) / (2 * s_q**2) - 0.5
    x = mu_p + s_p * jax.random.normal(jax.random.key(0), (400_000,))
    log_p = -0.5 * ((x - mu_p) / s_p) ** 2 - jnp.log(s_p)
    log_q = -0.5 * ((x - mu_q) / s_q) ** 2 - jnp.log(s_q)
    log_ratio = log_q - log_p
    assert float(kl_k1(log_ratio).mean()) == pytest.approx(closed, abs=3e-3)
    assert float(kl_k3(log_ratio).mean()) == pytest.approx(closed, abs=3e-3)
    assert float(kl_k3(log_ratio).min()) >= 0.0


def categorical_kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """KL(p || q) of two categoricals given as log-probabilities, summed over the last axis."""
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


@pytest.mark.parametrize(
    "estimator, target",
    [
        ("k1", lambda log_p, log_q: jnp.zeros(())),  # the score function's mean: no gradient at all
        ("k2", lambda log_p, log_q: categorical_kl(log_p, log_q)),  # KL(p || q)
        ("k3", lambda log_p, log_q: categorical_kl(log_q, log_p)),  # KL(q || p), the other direction
    ],
)
def test_expected_estimator_gradients_are_these_kl_gradients(estimator, target):
    """d/dθ E_{x~p_θ}[k(x)] with the samples held fixed (a loss term differentiated on samples from p),
    summed exactly over the outcomes, against the closed-form gradient of the KL it optimises."""
    log_q = jax.nn.log_softmax(jnp.array([0.2, -0.4, 1.0, 2.5]))

    def expected_estimate(logits_p):
        log_p = jax.nn.log_softmax(logits_p)
        weights = jax.lax.stop_gradient(jnp.exp(log_p))  # samples come from p, not differentiated
        return jnp.sum(weights * kl_estimate(log_q - log_p, estimator))

    logits_p = jnp.array([0.5, 0.1, -0.3, -1.0])
    expected = jax.grad(lambda logits: target(jax.nn.log_softmax(logits), log_q))(logits_p)
    np.testing.assert_allclose(jax.grad(expected_estimate)(logits_p), expected, rtol=1e-5, atol=1e-7)


def test_k1_is_refused_as_a_loss_term_with_the_reason():
    for good in KL_LOSS_ESTIMATORS:
        require_loss_estimator("kl_estimator", good)
    with pytest.raises(ValueError, match=r"kl_estimator='k1' cannot be a loss term: .*zero in expectation.*use k2"):
        require_loss_estimator("kl_estimator", "k1")
    with pytest.raises(ValueError, match=re.escape("kl_estimator must be one of k2, k3; got 'k4'")):
        require_loss_estimator("kl_estimator", "k4")


def test_expected_estimators_equal_categorical_kl_exactly():
    """Summing over all outcomes (no sampling): E_p[k1] = E_p[k3] = KL(p || q); E_p[k2] >= 0, and every
    estimator is 0 where p = q."""
    p = jax.nn.softmax(jnp.array([0.5, 0.1, -0.3, 1.2]))
    q = jax.nn.softmax(jnp.array([0.2, -0.4, 1.0, 0.0]))
    closed = float(jnp.sum(p * (jnp.log(p) - jnp.log(q))))
    log_ratio = jnp.log(q) - jnp.log(p)
    assert float(jnp.sum(p * kl_k1(log_ratio))) == pytest.approx(closed, rel=1e-5)
    assert float(jnp.sum(p * kl_k3(log_ratio))) == pytest.approx(closed, rel=1e-5)
    assert float(jnp.sum(p * kl_k2(log_ratio))) > 0.0
    for name in ("k1", "k2", "k3"):
        assert float(jnp.sum(p * kl_estimate(jnp.zeros(4), name))) == 0.0
