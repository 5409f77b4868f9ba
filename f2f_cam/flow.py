"""The one frame path: source -> pipeline -> sink.

``f2f-cam video``, ``bench``, ``demo`` and the daemon's processing thread all run
frames through ``run``; the daemon only adds its threads around it (the capture
thread feeding ``frames``, the paced output thread behind ``sink``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np

log = logging.getLogger(__name__)

_END = object()


def run(frames: Iterable[tuple[float, np.ndarray | None]], pipeline, sink, *,
        on_frame: Callable[[float], None] | None = None,
        on_error: Callable[[Exception], None] | None = None, overlap: bool = False) -> int:
    """Run every ``(t, frame)`` of ``frames`` through ``pipeline`` into ``sink``.

    frames: t in seconds, frame RGB uint8 (H, W, 3) (None: no camera frame, see
    ``Pipeline``); pipeline: ``(frame, t) -> output frame``, or None to send the frames
    as they are (playing a video); sink: ``write(frame, t)``. ``on_frame(t)`` runs
    after each frame is written (progress, answering live switches); ``on_error``,
    when given, takes a frame's exception and the run goes on (the daemon keeps the
    camera alive), else it propagates. A sink the user closed (a window) ends the
    run. Returns the number of frames written.

    ``overlap=True`` runs ``pipeline.track`` (landmarks to sketch) in a thread of its own,
    one frame ahead of ``pipeline.finish`` (generator and compositor) here: the same
    frames, in the same order, in about the time of the slower half. ``frames`` is then
    iterated in that thread (the daemon applies live switches there, between two
    ``track`` calls).
    """
    written = 0
    if pipeline is None:
        items, step = frames, (lambda frame: frame)
    elif overlap:
        items, step = _tracked_ahead(frames, pipeline), pipeline.finish
    else:
        items, step = ((t, (frame, t)) for t, frame in frames), (lambda a: pipeline(*a))
    try:
        for t, item in items:
            try:
                if isinstance(item, _Failed):
                    raise item.error
                out = step(item)
            except Exception as e:
                if on_error is None:
                    raise
                on_error(e)
                continue
            sink.write(out, t)
            written += 1
            if on_frame is not None:
                on_frame(t)
            if getattr(sink, "closed", False):
                break
    finally:
        if hasattr(items, "close"):
            items.close()  # stops the tracking thread now, not when garbage-collected
    return written


class _Failed:
    """A frame whose ``track`` raised: the error goes to ``run``'s thread."""

    def __init__(self, error: Exception):
        self.error = error


class _Timing:
    """Moving averages of the two halves' seconds, and when ``run``'s thread took its
    last frame: the tracking thread starts the next frame just in time to finish it as
    the generator gets free, so a frame does not wait, ageing, for the generator (a
    frame ahead at once would add the generator's time to every frame's latency)."""

    def __init__(self):
        self.track_s = self.finish_s = 0.0
        self.taken_at: float | None = None
        self.taken = threading.Event()  # run's thread took the last frame tracked

    @staticmethod
    def average(old: float, new: float) -> float:
        return new if old == 0.0 else old + 0.2 * (new - old)

    def start_delay(self) -> float:
        if self.taken_at is None:
            return 0.0
        return min(0.1, self.finish_s - self.track_s - (time.perf_counter() - self.taken_at))


def _tracked_ahead(frames, pipeline) -> Iterator[tuple[float, object]]:
    """``(t, pipeline.track(frame, t))`` for each frame, made by a thread one frame ahead."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    timing = _Timing()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    between = getattr(pipeline, "between_frames", None)

    def produce() -> None:
        try:
            it = iter(frames)
            while not stop.is_set():
                if timing.taken_at is not None:  # not the first frame: wait until the last is taken
                    while not timing.taken.wait(0.1):
                        if stop.is_set():
                            return
                delay = timing.start_delay()
                if delay > 0:
                    stop.wait(delay)
                try:
                    t, frame = next(it)
                except StopIteration:
                    return
                t0 = time.perf_counter()
                try:
                    item = pipeline.track(frame, t)
                except Exception as e:  # handled (or raised) in run's thread, in order
                    item = _Failed(e)
                timing.track_s = timing.average(timing.track_s, time.perf_counter() - t0)
                timing.taken.clear()
                if not put((t, item)):
                    return
                if between is not None and not isinstance(item, _Failed):
                    try:
                        between()  # while the frame is finished in run's thread
                    except Exception:  # work that can wait: a failure costs no frame
                        log.warning("work between frames failed", exc_info=True)
        except BaseException as e:  # the frame source itself failed
            put((None, _Failed(e)))
        finally:
            put(_END)

    thread = threading.Thread(target=produce, name="f2f-track", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            timing.taken_at = time.perf_counter()
            timing.taken.set()
            if got is _END:
                break
            t, item = got
            if t is None:  # the source failed: that is not one frame's error
                raise item.error
            yield t, item  # run's thread finishes the frame before it asks for the next
            timing.finish_s = timing.average(timing.finish_s, time.perf_counter() - timing.taken_at)
    finally:
        stop.set()
        thread.join(timeout=5)
