"""Preference losses against hand computations with math.log/exp on tiny inputs, and their invariants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.preference import bradley_terry_loss, dpo_loss


def log_sigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


CHOSEN, REJECTED = [-3.0, -7.5, -2.0], [-4.0, -6.0, -9.0]
REF_CHOSEN, REF_REJECTED = [-3.5, -7.0, -4.0], [-3.0, -6.5, -8.0]
LENGTHS_W, LENGTHS_L = [2.0, 5.0, 4.0], [3.0, 4.0, 6.0]


def arrays(*lists):
    return [jnp.asarray(x, jnp.float32) for x in lists]


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_sigmoid_dpo_with_label_smoothing_matches_hand_computation(eps):
    beta = 0.5
    loss, metrics = dpo_loss(*arrays(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED), beta, "sigmoid", eps)
    for i in range(3):
        h = (CHOSEN[i] - REF_CHOSEN[i]) - (REJECTED[i] - REF_REJECTED[i])
        expected = -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
        assert loss[i] == pytest.approx(expected, rel=1e-5)
    rewards_w = [beta * (c - r) for c, r in zip(CHOSEN, REF_CHOSEN, strict=True)]
    rewards_l = [beta * (c - r) for c, r in zip(REJECTED, REF_REJECTED, strict=True)]
    assert metrics["rewards/chosen"] == pytest.approx(np.mean(rewards_w), rel=1e-5)
    assert metrics["rewards/margins"] == pytest.approx(np.mean(rewards_w) - np.mean(rewards_l), rel=1e-5)
    assert metrics["rewards/accuracies"] == pytest.approx(
        np.mean([w > lose for w, lose in zip(rewards_w, rewards_l, strict=True)])
    )
    assert metrics["logps/rejected"] == pytest.approx(np.mean(REJECTED))


def test_ipo_averages_log_ratios_per_token_and_hinge():
    beta = 0.1
    inputs = arrays(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED)
    ipo, _ = dpo_loss(
        *inputs, beta, "ipo", chosen_lengths=jnp.asarray(LENGTHS_W), rejected_lengths=jnp.asarray(LENGTHS_L)
    )
    hinge, _ = dpo_loss(*inputs, beta, "hinge")
    for i in range(3):
        h_avg = (CHOSEN[i] - REF_CHOSEN[i]) / LENGTHS_W[i] - (REJECTED[i] - REF_REJECTED[i]) / LENGTHS_L[i]
        assert ipo[i] == pytest.approx((h_avg - 1 / (2 * beta)) ** 2, rel=1e-5)
        h = (CHOSEN[i] - REF_CHOSEN[i]) - (REJECTED[i] - REF_REJECTED[i])
        assert hinge[i] == pytest.approx(max(0.0, 1 - beta * h), abs=1e-6)
    with pytest.raises(ValueError, match="pass chosen_lengths and rejected_lengths"):
        dpo_loss(*inputs, beta, "ipo")


def test_dpo_at_initialisation_is_ln2_with_zero_rewards_and_its_gradient_raises_the_margin():
    chosen, rejected = arrays(CHOSEN, REJECTED)
    loss, metrics = dpo_loss(chosen, rejected, chosen, rejected, 0.1)
    np.testing.assert_allclose(loss, math.log(2), rtol=1e-6)
    assert metrics["rewards/chosen"] == metrics["rewards/rejected"] == metrics["rewards/margins"] == 0
    assert metrics["rewards/accuracies"] == 0  # strict: equal rewards are not a win

    def mean_loss(c, r):
        return jnp.mean(dpo_loss(c, r, chosen, rejected, 0.1)[0])

    grad_chosen, grad_rejected = jax.grad(mean_loss, argnums=(0, 1))(chosen, rejected)
    # d/dl_w of -log sigmoid(beta h) at h = 0 is -beta/2 per pair (over the mean of 3 pairs).
    np.testing.assert_allclose(grad_chosen, -0.1 / 2 / 3, rtol=1e-5)
    np.testing.assert_allclose(grad_rejected, 0.1 / 2 / 3, rtol=1e-5)


def test_bradley_terry_loss_margin_centring_and_accuracy():
    r_w, r_l = [1.0, -0.5, 2.0], [0.0, 0.5, 2.5]
    loss, metrics = bradley_terry_loss(*arrays(r_w, r_l), margin=0.25, center_coef=0.01)
    for i in range(3):
        expected = -log_sigmoid(r_w[i] - r_l[i] - 0.25) + 0.01 * (r_w[i] + r_l[i]) ** 2
        assert loss[i] == pytest.approx(expected, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["margin"] == pytest.approx(np.mean(np.subtract(r_w, r_l)))


def test_bad_dpo_settings_are_one_line_errors():
    inputs = arrays(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED)
    with pytest.raises(ValueError, match="unknown DPO loss_type 'kto'"):
        dpo_loss(*inputs, 0.1, "kto")
    with pytest.raises(ValueError, match=r"label_smoothing=0.5 must be in \[0, 0.5\)"):
        dpo_loss(*inputs, 0.1, label_smoothing=0.5)
