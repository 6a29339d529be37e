"""A check every algorithm's ``train`` must pass: determinism, and seed i of a vmapped run == a single run."""

import jax
import numpy as np


def assert_vmapped_seed_equals_single_run(train, keys: jax.Array, index: int) -> None:
    batched_state, batched = jax.jit(jax.vmap(train))(keys)
    single_state, single = jax.jit(train)(keys[index])
    _, again = jax.jit(train)(keys[index])
    for name in single:
        np.testing.assert_array_equal(single[name], again[name], err_msg=name)  # same key, same result
        np.testing.assert_allclose(batched[name][index], single[name], rtol=1e-5, atol=1e-6, err_msg=name)
    batched_params = jax.tree.leaves(batched_state.train_state.params)
    for a, b in zip(batched_params, jax.tree.leaves(single_state.train_state.params), strict=True):
        np.testing.assert_allclose(a[index], b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched["episode_return"][0], batched["episode_return"][1])  # seeds differ
