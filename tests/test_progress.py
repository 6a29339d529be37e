"""Progress: the chunk runner reports every run's latest return after each chunk; the bar draws it."""

import io

import jax
import numpy as np

from purerl.control import ppo
from purerl.core.sharding import seed_mesh
from purerl.io.chunked import train_in_chunks
from purerl.io.progress_bar import ProgressBar


def test_chunks_report_every_runs_last_return_after_each_chunk():
    config = ppo.PPOConfig(total_timesteps=7 * 32, num_envs=2, num_steps=16, hidden_sizes=(8,), update_epochs=1)
    assert config.num_updates == 7
    calls = []
    output = train_in_chunks(
        ppo.init,
        ppo.update,
        config.num_updates,
        jax.random.split(jax.random.key(0), 3),
        config,
        seed_mesh(),
        chunk_updates=3,
        progress=lambda done, returns: calls.append((done, returns.copy())),
    )
    assert [done for done, _ in calls] == [3, 6, 7]  # after each chunk, the shorter last one included
    for done, returns in calls:
        np.testing.assert_array_equal(returns, output.metrics["episode_return"][:, done - 1])  # one per run


def test_bar_prints_a_line_per_tenth_of_the_run_off_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(num_updates=20, steps_per_update=4, num_runs=2, stream=stream)
    for done in range(3, 21, 3):  # chunks of 3 updates: 15%, 30%, ..., 90%, then the last one
        bar(done, np.array([done, done + 2.0]))
    bar(20, np.array([20.0, np.nan]))  # a run without a finished episode yet is left out of the mean
    lines = stream.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["15%", "30%", "45%", "60%", "75%", "90%", "100%"]
    assert "72/80 steps/seed" in lines[-2] and lines[-2].endswith("return 19.0")
    assert "80/80 steps/seed" in lines[-1] and lines[-1].endswith("return 20.0")
    early = io.StringIO()
    ProgressBar(num_updates=20, steps_per_update=4, num_runs=2, stream=early)(2, np.array([np.nan, np.nan]))
    assert early.getvalue().rstrip().endswith("return - (no episode has ended)")  # not "return nan"


def test_bar_counts_updates_when_steps_per_update_vary_and_a_resumed_run_draws_from_the_next_tenth():
    stream = io.StringIO()
    bar = ProgressBar(num_updates=100, steps_per_update=None, num_runs=1, stream=stream)
    bar.start(first_update=42)  # a run resumed at 42%: its first line is at 50%, not after its first chunk
    for done in (43, 45, 49, 50, 61, 100):
        bar(done, np.array([1.0]))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "50/100 updates" in lines[0] and "61/100 updates" in lines[1]
    assert "100/100 updates" in lines[2]


def test_a_run_that_stops_between_two_tenths_ends_on_a_line_where_it_stopped():
    stream = io.StringIO()
    bar = ProgressBar(num_updates=800, steps_per_update=None, num_runs=1, stream=stream)
    for done in (161, 168, 210):  # 20% drawn; 21% and 26% inside the next tenth
        bar(done, np.array([1.0]))
    bar.close()  # a stop at update 210
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "161/800 updates" in lines[0] and "210/800 updates" in lines[1]
    finished = io.StringIO()
    bar = ProgressBar(num_updates=10, steps_per_update=None, num_runs=1, stream=finished)
    bar(10, np.array([1.0]))
    bar.close()
    assert len(finished.getvalue().splitlines()) == 1  # a finished run's 100% line is not drawn twice
