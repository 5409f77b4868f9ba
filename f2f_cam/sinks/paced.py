"""Live output: a thread that sends the newest frame to a sink at the camera's pace.

The processing thread hands each output frame to ``PacedOutput.write`` and never
waits; the output thread sends whatever is newest at every tick, repeating it when
processing is slower, so the virtual camera never stops and apps never lose the
device. ``Pacer`` gives the same clock to sinks that have none (file, window).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

import numpy as np

from f2f_cam.errors import one_line

log = logging.getLogger(__name__)


class Pacer:
    """Paces a loop at ``fps`` for sinks that have no clock of their own (file, window).

    Keeps an absolute schedule, so there is no drift; when a frame is late by more than
    one period the schedule restarts from now instead of sending a burst to catch up.
    """

    def __init__(self, fps: float):
        self.period = 1.0 / float(fps)
        self._next: float | None = None

    def sleep_until_next_frame(self) -> None:
        now = time.perf_counter()
        if self._next is None or now > self._next + self.period:
            self._next = now  # the first frame, or late by over a period: restart, no burst
        self._next += self.period
        if self._next > now:
            time.sleep(self._next - now)


class Rate:
    """Events per second over the last ~2 seconds."""

    def __init__(self, n: int = 64):
        self._t: collections.deque = collections.deque(maxlen=n)

    def tick(self, t: float) -> None:
        self._t.append(t)

    def per_second(self, now: float) -> float:
        ts = [t for t in list(self._t) if now - t <= 2.0]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-6)


class PacedOutput:
    """Wraps a sink (virtual camera, window, file) with the output thread.

    ``write(frame, t)``: t is the frame's capture time in seconds after ``clock_origin``
    (a monotonic time), for the capture-to-output latency; a frame whose t is not newer
    than the last one's (the same camera frame again, after a live switch) gives no
    latency figure. ``tap`` (the preview) sees every frame sent. A sink that can
    ``reopen()`` (the virtual camera) and fails is reopened every ``retry_s`` until it
    works, ``problem`` saying why meanwhile; when another sink fails (a file on a full
    disk) or its window is closed, ``on_stop(error or None)`` is called once and the
    thread ends.
    """

    def __init__(self, sink, fps: float, *, clock_origin: float, on_stop: Callable[[str | None], None],
                 tap: Callable[[np.ndarray], None] | None = None, retry_s: float = 1.0):
        self.sink, self.fps = sink, float(fps)
        self.retry_s = retry_s
        self.problem = ""  # why the output is not going out now ("" while it is)
        self.size = (sink.width, sink.height) if hasattr(sink, "width") else tuple(sink.describe()["size"])
        self.clock_origin = clock_origin
        self.tap = tap
        self._on_stop = on_stop
        self._pace = getattr(sink, "sleep_until_next_frame", None) or Pacer(fps).sleep_until_next_frame
        self._latest: tuple[int, np.ndarray, float | None] | None = None  # (seq, frame, t): one slot
        self._seq = 0
        self.frames_out = 0
        self.latency_ms: float | None = None  # moving average
        self.rate = Rate()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="output", daemon=True)
        self._file_t0: float | None = None  # monotonic s of a file's first frame

    def describe(self) -> dict:
        return self.sink.describe()

    def start(self) -> "PacedOutput":
        self._thread.start()
        return self

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        """Hand over the newest output (never waits; the frame is not written to after)."""
        self._seq += 1
        self._latest = (self._seq, frame, t)  # one assignment: atomic for the output thread

    @property
    def latest(self) -> np.ndarray | None:
        item = self._latest
        return item[1] if item is not None else None

    def _run(self) -> None:
        while True:
            try:
                return self._send_until_stopped()
            except Exception as e:  # the output is gone (device removed, disk full)
                if not self._recover(e):
                    return

    def _send_until_stopped(self) -> None:
        blank = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        sent_seq, sent_t = 0, None
        while not self._stop.is_set():
            item = self._latest
            frame = item[1] if item is not None else blank
            self._send(frame)
            if self.problem:
                log.warning("the output is back: %s", self.describe())
                self.problem = ""
            now = time.monotonic()
            self.frames_out += 1
            self.rate.tick(now)
            if item is not None and item[0] != sent_seq:
                sent_seq, t = item[0], item[2]
                if t is not None and (sent_t is None or t > sent_t):
                    sent_t = t
                    ms = (now - self.clock_origin - t) * 1e3
                    self.latency_ms = ms if self.latency_ms is None else self.latency_ms + 0.1 * (ms - self.latency_ms)
            self._feed_tap(frame)
            if getattr(self.sink, "closed", False):  # the window output was closed by the user
                log.info("output window closed; stopping")
                self._on_stop(None)
                return
            self._pace()

    def _recover(self, e: Exception) -> bool:
        """After the sink failed: True once it is open again, False to end the thread.

        A virtual camera is reopened every ``retry_s`` for as long as it takes (video
        apps wait for the device; it comes back when the driver or OBS does); any other
        sink stops the output, saying why."""
        reopen = getattr(self.sink, "reopen", None)
        if reopen is None:
            log.exception("the output failed; stopping")
            self._on_stop(f"the output failed: {one_line(e)}")
            return False
        if not self.problem:  # one line per outage, not one per attempt
            log.warning("the output failed (%s); reopening it every %g s", one_line(e), self.retry_s)
        self.problem = f"{one_line(e)}; reopening every {self.retry_s:g} s"
        while not self._stop.wait(self.retry_s):
            try:
                reopen()
                return True
            except Exception as again:
                self.problem = f"{one_line(again)}; reopening every {self.retry_s:g} s"
        return False

    def _send(self, frame: np.ndarray) -> None:
        if getattr(self.sink, "kind", "") != "file":
            self.sink.write(frame)
            return
        # A recording keeps real time: when a write came late (a busy CPU), the frame is
        # written again for the periods it missed, so the file lasts as long as the run.
        now = time.monotonic()
        if self._file_t0 is None:
            self._file_t0 = now
        due = int((now - self._file_t0) * self.fps) + 1  # frames the file should hold by now
        if due - self.sink.frames > self.fps:  # more than a second behind: give up on those
            self._file_t0 = now - self.sink.frames / self.fps
            due = self.sink.frames + 1
        for _ in range(max(1, due - self.sink.frames)):
            self.sink.write(frame)

    def _feed_tap(self, frame: np.ndarray) -> None:
        if self.tap is None:
            return
        try:
            self.tap(frame)
        except Exception:  # the preview is a convenience: never take the output down
            log.exception("the preview failed; closing it")
            self.tap = None

    def stop(self) -> None:
        """Stop sending (the thread ends after its current frame); the sink stays open."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def close(self) -> None:
        """Stop the thread, then close the sink (a file is finished, a camera released)."""
        self.stop()
        close_tap = getattr(self.tap, "close", None)
        if close_tap is not None:
            close_tap()
        self.sink.close()

    def abort(self) -> None:
        """Close without keeping anything (a file that never got a frame)."""
        self._stop.set()
        if hasattr(self.sink, "abort"):
            self.sink.abort()
        else:
            self.sink.close()
