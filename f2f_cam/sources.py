"""Frame sources: a camera (index or /dev/videoN), a video file, an image folder.

Every source yields ``(t, frame)``: t in seconds from the start, frame RGB uint8
(H, W, 3). OpenCV's BGR is converted here, at the edge, and nowhere else.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from f2f_cam.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class VideoFileSource:
    """Decodes a video file with PyAV. ``loop=True`` starts over at the end (a stand-in
    camera for the daemon and tests)."""

    def __init__(self, path: str | Path, loop: bool = False):
        import av

        self.path = Path(path)
        self.loop = loop
        if not self.path.exists():
            raise UserError(f"no such file: {self.path}")
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder, not a video file")
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path} is not a video file that can be read ({_first_line(e)})") from e
        if not self._container.streams.video:
            self._container.close()
            raise UserError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame-threaded decoding: free speed
        ctx = self._stream.codec_context
        self.size = (int(ctx.width), int(ctx.height))
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(25)
        self.fps = Fraction(rate).limit_denominator(1001 * 120)
        self.has_audio = bool(self._container.streams.audio)
        if self._stream.frames:
            self.frame_count = int(self._stream.frames)
        elif self._container.duration:
            self.frame_count = int(round(self._container.duration / 1e6 * float(self.fps)))
        else:
            self.frame_count = 0  # unknown

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        import av

        offset = 0.0
        while True:
            last_t = None
            try:
                for frame in self._container.decode(self._stream):
                    t = float(frame.time) if frame.time is not None else (last_t or 0.0) + 1 / float(self.fps)
                    last_t = t
                    yield offset + t, frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as e:
                raise UserError(f"{self.path} is damaged and could not be decoded ({_first_line(e)})") from e
            if not self.loop or last_t is None:
                return
            offset += last_t + 1 / float(self.fps)
            self._container.seek(0)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageFolderSource:
    """Still images from a folder, in name order, at a nominal frame rate."""

    def __init__(self, path: str | Path, fps: float = 25.0):
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise UserError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        first = self._read(self.files[0])
        self.size = (first.shape[1], first.shape[0])
        self.fps = Fraction(fps).limit_denominator(1001)
        self.frame_count = len(self.files)
        self.has_audio = False

    def _read(self, path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"{path} is not an image that can be read")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for i, path in enumerate(self.files):
            frame = self._read(path)
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
    """A webcam through OpenCV, read by its own thread that keeps only the newest frame,
    so a slow pipeline drops frames instead of adding latency."""

    def __init__(self, device: int | str, size: tuple[int, int] | None = None, fps: float = 30.0):
        self.device = device
        is_device = isinstance(device, int) or str(device).startswith("/dev/video")
        if is_device and sys.platform.startswith("linux"):
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
        self._lock = threading.Condition()
        self._latest: tuple[float, np.ndarray] | None = None
        self._seq = 0
        self._running = True
        self.failed_reads = 0  # in a row: an unplugged camera keeps failing
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._capture, name="camera", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        while self._running:
            ok, bgr = self._cap.read()
            if not ok:
                if self.failed_reads == 0:  # once per failure streak, not ten times a second
                    log.warning("camera %s returned no frame", self.device)
                self.failed_reads += 1
                time.sleep(0.1)
                continue
            self.failed_reads = 0
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            with self._lock:
                self._latest = (time.monotonic() - self._t0, frame)  # overwrite: newest wins
                self._seq += 1
                self._lock.notify_all()

    def read(self, timeout: float = 1.0) -> tuple[float, np.ndarray] | None:
        """The newest frame not returned before, waiting up to ``timeout`` seconds."""
        with self._lock:
            seen = self._seq
            if not self._lock.wait_for(lambda: self._seq != seen or not self._running, timeout):
                return None
            return self._latest

    def latest(self) -> tuple[float, np.ndarray] | None:
        """The newest frame captured so far, without waiting (None before the first)."""
        with self._lock:
            return self._latest

    @property
    def frames_captured(self) -> int:
        return self._seq

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        while self._running:
            item = self.read()
            if item is not None:
                yield item

    def close(self) -> None:
        if self._running:
            self._running = False
            self._thread.join(timeout=2)
            self._cap.release()

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
        raise UserError(f"{getattr(self.source, 'path', 'the source')} has no frames")

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


def is_camera(spec: str | int | Path) -> bool:
    """Whether ``spec`` names a webcam (an index or /dev/videoN) rather than a file."""
    return isinstance(spec, int) or str(spec).isdigit() or str(spec).startswith("/dev/video")


def open_live_source(spec: str | int | Path):
    """What ``f2f-cam run --camera`` takes: a webcam, or a video file or image folder
    played in real time, looped. Either has ``read(timeout) -> (t, frame) | None``."""
    if is_camera(spec):
        return CameraSource(int(spec) if str(spec).isdigit() else str(spec))
    path = Path(spec)
    if path.is_dir():
        return RealTimeSource(ImageFolderSource(path))
    return RealTimeSource(VideoFileSource(path, loop=True))


def open_source(spec: str | int | Path, loop: bool = False, fps: float = 25.0):
    """Open what the user named: a camera index ("0"), "/dev/videoN", a video file, or
    a folder of images."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CameraSource(int(spec))
    path = Path(spec)
    if str(spec).startswith("/dev/video"):
        return CameraSource(str(spec))
    if path.is_dir():
        return ImageFolderSource(path, fps=fps)
    return VideoFileSource(path, loop=loop)


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
