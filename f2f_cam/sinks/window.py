"""The window sink: a preview window in a process of its own, and the daemon's preview tap.

OpenCV's HighGUI (a Qt build in the wheels) works only on a process's main thread,
and in the daemon that thread belongs to the tray. So the window runs in a child
process (``python -m f2f_cam.sinks.window``), fed through a memory-mapped file: the daemon
copies the newest frame in and never waits; a seqlock (an odd sequence number while a
frame is being written) lets the child skip half-written frames.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from f2f_cam import paths
from f2f_cam.errors import UserError
from f2f_cam.system import display_problem

log = logging.getLogger(__name__)

HEADER = struct.Struct("<QQ")  # (sequence number, 1 once the daemon closes the window)
TITLE = "Face2Face Cam preview"


class PreviewWindow:
    """A window showing RGB uint8 (H, W, 3) frames; ``closed`` once the user closes it
    (the window's close button, q or Esc)."""

    kind = "window"

    def __init__(self, size: tuple[int, int], title: str = TITLE, folder: Path | None = None):
        problem = display_problem()
        if problem:
            raise UserError(f"no display to open a preview window on ({problem}); use --output FILE.mp4 instead")
        self.width, self.height = size
        self._nbytes = self.width * self.height * 3
        fd, name = tempfile.mkstemp(prefix="preview-", suffix=".frame", dir=folder or paths.runtime_dir())
        self._path = Path(name)
        os.ftruncate(fd, HEADER.size + self._nbytes)
        self._map = mmap.mmap(fd, HEADER.size + self._nbytes)
        os.close(fd)
        self._frame = np.frombuffer(self._map, np.uint8, self._nbytes, HEADER.size).reshape(self.height, self.width, 3)
        self._seq = 0
        self._proc = subprocess.Popen([sys.executable, "-m", "f2f_cam.sinks.window", str(self._path), str(self.width),
                                       str(self.height), title, str(os.getpid())])
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

    def __init__(self, size: tuple[int, int]):
        self.size = size
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
                self._window = PreviewWindow(self.size)
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


def _child(path: str, width: int, height: int, title: str, parent: int) -> int:
    """The window's process: show the newest whole frame until told to stop, the
    window is closed, or the daemon is gone."""
    import cv2

    nbytes = width * height * 3
    with open(path, "r+b") as f:
        shared = mmap.mmap(f.fileno(), HEADER.size + nbytes)
    frame = np.frombuffer(shared, np.uint8, nbytes, HEADER.size).reshape(height, width, 3)
    # Resizable, aspect kept, and no Qt toolbar: a preview, not an image viewer.
    cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
    cv2.resizeWindow(title, width, height)
    shown = 0
    try:
        while True:
            seq, stop = HEADER.unpack_from(shared, 0)
            if stop or not _alive(parent):
                return 0
            if seq != shown and seq % 2 == 0:
                bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                if HEADER.unpack_from(shared, 0)[0] == seq:  # not overwritten meanwhile
                    cv2.imshow(title, bgr)
                    shown = seq
            key = cv2.waitKey(15) & 0xFF
            if key in (ord("q"), 27) or cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
                return 0
    finally:
        cv2.destroyAllWindows()
        del frame
        shared.close()


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
    _path, _w, _h, _title, _parent = sys.argv[1:6]
    try:
        sys.exit(_child(_path, int(_w), int(_h), _title, int(_parent)))
    except KeyboardInterrupt:
        sys.exit(0)
    except Exception as e:  # the daemon only sees the process end; say why on stderr
        print(f"f2f-cam preview: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
