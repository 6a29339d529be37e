"""In-jit progress reporting: one host call per report for all of a device's runs, always at the last update."""

import io

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.progress import MAX_REPORTS, emit_progress
from purerl.io.progress_bar import ProgressBar


def run(num_updates: int, num_runs: int):
    """A scan over updates of a vmapped "update", reporting outside the vmap, as the chunk runner does."""
    calls = []
    run_ids = jnp.arange(num_runs)

    def body(total, update):
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(jax.random.split(jax.random.key(0), num_runs), update)
        values = jax.vmap(jax.random.normal)(keys)
        emit_progress(lambda u, r, v: calls.append((u, r.copy(), v.copy())), update, run_ids, values, num_updates)
        return total + values, values

    _, values = jax.jit(lambda: jax.lax.scan(body, jnp.zeros(num_runs), jnp.arange(num_updates)))()
    return calls, np.asarray(values)


def test_reports_all_runs_at_once_and_the_last_update():
    calls, values = run(num_updates=1000, num_runs=3)
    updates = [u for u, _, _ in calls]
    assert updates[0] == 0 and updates[-1] == 999
    assert len(updates) <= MAX_REPORTS + 1 and updates == sorted(updates)
    for update, run_ids, reported in calls:
        np.testing.assert_array_equal(run_ids, [0, 1, 2])
        np.testing.assert_allclose(reported, values[update], rtol=1e-6)  # one value per run


def test_every_update_reported_in_short_runs():
    calls, _ = run(num_updates=7, num_runs=2)
    assert [u for u, _, _ in calls] == list(range(7))


def test_bar_averages_the_latest_return_of_every_real_run_over_devices():
    stream = io.StringIO()
    bar = ProgressBar(num_updates=10, steps_per_update=4, num_seeds=3, stream=stream)
    bar(9, np.array([0, 1]), np.array([10.0, 20.0]))  # device 0's runs are done; run 2 has not reported yet
    assert stream.getvalue() == ""
    bar(9, np.array([2, 3]), np.array([30.0, 1e6]))  # device 1's: run 3 is padding, left out
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "100%" in lines[0] and "return 20.0" in lines[0]  # one line at 100%, not two
    bar(9, np.array([0, 1]), np.array([10.0, 20.0]))
    assert len(stream.getvalue().splitlines()) == 1


def test_bar_follows_the_slowest_device_and_never_moves_back():
    """Devices report at their own pace: the bar shows the slowest run's progress, and its 100% line the
    mean return of every run's last update (it drew the fastest device's 100% with stale returns before)."""
    stream = io.StringIO()
    bar = ProgressBar(num_updates=10, steps_per_update=4, num_seeds=4, stream=stream)
    for update in range(10):  # device 0 (runs 0, 1) runs ahead of device 1 (runs 2, 3) by 5 updates
        bar(update, np.array([0, 1]), np.array([update, update], float))
        if update >= 5:
            bar(update - 5, np.array([2, 3]), np.array([update - 5, update - 5], float))
    for update in range(5, 10):
        bar(update, np.array([2, 3]), np.array([update, update], float))
    percents = [int(line.split("]")[1].split("%")[0]) for line in stream.getvalue().splitlines()]
    assert percents == sorted(percents) and percents[-1] == 100 and percents.count(100) == 1
    assert stream.getvalue().splitlines()[-1].endswith("return 9.0")  # every run's update-9 return


def test_bar_of_one_process_waits_only_for_its_own_runs():
    stream = io.StringIO()
    bar = ProgressBar(num_updates=2, steps_per_update=4, num_seeds=4, stream=stream, runs=np.array([2, 3]))
    bar(1, np.array([2, 3]), np.array([5.0, 7.0]))  # runs 0 and 1 live on another process
    assert "100%" in stream.getvalue() and "return 6.0" in stream.getvalue()
