"""A dependency-free progress bar for training runs, fed by the in-jit progress reports of every device."""

import sys
import threading
import time
from typing import TextIO

import numpy as np


class ProgressBar:
    """``bar(update, run_ids, returns)``: draws env steps, throughput and the mean latest return over runs.

    Each device reports its own runs (``purerl.core.progress``), possibly from several threads at once and
    at different paces; the bar keeps every run's latest update and return and shows the progress of the
    slowest run (so it never moves back, and reaches 100% once every run has done its last update, showing
    their final mean return). ``runs`` are the runs this process reports (default all ``num_seeds``): in a
    multi-process run, a process sees only its own devices' runs (``purerl.core.sharding.local_runs``).

    With ``steps_per_update=None`` (GRPO: episodes end early, so the steps per update vary) it counts updates
    instead of env steps. On a terminal it redraws one line; otherwise (CI logs, files) it prints a line
    every 10% of the run.
    """

    def __init__(
        self,
        num_updates: int,
        steps_per_update: int | None,
        num_seeds: int,
        stream: TextIO | None = None,
        runs: np.ndarray | None = None,
    ):
        self.num_updates, self.steps_per_update, self.num_seeds = num_updates, steps_per_update, num_seeds
        self.runs = np.arange(num_seeds) if runs is None else np.asarray(runs)
        self.stream = sys.stderr if stream is None else stream
        self.interactive = self.stream.isatty()
        self.start_time = time.perf_counter()
        self.first_update = 0
        self.next_line_fraction = 0.1
        self.latest_returns = np.full(num_seeds, np.nan)
        self.latest_updates = np.full(num_seeds, -1)
        self.shown = 0  # updates done by the slowest run, as last drawn
        self.lock = threading.Lock()

    def start(self, first_update: int = 0) -> None:
        """Starts the clock; ``first_update`` > 0 when a resumed run restored that many updates."""
        self.start_time = time.perf_counter()
        self.first_update = first_update

    def __call__(self, update: int, run_ids: np.ndarray, returns: np.ndarray) -> None:
        with self.lock:
            real = run_ids < self.num_seeds  # not the padding of a seed count split over devices
            self.latest_returns[run_ids[real]] = returns[real]
            self.latest_updates[run_ids[real]] = update
            done = int(self.latest_updates[self.runs].min()) + 1
            if done > self.shown:
                self.shown = done
                self._draw(done)

    def _draw(self, done: int) -> None:
        fraction = done / self.num_updates
        if not self.interactive and fraction < self.next_line_fraction:  # after 100%: 110%, never reached
            return
        self.next_line_fraction = np.floor(fraction * 10 + 1) / 10
        elapsed = max(time.perf_counter() - self.start_time, 1e-9)
        if self.steps_per_update is None:
            rate = (done - self.first_update) / elapsed
            count = f"{done:,}/{self.num_updates:,} updates  {rate:,.1f} updates/s"
        else:
            steps = done * self.steps_per_update
            sps = (done - self.first_update) * self.steps_per_update * self.num_seeds / elapsed
            count = f"{steps:,}/{self.num_updates * self.steps_per_update:,} steps/seed  {sps:,.0f} SPS"
        returns = self.latest_returns[self.runs]
        mean_return = np.nanmean(returns) if np.isfinite(returns).any() else float("nan")
        width = 24
        bar = "#" * int(width * fraction) + "-" * (width - int(width * fraction))
        line = f"[{bar}] {fraction:4.0%}  {count}  return {mean_return:.1f}"
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
