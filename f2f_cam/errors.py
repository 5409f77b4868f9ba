"""The one exception type for user errors, and the one way to say an exception in a line.

A ``UserError`` is something the user can fix (a missing file, no face in the video,
an unknown persona). The CLI prints its message as one line and exits non-zero;
anything else is a bug and shows a traceback with ``--verbose``.
"""

from __future__ import annotations

import errno
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""

    exit_code = 1


class AlreadyRunning(UserError):
    """Another f2f-cam daemon holds this user's lock.

    Its own exit status (3), so that a service manager can tell it from a failure:
    the systemd unit from installer/ sets ``RestartPreventExitStatus=3``.
    """

    exit_code = 3


class DiskFull(UserError):
    """A write that failed for lack of space: the one line for it, naming what was being
    written. What was there before is intact (every writer goes through ``f2f_cam.atomic``)."""

    def __init__(self, path: Path | str):
        self.path = path
        super().__init__(f"no space left on device writing {path}: free some space and try again")


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` is a full disk (ENOSPC) or a full quota (EDQUOT)."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its first non-empty line, whitespace folded,
    at most ``limit`` characters; the type's name when it has no message.

    Library errors (FFmpeg, TorchScript, pyvirtualcam) often span many lines, and
    only the first says what went wrong.
    """
    for line in str(e).splitlines():
        text = " ".join(line.split())
        if text:
            return text if len(text) <= limit else text[:limit - 3] + "..."
    return type(e).__name__
