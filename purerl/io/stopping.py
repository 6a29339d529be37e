"""Stopping a run on request, in bounded time, without losing what was saved: ``StopSignals`` turns SIGINT
(Ctrl-C) and SIGTERM (schedulers) into a flag the training loop reads between chunks (control) or steps (LM),
with a watchdog that exits after a grace period if the running chunk does not end. Both run drivers use it
(``purerl.io.chunked`` and ``purerl.io.lm_run``), with the errors they raise to stop.
"""

import os
import select
import signal
import sys
import threading
import time
from typing import Any


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the run; the message says where it was saved and how to resume. The process
    exits with ``128 + signum``, as a process killed by the signal would."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN or infinite; the message names the update and the run."""


DEFAULT_STOP_GRACE = 20.0  # seconds a stop request waits for the running chunk (schedulers SIGKILL after ~30 s)


def check_stop_grace(seconds: float) -> None:
    """``--stop-grace`` must be a positive, finite number of seconds that a thread can wait."""
    if not 0 < seconds <= threading.TIMEOUT_MAX:
        raise ValueError(f"--stop-grace must be > 0 and at most {threading.TIMEOUT_MAX:.0f} seconds, got {seconds!r}")


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``received``, so the running chunk finishes and the run is
    saved; a second Ctrl-C stops at once. Only the main thread can own signal handlers; elsewhere this is
    a no-op.

    The main thread may be blocked inside a computation, where Python signal handlers cannot run, so a
    watchdog thread does the rest. It learns of every signal from ``signal.set_wakeup_fd``, which the
    interpreter's C-level handler writes to at once, even then: it prints one line acknowledging the first
    stop signal; on a second SIGINT it exits at once (status 130); and if the process is still inside this
    context ``grace_seconds`` after the first signal (a chunk that does not finish, a save that hangs), it
    prints one line naming ``last_saved`` and exits with status 128 + the signal's number."""

    def __init__(self, unit: str = "the current chunk of updates", grace_seconds: float = DEFAULT_STOP_GRACE) -> None:
        check_stop_grace(grace_seconds)
        self.unit, self.grace_seconds = unit, grace_seconds
        self.received: str | None = None
        self.signum = signal.SIGINT
        self.last_saved = "none was saved"  # the loop keeps it current: "update 20 in DIR"
        self.previous: dict[int, Any] = {}
        self.finished = threading.Event()
        self.pipe: tuple[int, int] | None = None
        self.previous_wakeup_fd = -1

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received, self.signum = signal.Signals(signum).name, signum

    def _watch(self, read_fd: int) -> None:
        """Reads the signals written to the wakeup pipe until it is closed, acting on them (class docstring)."""
        first, deadline = None, None
        try:
            while not self.finished.is_set():
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                if not select.select([read_fd], [], [], timeout)[0]:  # the grace period ran out
                    self._exit(
                        first,
                        f"{signal.Signals(first).name}, and {self.unit} did not finish within the "
                        f"{self.grace_seconds:g} s grace period (--stop-grace); exiting without saving it",
                    )
                data = os.read(read_fd, 64)
                if not data:  # the pipe was closed: the context is done
                    return
                for signum in data:
                    if signum not in (signal.SIGINT, signal.SIGTERM):
                        continue
                    if first is None:
                        first, deadline = signum, time.monotonic() + self.grace_seconds
                        self._print(
                            f"\n{signal.Signals(signum).name}: stopping after {self.unit} (at most "
                            f"{self.grace_seconds:g} s; Ctrl-C again to stop at once) ..."
                        )
                    elif signum == signal.SIGINT:
                        self._exit(signum, "a second SIGINT; stopping at once without saving")
        finally:
            os.close(read_fd)

    def _exit(self, signum: int, why: str) -> None:
        if not self.finished.is_set():
            self._print(f"\npurerl: stopped: {why}; the last good checkpoint: {self.last_saved}")
            os._exit(128 + signum)

    @staticmethod
    def _print(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            self.pipe = (read_fd, write_fd)
            self.previous_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            threading.Thread(target=self._watch, args=(read_fd,), name="purerl-stop-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finished.set()
        if self.pipe is not None:
            signal.set_wakeup_fd(self.previous_wakeup_fd)
            os.close(self.pipe[1])  # the watchdog reads end-of-file, closes the read end and returns
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
