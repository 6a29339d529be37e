"""A dependency-free progress bar for training runs, drawn by the host between jitted chunks of updates."""

import sys
import time
from typing import TextIO

import numpy as np


class ProgressBar:
    """``bar(done, values)`` after each chunk: ``done`` updates of every run are finished and ``values
    [runs]`` is each run's ``metric`` at the last of them (the algorithm's training curve: the episode return,
    or BC's loss). Draws env steps, throughput and the mean of ``metric`` over runs.

    The chunks report from the host, not from inside the compiled program: a program that holds a host
    callback cannot be kept in the compilation cache (``purerl.io.compile_cache``). So the bar moves once
    per chunk (``--chunk-updates``).

    With ``steps_per_update=None`` (GRPO: episodes end early, so the steps per update vary) it counts updates
    instead of env steps. On a terminal it redraws one line; otherwise (CI logs, files) it prints a line
    every 10% of the run.
    """

    def __init__(
        self,
        num_updates: int,
        steps_per_update: int | None,
        num_runs: int,
        stream: TextIO | None = None,
        metric: str = "episode_return",
    ):
        self.num_updates, self.steps_per_update, self.num_runs = num_updates, steps_per_update, num_runs
        self.metric = metric
        self.stream = sys.stderr if stream is None else stream
        self.interactive = self.stream.isatty()
        self.start_time = time.perf_counter()
        self.first_update = 0
        self.next_line_fraction = 0.1
        self.undrawn: tuple[int, np.ndarray] | None = None  # the latest report, if no line showed it

    def start(self, first_update: int = 0) -> None:
        """Starts the clock; ``first_update`` > 0 when a resumed run restored that many updates."""
        self.start_time = time.perf_counter()
        self.first_update = first_update
        # Off a terminal, a resumed run's first line is at the next tenth, as it would be without the stop,
        # not after its first chunk, whose rate one chunk's timing decides.
        self.next_line_fraction = np.floor(first_update / self.num_updates * 10 + 1) / 10

    def __call__(self, done: int, values: np.ndarray) -> None:
        fraction = done / self.num_updates
        if not self.interactive and fraction < self.next_line_fraction:  # after 100%: 110%, never reached
            self.undrawn = done, values
            return
        self.undrawn = None
        self.next_line_fraction = np.floor(fraction * 10 + 1) / 10
        elapsed = max(time.perf_counter() - self.start_time, 1e-9)
        if self.steps_per_update is None:
            rate = (done - self.first_update) / elapsed
            count = f"{done:,}/{self.num_updates:,} updates  {rate:,.1f} updates/s"
        else:
            steps = done * self.steps_per_update
            sps = (done - self.first_update) * self.steps_per_update * self.num_runs / elapsed
            count = f"{steps:,}/{self.num_updates * self.steps_per_update:,} steps/seed  {sps:,.0f} SPS"
        if self.metric != "episode_return":
            shown = f"{self.metric} {np.nanmean(values):.4g}"
        elif np.isfinite(values).any():
            shown = f"return {np.nanmean(values):.1f}"
        else:
            shown = "return - (no episode has ended)"
        width = 24
        bar = "#" * int(width * fraction) + "-" * (width - int(width * fraction))
        line = f"[{bar}] {fraction:4.0%}  {count}  {shown}"
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the bar; off a terminal, first a line for the last report if none showed it (a run stopped
        between two tenths ends on where it stopped)."""
        if self.undrawn is not None:
            self.next_line_fraction = 0.0
            self(*self.undrawn)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
