"""Frame sources: a camera (index or /dev/videoN), a video file, an image folder.

Every source yields ``(t, frame)``: t in seconds from the start, frame RGB uint8
(H, W, 3). OpenCV's BGR is converted here, at the edge, and nowhere else.
"""

from __future__ import annotations

import logging
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from f2f_cam.errors import UserError, one_line

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class VideoFileSource:
    """Decodes a video file with PyAV. ``loop=True`` starts over at the end (a stand-in
    camera for the daemon and tests).

    ``frame_count`` is how many frames the file says it has (0: it does not say); a
    file cut short gives fewer (see ``ended_early``).
    """

    def __init__(self, path: str | Path, loop: bool = False):
        import av

        self.path = Path(path)
        self.loop = loop
        if not self.path.exists():
            raise UserError(f"no such file: {self.path}")
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder, not a video file")
        if self.path.stat().st_size == 0:
            raise UserError(f"{self.path} is empty (0 bytes); give a video file")
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path} is not a video file that can be read ({_reason(e)}); check that it "
                            "plays in a video player, or download it again") from e
        kind = self._container.format.name
        if kind.endswith("_pipe") or kind == "image2":  # FFmpeg reads a PNG or JPEG as a 1-frame video
            self._container.close()
            raise UserError(f"{self.path} is a still image ({kind.removesuffix('_pipe').upper()}), not a video; "
                            "give a video file")
        if not self._container.streams.video:
            self._container.close()
            raise UserError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        # Slice threads, not frame threads: a frame thread reports a damaged frame late or
        # never (with 16 of them a damaged file just ends early, and passes for a cut one).
        self._stream.thread_type = "SLICE"
        ctx = self._stream.codec_context
        self.size = (int(ctx.width), int(ctx.height))
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(25)
        self.fps = Fraction(rate).limit_denominator(1001 * 120)
        self.has_audio = bool(self._container.streams.audio)
        self.frame_count = self._claimed_frames()

    def _claimed_frames(self) -> int:
        """The file's own count (an MP4's index), else its duration times the frame
        rate (the video stream's duration where the file has it: audio can run longer)."""
        s = self._stream
        if s.frames:
            return int(s.frames)
        seconds = float(s.duration * s.time_base) if s.duration else (self._container.duration or 0) / 1e6
        return int(round(seconds * float(self.fps)))

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        offset = 0.0
        while True:
            last_t = None
            for frame in self._decode():
                t = float(frame.time) if frame.time is not None else (last_t or 0.0) + 1 / float(self.fps)
                last_t = t
                yield offset + t, frame.to_ndarray(format="rgb24")
            if not self.loop or last_t is None:
                return
            offset += last_t + 1 / float(self.fps)
            self._container.seek(0)

    def _decode(self):
        """The stream's frames. A decode error in a packet that the end of the file cut
        short, or in the final flush, ends them: a truncated download gives the frames
        before the cut. An error anywhere else is damage, a ``UserError``."""
        import av

        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    if packet.size and not packet.is_corrupt:
                        raise  # damage in the middle
                    yield from self._flush()  # the end: the frames still in the decoder
                    return
                yield from frames
        except av.error.FFmpegError as e:
            raise UserError(f"{self.path} is damaged and could not be decoded ({_reason(e)}); "
                            "use an undamaged copy") from e

    def _flush(self) -> list:
        """The frames the decoder still holds (none if it fails again)."""
        import av

        try:
            frames = self._stream.codec_context.decode(None)
        except av.error.FFmpegError:
            return []
        for frame in frames:
            frame.time_base = self._stream.time_base  # not set without a packet: their time
        return frames

    def count_packets(self) -> int:
        """The frames the file's data holds, counted without decoding them (an index can
        promise more than a cut-short file holds). Reads the whole file: give it a
        source of its own."""
        import av

        try:
            return sum(1 for p in self._container.demux(self._stream) if p.size and not p.is_corrupt)
        except av.error.FFmpegError as e:
            raise UserError(f"{self.path} is damaged and could not be read ({_reason(e)}); "
                            "use an undamaged copy") from e

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ended_early(path: str | Path, got: int, expected: int) -> str | None:
    """'IN ended after 63 of 270 frames (truncated or damaged file?)' when a video gave
    clearly fewer frames than it says it has; None otherwise. A frame or two fewer is
    normal (an edit list trims some; duration x rate is an estimate)."""
    if expected and got < expected - max(2, expected // 50):
        return f"{path} ended after {got} of {expected} frames (truncated or damaged file?)"
    return None


def _reason(e: Exception) -> str:
    """FFmpeg's reason without its errno and the path again ('Invalid data found when
    processing input')."""
    return getattr(e, "strerror", None) or one_line(e)


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); a ``UserError`` when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{path} is not an image that can be read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ImageFolderSource:
    """Still images from a folder, in name order, at a nominal frame rate."""

    def __init__(self, path: str | Path, fps: float = 25.0):
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise UserError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        first = read_image(self.files[0])
        self.size = (first.shape[1], first.shape[0])
        self.fps = Fraction(fps).limit_denominator(1001)
        self.frame_count = len(self.files)
        self.has_audio = False

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for i, path in enumerate(self.files):
            frame = read_image(path)
            if (frame.shape[1], frame.shape[0]) != self.size:  # one output size for all
                frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
            yield i / float(self.fps), frame

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CameraSource:
    """A webcam through OpenCV. ``read()`` blocks until the camera delivers its next
    frame; the daemon's one capture thread (``f2f_cam.capture``) calls it and keeps
    only the newest frame."""

    def __init__(self, device: int | str, size: tuple[int, int] | None = None, fps: float = 30.0):
        self.device = device
        if is_camera(device) and sys.platform.startswith("linux"):
            # V4L2 directly: without it OpenCV tries (and logs about) every capture backend.
            self._cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        else:
            self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            raise UserError(f"cannot open camera {device}; check that it is plugged in and not "
                            "used by another app (`f2f-cam doctor` lists cameras)")
        if size:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.fps = Fraction(self._cap.get(cv2.CAP_PROP_FPS) or fps).limit_denominator(1001)
        self.frame_count = 0
        self.has_audio = False
        self._t0 = time.monotonic()

    def read(self, timeout: float = 1.0) -> tuple[float, np.ndarray] | None:
        """The camera's next frame, or None when it delivers none (unplugged, busy).

        OpenCV's read has no timeout of its own; a failed read returns at once, and the
        capture thread treats a run of them longer than its stall time as a lost camera.
        """
        ok, bgr = self._cap.read()
        if not ok:
            time.sleep(min(0.1, timeout))  # an unplugged camera fails at once: do not spin
            return None
        return time.monotonic() - self._t0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            cap, self._cap = self._cap, None
            cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RealTimeSource:
    """A video file or image folder delivered like a camera: looped forever, each frame
    handed out by ``read()`` when it is due at the file's frame rate (a stand-in webcam
    for the daemon, so everything runs without one)."""

    def __init__(self, source: VideoFileSource | ImageFolderSource):
        self.source = source
        self.size = source.size
        self.fps = source.fps
        self._frames: Iterator[tuple[float, np.ndarray]] | None = None
        self._pending: tuple[float, np.ndarray] | None = None
        self._offset = 0.0  # seconds of the loops already played
        self._last_t = 0.0
        self._t0: float | None = None  # monotonic time of t = 0

    def _next(self) -> tuple[float, np.ndarray]:
        for _ in range(2):
            if self._frames is None:
                self._frames = iter(self.source)
            try:
                t, frame = next(self._frames)
                return t + self._offset, frame
            except StopIteration:  # an image folder (a video file loops by itself)
                self._frames = None
                self._offset = self._last_t + 1 / float(self.fps)
        raise UserError(f"{getattr(self.source, 'path', 'the source')} has no video frames")

    def read(self, timeout: float = 1.0) -> tuple[float, np.ndarray] | None:
        """The next frame when it is due, or None if it is not due within ``timeout`` s."""
        if self._pending is None:
            self._pending = self._next()
            self._last_t = self._pending[0]
        t, frame = self._pending
        now = time.monotonic()
        if self._t0 is None or now - (self._t0 + t) > 2 / float(self.fps):
            self._t0 = now - t  # start, or fell behind: carry on from now, no burst
        wait = self._t0 + t - now
        if wait > timeout:
            time.sleep(timeout)
            return None
        if wait > 0:
            time.sleep(wait)
        self._pending = None
        return t, frame

    def close(self) -> None:
        self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def in_real_time(frames: Iterator[tuple[float, np.ndarray]]) -> Iterator[tuple[float, np.ndarray]]:
    """Yield each ``(t, frame)`` when it is due (t seconds after the first one)."""
    start = time.monotonic()
    for t, frame in frames:
        delay = t - (time.monotonic() - start)
        if delay > 0:
            time.sleep(delay)
        yield t, frame


def is_camera(spec: str | int | Path) -> bool:
    """Whether ``spec`` names a webcam (an index or /dev/videoN) rather than a file."""
    return isinstance(spec, int) or str(spec).isdigit() or str(spec).startswith("/dev/video")


def open_source(spec: str | int | Path, *, live: bool = False, fps: float = 25.0):
    """Open what the user named, as a context manager.

    ``live=False`` (``f2f-cam video``, ``bench``): a video file or a folder of images
    (at ``fps``), iterated once as ``(t, frame)``. ``live=True`` (``f2f-cam run``): a
    webcam ("0", "/dev/videoN"), or a file or folder played like one, in real time and
    looped; either has ``read(timeout) -> (t, frame) | None``.
    """
    if is_camera(spec):
        if not live:
            raise UserError(f"{spec} is a camera; `f2f-cam video` takes a file (use `f2f-cam run` for cameras)")
        return CameraSource(int(spec) if str(spec).isdigit() else str(spec))
    path = Path(spec)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    source = ImageFolderSource(path, fps=fps) if path.is_dir() else VideoFileSource(path, loop=live)
    return RealTimeSource(source) if live else source
