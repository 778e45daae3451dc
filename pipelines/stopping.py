"""Whether a run was asked to stop (SIGTERM, SIGINT), whatever became of Dagster's interruption.

Dagster turns the signal into an exception raised wherever the main thread happens to be. Raised
inside a weakref callback or a destructor, Python prints "Exception ignored" and drops it; between
two steps the in-process executor only records it and never looks again. The run then went on
and published, after a stop that had been asked for. Python also writes the number of every
signal it handles to a wakeup file descriptor, whichever handler runs: each step reads it when it
opens the warehouse, and the raw steps before each file.
"""

from __future__ import annotations

import os
import signal

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class StopRequests:
    """Signals received while it watches (from :meth:`watch` to :meth:`close`)."""

    def __init__(self) -> None:
        self._read: int | None = None
        self._write: int | None = None
        self._previous = -1
        self._received: set[int] = set()

    def watch(self) -> None:
        """Start watching; does nothing off the main thread (no signal is handled there)."""
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        try:
            self._previous = signal.set_wakeup_fd(write)
        except ValueError:  # not the main thread
            os.close(read)
            os.close(write)
            return
        self._read, self._write = read, write

    def requested(self) -> bool:
        """Whether SIGTERM or SIGINT was received since :meth:`watch`."""
        if self._read is not None:
            while True:
                try:
                    received = os.read(self._read, 512)
                except BlockingIOError:
                    break
                if not received:
                    break
                self._received.update(received)
        return bool(self._received & STOP_SIGNALS)

    def close(self) -> None:
        if self._read is None:
            return
        try:
            signal.set_wakeup_fd(self._previous)
        except ValueError:
            pass
        os.close(self._read)
        os.close(self._write)
        self._read = self._write = None
