"""The one exception type for user errors.

A ``UserError`` is something the user can fix (a missing file, no face in the video,
an unknown persona). The CLI prints its message as one line and exits non-zero;
anything else is a bug and shows a traceback with ``--verbose``.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""

    exit_code = 1


class AlreadyRunning(UserError):
    """Another f2f-cam daemon holds this user's lock.

    Its own exit status (3), so that a service manager can tell it from a failure:
    the systemd unit from installer/ sets ``RestartPreventExitStatus=3``.
    """

    exit_code = 3
