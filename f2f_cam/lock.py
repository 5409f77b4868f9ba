"""One daemon per user: an exclusive lock on ``daemon.lock`` in the runtime folder.

The OS drops the lock when the process dies, so a crash never leaves a stale lock.
``doctor`` imports this alone to ask whether a daemon runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from f2f_cam.errors import AlreadyRunning

LOCK_NAME = "daemon.lock"


class InstanceLock:
    """``acquire()`` takes the lock or raises ``AlreadyRunning`` (exit status 3)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        f = open(self.path, "a+", encoding="utf-8")
        try:
            _lock_file(f)
        except OSError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            raise AlreadyRunning(f"an f2f-cam daemon is already running{f' (pid {pid})' if pid else ''}; "
                                 "see it with `f2f-cam ctl status`, stop it with `f2f-cam ctl quit`") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock (a daemon runs); changes nothing."""
        if self._file is not None or not self.path.exists():
            return False
        with open(self.path, "a+", encoding="utf-8") as f:
            try:
                _lock_file(f)
            except OSError:
                return True
        return False  # closing the file dropped the lock we just took

    def release(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()  # closing drops the lock; the file stays (unlinking it would race)


def _lock_file(f) -> None:
    if os.name == "nt":
        import msvcrt

        f.seek(0)  # every process locks the same byte, whatever the file's length
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
