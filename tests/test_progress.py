"""In-jit progress reporting: one host call per report for all vmapped seeds, always at the last update."""

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.progress import MAX_REPORTS, emit_progress


def run(num_updates: int, num_seeds: int):
    calls = []

    def train(key):
        def body(total, update):
            value = jax.random.normal(jax.random.fold_in(key, update))
            token = emit_progress(lambda u, v: calls.append((u, v.copy())), update, value, num_updates)
            return total + value + token, value

        return jax.lax.scan(body, 0.0, jnp.arange(num_updates))

    _, values = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), num_seeds))
    return calls, np.asarray(values)


def test_reports_all_seeds_at_once_and_the_last_update():
    calls, values = run(num_updates=1000, num_seeds=3)
    updates = [u for u, _ in calls]
    assert updates[0] == 0 and updates[-1] == 999
    assert len(updates) <= MAX_REPORTS + 1 and updates == sorted(updates)
    for update, reported in calls:
        np.testing.assert_allclose(reported, values[:, update], rtol=1e-6)  # one value per seed


def test_every_update_reported_in_short_runs():
    calls, _ = run(num_updates=7, num_seeds=2)
    assert [u for u, _ in calls] == list(range(7))
