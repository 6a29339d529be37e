"""Group-relative advantages and sequence-loss aggregation against plain numpy loops."""

import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.group_advantages import group_advantages, zero_spread_fraction
from purerl.core.losses import aggregate_loss


def reference_group_advantages(scores, mask, scale, eps=1e-6):
    """One group at a time, with Python's statistics over the members that take part."""
    scores, mask = np.asarray(scores, np.float64), np.asarray(mask, bool)
    out = np.zeros_like(scores)
    for index in np.ndindex(scores.shape[:-1]):
        members = scores[index][mask[index]]
        if members.size == 0:
            continue
        centred = scores[index] - members.mean()
        std = members.std(ddof=1) if members.size > 1 else 0.0
        out[index] = np.where(mask[index], centred if scale == "none" else centred / (std + eps), 0.0)
    return out


@pytest.mark.parametrize("scale", ["std", "none"])
def test_group_advantages_match_numpy_and_have_zero_mean_per_group(scale):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 3, 8)).astype(np.float32) * 10
    advantages = np.asarray(group_advantages(jnp.asarray(scores), scale=scale))
    expected = reference_group_advantages(scores, np.ones(scores.shape, bool), scale)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(advantages.mean(axis=-1), 0.0, atol=1e-5)
    if scale == "std":
        np.testing.assert_allclose(advantages.std(axis=-1, ddof=1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("scale", ["std", "none"])
def test_masked_members_are_left_out_of_the_group_statistics(scale):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(6, 4)).astype(np.float32)
    mask = rng.random((6, 4)) < 0.6
    mask[0] = False  # an empty group
    mask[1] = [True, False, False, False]  # a group of one
    advantages = np.asarray(group_advantages(jnp.asarray(scores), jnp.asarray(mask), scale))
    np.testing.assert_allclose(advantages, reference_group_advantages(scores, mask, scale), rtol=1e-5, atol=1e-6)
    assert np.all(advantages[~mask] == 0.0) and np.all(advantages[:2] == 0.0)


def test_identical_scores_give_exactly_zero_advantage():
    scores = jnp.array([[0.1, 0.1, 0.1, 0.1], [37.0, 37.0, 37.0, 37.0], [1.0, 2.0, 3.0, 4.0]])
    advantages = group_advantages(scores)
    assert np.all(np.asarray(advantages[:2]) == 0.0)
    assert float(zero_spread_fraction(scores)) == pytest.approx(2 / 3)


@pytest.mark.parametrize(("value", "size"), [(1 / 3, 8), (0.6, 8), (123.4, 16), (-2.7e5, 64), (1e-30, 5)])
@pytest.mark.parametrize("scale", ["std", "none"])
def test_equal_scores_float32_cannot_represent_give_exactly_zero(value, size, scale):
    # Before the spread rule: the float32 mean is a rounding step off and the "std" a rounding residue,
    # so 8 x 1/3 gave +-0.029, 8 x 0.6 gave 0.056 and 16 x 123.4 gave 0.91.
    scores = jnp.full((3, size), value, jnp.float32)
    mask = jnp.asarray(np.random.default_rng(0).random((3, size)) < 0.7).at[:, :2].set(True)
    assert np.all(np.asarray(group_advantages(scores, scale=scale)) == 0.0)
    assert np.all(np.asarray(group_advantages(scores, mask, scale)) == 0.0)
    assert float(zero_spread_fraction(scores)) == 1.0 and float(zero_spread_fraction(scores, mask)) == 1.0


def test_a_spread_beyond_rounding_is_still_a_spread():
    # Eight float32 rounding steps of 1.0 apart is the smallest spread that counts (purerl.core.spread).
    tiny = float(np.float32(1.0) + 16 * np.finfo(np.float32).eps) - 1.0
    advantages = np.asarray(group_advantages(jnp.array([1.0, 1.0 + tiny]), eps=0.0))
    np.testing.assert_allclose(advantages, [-1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-3)
    assert float(zero_spread_fraction(jnp.array([[1.0, 1.0 + tiny]]))) == 0.0


def test_group_of_two_is_plus_and_minus_one_over_sqrt_two_scaled():
    # centred values +-d/2 with sample std d/sqrt(2): advantages +-1/sqrt(2), whatever d is.
    advantages = np.asarray(group_advantages(jnp.array([3.0, 7.0]), eps=0.0))
    np.testing.assert_allclose(advantages, [-1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-6)


def test_unknown_scale_is_rejected():
    with pytest.raises(ValueError, match="unknown advantage scale 'mad'"):
        group_advantages(jnp.zeros((2, 4)), scale="mad")


def reference_aggregate(loss, mask, mode, horizon):
    """``loss``, ``mask``: ``[T, B]``; a loop over sequences and steps."""
    steps, sequences = loss.shape
    if mode == "grpo":
        means = []
        for b in range(sequences):
            valid = [loss[t, b] for t in range(steps) if mask[t, b]]
            means.append(sum(valid) / len(valid) if valid else 0.0)
        return sum(means) / sequences
    total = sum(loss[t, b] for t in range(steps) for b in range(sequences) if mask[t, b])
    if mode == "dapo":
        return total / max(1, int(mask.sum()))
    return total / (sequences * horizon)


@pytest.mark.parametrize("mode", ["grpo", "dapo", "dr_grpo"])
def test_aggregate_loss_matches_loops_in_both_layouts(mode):
    rng = np.random.default_rng(2)
    loss = rng.normal(size=(7, 5)).astype(np.float32)
    lengths = np.array([7, 1, 3, 0, 5])
    mask = np.arange(7)[:, None] < lengths[None, :]
    expected = reference_aggregate(loss, mask, mode, horizon=10)
    time_major = aggregate_loss(jnp.asarray(loss), jnp.asarray(mask), mode, horizon=10)
    batch_major = aggregate_loss(jnp.asarray(loss.T), jnp.asarray(mask.T), mode, horizon=10, time_axis=1)
    assert float(time_major) == pytest.approx(expected, rel=1e-5)
    assert float(batch_major) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mode", ["grpo", "dapo", "dr_grpo"])
def test_aggregate_loss_ignores_steps_outside_the_mask(mode):
    rng = np.random.default_rng(3)
    loss = rng.normal(size=(6, 4)).astype(np.float32)
    mask = np.arange(6)[:, None] < np.array([2, 6, 4, 1])[None, :]
    changed = np.where(mask, loss, 1e6)
    a = aggregate_loss(jnp.asarray(loss), jnp.asarray(mask), mode, horizon=6)
    b = aggregate_loss(jnp.asarray(changed), jnp.asarray(mask), mode, horizon=6)
    assert float(a) == float(b)


def test_unknown_aggregation_is_rejected():
    with pytest.raises(ValueError, match="unknown loss aggregation 'sum'"):
        aggregate_loss(jnp.zeros((3, 2)), jnp.ones((3, 2), bool), "sum", horizon=3)
