"""Where output frames go: the virtual camera, a window, or a video file.

``open_sink`` is the one way to open any of them (the counterpart of
``sources.open_source``); every sink takes RGB uint8 (H, W, 3) frames with
``write(frame, t)`` and is a context manager whose ``close()`` is safe twice.
``PacedOutput`` (``f2f_cam.sinks.paced``) wraps one for live use in the daemon.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from f2f_cam.errors import UserError

OUTPUTS = ("virtualcam", "window")  # or a video file, by its suffix


def open_sink(output: str | Path, size: tuple[int, int], fps: Fraction | float, *, backend: str = "auto",
              device: str | None = None, audio_from: str | Path | None = None, title: str = "Face2Face Cam",
              control: Path | None = None):
    """The sink named by ``output``: "virtualcam", "window", or a video file path.

    A file is written under a temporary name and renamed by ``close()``; ``abort()``
    (or an exception in its ``with`` block) leaves nothing behind. ``control``: the
    running daemon's control folder, where a window's keys send their commands
    (None: a window with no daemon behind it).
    """
    if str(output) == "virtualcam":
        from f2f_cam.sinks.virtualcam import VirtualCamSink

        return VirtualCamSink(size, float(fps), backend=backend, device=device)
    if str(output) == "window":
        from f2f_cam.sinks.window import PreviewWindow

        return PreviewWindow(size, title, control=control)
    path = Path(output)
    if size[0] % 2 or size[1] % 2:
        raise UserError(f"a video file needs an even size, not {size[0]}x{size[1]}")
    from f2f_cam.sinks.file import VideoFileSink

    return VideoFileSink(path, size, fps, audio_from=audio_from)
