"""The one exception type for user errors, and the one way to say an exception in a line.

A ``UserError`` is something the user can fix (a missing file, no face in the video,
an unknown persona). The CLI prints its message as one line and exits non-zero;
anything else is a bug and shows a traceback with ``--verbose``.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""

    exit_code = 1


class AlreadyRunning(UserError):
    """Another f2f-cam daemon holds this user's lock.

    Its own exit status (3), so that a service manager can tell it from a failure:
    the systemd unit from installer/ sets ``RestartPreventExitStatus=3``.
    """

    exit_code = 3


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
