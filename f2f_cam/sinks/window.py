"""The window sink: a preview window in a process of its own, and the daemon's preview tap.

OpenCV's HighGUI (a Qt build in the wheels) works only on a process's main thread,
and in the daemon that thread belongs to the tray. So the window runs in a child
process (``python -m f2f_cam.sinks.window``), fed through a memory-mapped file: the daemon
copies the newest frame in and never waits; a seqlock (an odd sequence number while a
frame is being written) lets the child skip half-written frames.

The child draws an overlay over its own copy of each frame (persona, layout, fps,
state; H opens a help panel) and turns keys into control requests (``preview_ui``
holds the key table and the drawing). With a daemon behind it, the daemon passes its
control folder, and a thread of the child polls ``status`` and sends the keys'
commands there over the control socket, the same way ``f2f-cam ctl`` does; the
drawing loop never waits on it. Without one (``f2f-cam demo``), only H and Q work.
"""

from __future__ import annotations

import logging
import mmap
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from f2f_cam.control import ensure_runtime_dir
from f2f_cam.errors import UserError, one_line
from f2f_cam.sinks import preview_ui
from f2f_cam.sinks.paced import Rate
from f2f_cam.system import display_problem

log = logging.getLogger(__name__)

HEADER = struct.Struct("<QQ")  # (sequence number, 1 once the daemon closes the window)
TITLE = "Face2Face Cam preview"
POLL_S = 0.5  # how often the overlay asks the daemon for its status
POLL_TIMEOUT = 1.0  # s; a status late by more is skipped, the last one stays up
COMMAND_TIMEOUT = 30.0  # s; a persona switch loads its generator first
MESSAGE_S = 2.5  # s that a key's outcome stays on screen


class PreviewWindow:
    """A window showing RGB uint8 (H, W, 3) frames; ``closed`` once the user closes it
    (the window's close button, q or Esc).

    control: the daemon's control folder, where the window's keys send commands and
    its overlay reads the status (None: no daemon, only H and Q work); folder: where
    the frame file goes (the runtime folder).
    """

    kind = "window"

    def __init__(self, size: tuple[int, int], title: str = TITLE, folder: Path | None = None, *,
                 control: Path | None = None):
        problem = display_problem()
        if problem:
            raise UserError(f"no display to open a preview window on ({problem}); use --output FILE.mp4 instead")
        self.width, self.height = size
        self._nbytes = self.width * self.height * 3
        # Made if need be: `f2f-cam demo` may be the first thing a user runs.
        fd, name = tempfile.mkstemp(prefix="preview-", suffix=".frame", dir=ensure_runtime_dir(folder))
        self._path = Path(name)
        os.ftruncate(fd, HEADER.size + self._nbytes)
        self._map = mmap.mmap(fd, HEADER.size + self._nbytes)
        os.close(fd)
        self._frame = np.frombuffer(self._map, np.uint8, self._nbytes, HEADER.size).reshape(self.height, self.width, 3)
        self._seq = 0
        self._proc = subprocess.Popen([sys.executable, "-m", "f2f_cam.sinks.window", str(self._path), str(self.width),
                                       str(self.height), title, str(os.getpid()), str(control or "")])
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._proc.poll() is not None

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.kind, "device": "preview window",
                "size": [self.width, self.height], "fps": None}

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        if self.closed:
            return
        self._seq += 1
        HEADER.pack_into(self._map, 0, self._seq, 0)  # odd: being written
        self._frame[:] = frame
        self._seq += 1
        HEADER.pack_into(self._map, 0, self._seq, 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        HEADER.pack_into(self._map, 0, self._seq, 1)
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            self._proc.wait(timeout=2)
        del self._frame
        self._map.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PreviewTap:
    """The daemon's "Show preview window": a copy of every output frame in a window,
    opened and closed as ``on`` flips (tray, ``ctl preview``, or the user closing it).

    Called from the output thread with each frame sent; a failing window only turns
    the preview off, it never takes the output down.
    """

    def __init__(self, size: tuple[int, int], control: Path | None = None):
        self.size = size
        self.control = control  # the daemon's control folder, for the window's keys
        self.on = False
        self._window: PreviewWindow | None = None

    def set(self, on: bool) -> None:
        problem = display_problem()
        if on and problem:
            raise UserError(f"no display to open a preview window on ({problem})")
        self.on = bool(on)

    def __call__(self, frame: np.ndarray) -> None:
        try:
            if self.on and self._window is None:
                self._window = PreviewWindow(self.size, control=self.control)
            if self._window is not None:
                if self.on:
                    self._window.write(frame)
                if not self.on or self._window.closed:
                    self.close()
        except (UserError, OSError) as e:
            log.warning("no preview window: %s", e)
            self.close()

    def close(self) -> None:
        self.on = False
        if self._window is not None:
            window, self._window = self._window, None
            window.close()


def _child(path: str, width: int, height: int, title: str, parent: int, control: str = "") -> int:
    """The window's process: show the newest whole frame, with the overlay, until told
    to stop, the window is closed, or the daemon is gone."""
    import cv2

    nbytes = width * height * 3
    with open(path, "rb") as f:
        # Read only: nothing the window draws can reach the frames it is fed.
        shared = mmap.mmap(f.fileno(), HEADER.size + nbytes, access=mmap.ACCESS_READ)
    frame = np.frombuffer(shared, np.uint8, nbytes, HEADER.size).reshape(height, width, 3)
    size = preview_ui.display_size(width, height)
    # Resizable, aspect kept, and no Qt toolbar: a preview, not an image viewer.
    cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
    cv2.resizeWindow(title, *size)
    link = DaemonLink(Path(control)) if control else None
    keys = _Keys(title, link)
    shown, picture, drawn = 0, None, None
    try:
        while True:
            seq, stop = HEADER.unpack_from(shared, 0)
            if stop or not _alive(parent):
                return 0
            if seq != shown and seq % 2 == 0:
                bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                if HEADER.unpack_from(shared, 0)[0] == seq:  # not overwritten meanwhile
                    if size != (width, height):
                        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
                    picture, shown, drawn = bgr, seq, None
                    keys.rate.tick(time.monotonic())
            overlay = keys.overlay()
            if picture is not None and overlay != drawn:  # a new frame, or new text on it
                cv2.imshow(title, preview_ui.draw(picture.copy(), overlay))
                drawn = overlay
            if keys.press(cv2.waitKey(15)) or cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
                return 0
    finally:
        if link is not None:
            link.close()
        cv2.destroyAllWindows()
        del frame
        shared.close()


class _Note:
    """A line shown for a moment at the bottom of the window; set from any thread."""

    def __init__(self):
        self._note = ("", 0.0)  # (text, shown until this time.monotonic())

    def say(self, text: str, seconds: float = MESSAGE_S) -> None:
        self._note = (text, time.monotonic() + seconds)

    def text(self) -> str:
        text, until = self._note
        return text if time.monotonic() < until else ""


class DaemonLink:
    """The window's line to the daemon's control socket, in a thread of its own: the
    newest status every ``POLL_S``, and the keys' requests one at a time, so that the
    drawing loop never waits on a socket. A request that fails says why in ``note``.

    A key becomes its request here, in turn, from the status the request before it
    left: L pressed twice turns landmarks on, then off again.
    """

    def __init__(self, folder: Path):
        from f2f_cam.control import ControlClient

        self.status: dict | None = None  # the newest, as `f2f-cam ctl status --json` prints it
        self.lost = False  # the daemon stopped answering
        self.note = _Note()
        self._poll = ControlClient(folder, timeout=POLL_TIMEOUT)
        self._send = ControlClient(folder, timeout=COMMAND_TIMEOUT)
        self._keys: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="daemon-link", daemon=True)
        self._thread.start()

    def press(self, key: str) -> None:
        """Send what ``key`` (one of ``preview_ui.KEYS`` with a request) asks for."""
        self._keys.put(key)

    def close(self) -> None:
        self._keys.put(None)
        self._thread.join(timeout=1)  # a request still out (a persona loading) ends with the process

    def _run(self) -> None:
        while True:
            try:
                key = self._keys.get(timeout=POLL_S)
            except queue.Empty:
                self._request("status")
                continue
            if key is None:
                return
            if self.status is None:
                self._request("status")  # a key before the first poll: toggles need the status
            try:
                cmd, arg = preview_ui.request_for(key, None if self.lost else self.status)
            except UserError as e:  # a persona number not installed, no daemon
                self.note.say(one_line(e))
                continue
            self.note.say(f"{cmd} {arg}..." if arg is not None else f"{cmd}...", COMMAND_TIMEOUT)
            self._request(cmd, arg)

    def _request(self, cmd: str, arg=None) -> None:
        from f2f_cam.commands import reply_text
        from f2f_cam.control import NotRunning

        try:
            reply = (self._poll if cmd == "status" else self._send).request(cmd, arg)
        except UserError as e:  # refused, timed out, or no daemon (NotRunning)
            # Lost only once it has answered: a window opened before the daemon's
            # control socket (``--output window``) just waits for it.
            self.lost = self.lost or (isinstance(e, NotRunning) and self.status is not None)
            if cmd != "status":
                self.note.say(one_line(e))
            return
        self.status, self.lost = reply.get("status", self.status), False
        if cmd != "status":
            self.note.say(reply_text(cmd, reply))


class _Keys:
    """What the window's keys do: its own (help, close), or a request to the daemon."""

    def __init__(self, title: str, link: DaemonLink | None):
        self.title, self.link = title, link
        self.note = link.note if link is not None else _Note()
        self.help = False
        self.rate = Rate()  # frames this window shows

    def press(self, code: int) -> bool:
        """Act on ``cv2.waitKey``'s code; True when the window should close."""
        key = preview_ui.key_of(code)
        if key is None:
            return False
        shortcut = preview_ui.KEYS[key]
        if shortcut.window == "close":
            return True
        if shortcut.window == "help":
            self.help = not self.help
        elif self.link is None:
            self.note.say(preview_ui.NO_DAEMON)
        else:
            self.link.press(key)
        return False

    def overlay(self) -> preview_ui.Overlay:
        link = self.link
        return preview_ui.overlay(self.title, link.status if link is not None else None,
                                  round(self.rate.per_second(time.monotonic())), daemon=link is not None,
                                  lost=bool(link is not None and link.lost), message=self.note.text(),
                                  show_help=self.help)


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # the daemon closes the window itself; os.kill(pid, 0) would kill on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    _path, _w, _h, _title, _parent, _control = sys.argv[1:7]
    try:
        sys.exit(_child(_path, int(_w), int(_h), _title, int(_parent), _control))
    except KeyboardInterrupt:
        sys.exit(0)
    except Exception as e:  # the daemon only sees the process end; say why on stderr
        print(f"f2f-cam preview: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
