"""One build at a time: an exclusive lock on the warehouse's work folder."""

from __future__ import annotations

import fcntl
import os
import time
from datetime import UTC, datetime
from pathlib import Path


class BuildLocked(RuntimeError):
    """Another build holds the warehouse."""


# A build waits this long for the lock before it gives up: the sensor holds it for an instant
# at each tick to see whether a build runs, and a build starting then must not be refused.
PATIENCE_SECONDS = 2.0


class BuildLock:
    """Exclusive, non-blocking lock held for the whole of a build (released if the process dies).

    ``probe``: taken for an instant to see whether a build holds it (the sensor); it neither
    waits nor writes itself into the file as the holder."""

    def __init__(self, path: Path, probe: bool = False):
        self.path = path
        self.probe = probe
        self._handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        deadline = time.monotonic() + (0 if self.probe else PATIENCE_SECONDS)
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "unknown process"
                handle.close()
                raise BuildLocked(
                    f"Another build is writing this warehouse ({holder}). This build stops without "
                    f"changing anything; run it again when that build has finished. Lock: {self.path}"
                ) from None
        if not self.probe:
            handle.seek(0)
            handle.truncate()
            handle.write(f"PID {os.getpid()}, started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
            handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
