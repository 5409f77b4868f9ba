"""The one frame path: source -> pipeline -> sink.

``f2f-cam video``, ``bench``, ``demo`` and the daemon's processing thread all run
frames through ``run``; the daemon only adds its threads around it (the capture
thread feeding ``frames``, the paced output thread behind ``sink``).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np


def run(frames: Iterable[tuple[float, np.ndarray | None]], pipeline, sink, *,
        on_frame: Callable[[float], None] | None = None,
        on_error: Callable[[Exception], None] | None = None) -> int:
    """Run every ``(t, frame)`` of ``frames`` through ``pipeline`` into ``sink``.

    frames: t in seconds, frame RGB uint8 (H, W, 3) (None: no camera frame, see
    ``Pipeline``); pipeline: ``(frame, t) -> output frame``, or None to send the frames
    as they are (playing a video); sink: ``write(frame, t)``. ``on_frame(t)`` runs
    after each frame is written (progress, answering live switches); ``on_error``,
    when given, takes a frame's exception and the run goes on (the daemon keeps the
    camera alive), else it propagates. A sink the user closed (a window) ends the
    run. Returns the number of frames written.
    """
    written = 0
    for t, frame in frames:
        try:
            out = frame if pipeline is None else pipeline(frame, t)
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
    return written
