"""The one minibatch loop against a plain Python loop: the same shuffles, the same minibatches, the same
order of steps, and the early stop."""

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.minibatch import minibatch_epochs, shuffled_minibatches


def plain_epochs(batch: dict, key: jax.Array, epochs: int, minibatches: int, axis: int, stop_above=None):
    """Every minibatch the loop should visit, in order, as numpy arrays; None for a skipped epoch."""
    visited, stopped = [], False
    for epoch_key in jax.random.split(key, epochs):
        if stopped:
            visited.append(None)
            continue
        order = np.asarray(jax.random.permutation(epoch_key, batch["x"].shape[axis]))
        size = len(order) // minibatches
        parts = [order[m * size : (m + 1) * size] for m in range(minibatches)]
        epoch = [{k: np.take(v, part, axis=axis) for k, v in batch.items()} for part in parts]
        visited.append(epoch)
        if stop_above is not None and np.mean([mb["x"].sum() for mb in epoch]) > stop_above:
            stopped = True
    return visited


def test_shuffled_minibatches_split_along_the_axis():
    batch = {"x": jnp.arange(24.0).reshape(3, 8), "y": jnp.arange(8)}  # x: [T=3, B=8], y: [B]
    out = shuffled_minibatches({"x": batch["x"]}, jax.random.key(0), 4, axis=1)
    assert out["x"].shape == (4, 3, 2)
    columns = np.sort(np.asarray(out["x"][:, 0, :]).ravel())
    np.testing.assert_array_equal(columns, np.arange(8.0))  # every column exactly once
    np.testing.assert_array_equal(out["x"][:, 1] - out["x"][:, 0], 8.0)  # whole columns travel together


def test_epochs_visit_the_plain_loops_minibatches_in_order_and_stop_early():
    batch = {"x": jax.random.normal(jax.random.key(1), (4, 12)), "w": jnp.tile(jnp.arange(12.0), (2, 1))}
    key = jax.random.key(2)

    def step(carry, minibatch):  # records each minibatch's sum, in order, in its stats
        return carry + 1, {"x": jnp.sum(minibatch["x"]), "w": jnp.sum(minibatch["w"])}

    for stop_above in (None, -1e9):  # never / after the first epoch
        stop = None if stop_above is None else (lambda stats, t=stop_above: jnp.mean(stats["x"]) > t)
        count, stats, ran = minibatch_epochs(step, jnp.asarray(0), batch, key, 3, 4, axis=1, stop=stop)
        expected = plain_epochs({k: np.asarray(v) for k, v in batch.items()}, key, 3, 4, 1, stop_above)
        assert stats["x"].shape == (3, 4)
        np.testing.assert_array_equal(ran, [epoch is not None for epoch in expected])
        assert int(count) == 4 * sum(epoch is not None for epoch in expected)
        for e, epoch in enumerate(expected):
            want = np.zeros(4) if epoch is None else [mb["x"].sum() for mb in epoch]
            np.testing.assert_allclose(stats["x"][e], want, rtol=1e-5, atol=1e-5)
            if epoch is not None:
                np.testing.assert_allclose(stats["w"][e], [mb["w"].sum() for mb in epoch])
