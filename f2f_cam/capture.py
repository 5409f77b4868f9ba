"""The one capture thread: it reads the live source, keeps only its newest frame, and
reopens a lost camera.

The processing thread takes frames with ``read()``; a frame it never took is simply
overwritten (counted in ``dropped``), so a slow stage drops frames instead of adding
latency (avatarify's ``VideoCaptureAsync``, with reconnects).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable

import numpy as np

from f2f_cam.errors import one_line

log = logging.getLogger(__name__)

STALL_SECONDS = 2.0  # a camera that delivers nothing for this long is lost


class Capture:
    """Owns the live source in its own thread; when it fails (raises, or delivers
    nothing for ``stall_s``) closes it and reopens it every ``retry_s`` until it works.

    ``open_source()`` returns an object with ``read(timeout) -> (t, frame) | None`` and
    ``close()`` (``sources.CameraSource``, ``sources.RealTimeSource``); ``first`` is one
    already opened (so that a missing file fails at start, in the caller's thread).
    ``on_fail(why)``, for a source that does not come back (a video file, which fails
    to read only where it is damaged), is called instead of retrying, and the thread ends.
    """

    def __init__(self, open_source: Callable, first=None, retry_s: float = 1.0, stall_s: float = STALL_SECONDS,
                 on_fail: Callable[[str], None] | None = None):
        self._open = open_source
        self._on_fail = on_fail
        self._source = first
        self.retry_s = retry_s
        self.stall_s = stall_s
        self.state = "starting"  # starting | ok | lost
        self.problem = ""  # why it is lost, for status and the log
        self.captured = 0
        self.dropped = 0  # frames overwritten before the processing thread took them
        self.size: tuple[int, int] | None = getattr(first, "size", None)
        self._cond = threading.Condition()
        self._latest: tuple[int, float, np.ndarray] | None = None  # (seq, monotonic s, frame)
        self._taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "Capture":
        self._thread.start()
        return self

    def read(self, timeout: float) -> tuple[int, float, np.ndarray] | None:
        """The newest frame not taken before as (seq, monotonic s, RGB frame), waiting
        up to ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None and self._latest[0] != self._taken,
                                       timeout):
                return None
            self._taken = self._latest[0]
            return self._latest

    def _put(self, frame: np.ndarray) -> None:
        with self._cond:
            self.captured += 1
            if self._latest is not None and self._latest[0] != self._taken:
                self.dropped += 1  # the newest wins: the old one was never processed
            self._latest = (self.captured, time.monotonic(), frame)
            self._cond.notify_all()

    def _lost(self, why: str) -> None:
        if self.state == "ok":
            log.warning("camera lost (%s); retrying every %g s", why, self.retry_s)
        elif self.state == "starting":
            log.warning("%s; retrying every %g s", why, self.retry_s)
        self.state, self.problem = "lost", why

    def _run(self) -> None:
        while not self._stop.is_set():
            src, self._source = self._source, None
            if src is None:
                try:
                    with opencv_quiet():
                        src = self._open()
                except Exception as e:  # UserError, OSError, cv2 errors: all mean "not there yet"
                    self._lost(one_line(e))
                    self._stop.wait(self.retry_s)
                    continue
            self.size = getattr(src, "size", self.size)
            try:
                self._read_until_lost(src)
            finally:
                _close_quietly(src)
            self._stop.wait(self.retry_s)

    def _read_until_lost(self, src) -> None:
        last_frame = time.monotonic()
        while not self._stop.is_set():
            try:
                item = src.read(timeout=self.stall_s)
            except Exception as e:
                if self._on_fail is not None:
                    self.state, self.problem = "lost", one_line(e)
                    self._stop.set()
                    self._on_fail(one_line(e))
                    return
                self._lost(f"read failed: {one_line(e)}")
                return
            if item is None:
                if time.monotonic() - last_frame >= self.stall_s:
                    self._lost(f"no frame for {self.stall_s:g} s")
                    return
                continue
            last_frame = time.monotonic()
            if self.state != "ok":
                if self.state == "lost":
                    log.warning("camera is back")
                self.state, self.problem = "ok", ""
            self._put(item[1])

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.stall_s + 2)
        if self._source is not None:  # opened but never started
            _close_quietly(self._source)
            self._source = None


@contextlib.contextmanager
def opencv_quiet():
    """OpenCV logs a dozen lines each time a missing camera fails to open, and the
    capture thread retries every second: keep them for --verbose."""
    import cv2

    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _close_quietly(src) -> None:
    try:
        src.close()
    except Exception as e:  # a camera that vanished can fail to close; nothing to save
        log.debug("closing the source failed: %s", e)
