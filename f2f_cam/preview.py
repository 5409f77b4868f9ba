"""The preview window, in a process of its own.

OpenCV's HighGUI (a Qt build in the wheels) works only on a process's main thread,
and in the daemon that thread belongs to the tray. So the window runs in a child
process (``python -m f2f_cam.preview``), fed through a memory-mapped file: the daemon
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

from f2f_cam.errors import UserError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<QQ")  # (sequence number, 1 once the daemon closes the window)
TITLE = "Face2Face Cam preview"


def display_problem() -> str | None:
    if os.name == "posix" and sys.platform != "darwin" and \
            not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display to open a preview window on"
    return None


class PreviewWindow:
    """A window showing RGB uint8 (H, W, 3) frames; ``closed`` once the user closes it
    (the window's close button, q or Esc)."""

    def __init__(self, size: tuple[int, int], title: str = TITLE, folder: Path | None = None):
        problem = display_problem()
        if problem:
            raise UserError(f"{problem}; use --output FILE.mp4 instead")
        self.width, self.height = size
        self._nbytes = self.width * self.height * 3
        fd, name = tempfile.mkstemp(prefix="preview-", suffix=".frame", dir=folder)
        self._path = Path(name)
        os.ftruncate(fd, HEADER.size + self._nbytes)
        self._map = mmap.mmap(fd, HEADER.size + self._nbytes)
        os.close(fd)
        self._frame = np.frombuffer(self._map, np.uint8, self._nbytes, HEADER.size).reshape(self.height, self.width, 3)
        self._seq = 0
        self._proc = subprocess.Popen([sys.executable, "-m", "f2f_cam.preview", str(self._path), str(self.width),
                                       str(self.height), title, str(os.getpid())])
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._proc.poll() is not None

    def write(self, frame: np.ndarray) -> None:
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
