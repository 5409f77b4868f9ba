"""The one exception type for user errors.

A ``UserError`` is something the user can fix (a missing file, no face in the video,
an unknown persona). The CLI prints its message as one line and exits non-zero;
anything else is a bug and shows a traceback with ``--verbose``.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""
