"""The video file sink: RGB uint8 (H, W, 3) frames encoded with PyAV, the input's audio
copied in alongside, written under a temporary name and renamed when complete."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from f2f_cam.atomic import partial_path
from f2f_cam.errors import DiskFull, UserError, is_disk_full

log = logging.getLogger(__name__)

# Output container by file suffix: (PyAV format name, video codec, codec options).
CONTAINERS = {
    ".mp4": ("mp4", "libx264", {"crf": "18", "preset": "veryfast"}),
    ".m4v": ("mp4", "libx264", {"crf": "18", "preset": "veryfast"}),
    ".mov": ("mov", "libx264", {"crf": "18", "preset": "veryfast"}),
    ".mkv": ("matroska", "libx264", {"crf": "18", "preset": "veryfast"}),
    ".webm": ("webm", "libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    ".avi": ("avi", "mpeg4", {"qscale": "3"}),
}


class VideoFileSink:
    """Encodes frames to ``path`` at a constant ``fps``; optionally copies the audio
    track of ``audio_from`` (a media file) alongside, interleaved by time.

    Written to a temporary file next to ``path`` and renamed on ``close()``; if the
    ``with`` block fails, or ``abort()`` is called, nothing is left behind.
    """

    kind = "file"

    def __init__(self, path: str | Path, size: tuple[int, int], fps: Fraction | float,
                 audio_from: str | Path | None = None):
        import av

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS:
            raise UserError(f"cannot write {self.path.name}: unknown video type '{suffix or '(none)'}'; "
                            f"use one of: {', '.join(CONTAINERS)}")
        if self.path.is_dir():
            raise UserError(f"cannot write {self.path}: it is a folder")
        parent = self.path.parent
        if not parent.is_dir():
            raise UserError(f"cannot write {self.path}: folder {parent} does not exist")
        fmt, codec, options = CONTAINERS[suffix]
        w, h = size
        if w % 2 or h % 2:
            raise ValueError(f"video size must be even for yuv420p, got {w}x{h}")
        self.tmp = partial_path(self.path)
        try:
            self._out = av.open(str(self.tmp), "w", format=fmt)
        except (av.error.FFmpegError, OSError) as e:
            raise UserError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from e
        self.fps = Fraction(fps).limit_denominator(1001 * 120)
        self._video = self._out.add_stream(codec, rate=self.fps, options=options)
        self._video.width, self._video.height = w, h
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = 1 / self.fps
        self.width, self.height = w, h
        self.frames = 0
        self._t0: float | None = None  # the first frame's t, when writes give one
        self._last = None  # the last av.VideoFrame written: held over a gap in the input
        self._closed = False
        self._audio_in = None
        if audio_from is not None:
            self._open_audio(Path(audio_from))

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.kind, "device": str(self.path),
                "size": [self.width, self.height], "fps": float(self.fps)}

    # -- audio: copied packet by packet when the container takes the codec ----------

    def _open_audio(self, src: Path) -> None:
        import av

        inp = av.open(str(src))
        if not inp.streams.audio:
            inp.close()
            return
        a_in = inp.streams.audio[0]
        self._audio_in = inp
        self._audio_stream_in = a_in
        if a_in.codec_context.name in self._out.supported_codecs:
            self._audio_out = self._out.add_stream_from_template(a_in)
            self._transcode = False
        else:
            # e.g. PCM into .webm: re-encode with the container's default audio codec.
            codec = self._out.default_audio_codec
            self._audio_out = self._out.add_stream(codec, rate=a_in.codec_context.sample_rate or 48000,
                                                   layout=a_in.codec_context.layout.name)
            self._transcode = True
            log.info("audio %s cannot go into %s unchanged; re-encoding as %s",
                     a_in.codec_context.name, self.path.suffix, codec)
        self._audio_packets = inp.demux(a_in)
        self._audio_done = False

    def _mux_audio_until(self, t: float | None) -> None:
        """Mux input audio packets with start time < t (all of them when t is None)."""
        if self._audio_in is None or self._audio_done:
            return
        for packet in self._audio_packets:
            if packet.dts is None and packet.size == 0:  # demuxer flush packet
                continue
            if self._transcode:
                for frame in packet.decode():
                    frame.pts = None
                    self._out.mux(self._audio_out.encode(frame))
            else:
                packet.stream = self._audio_out
                self._out.mux(packet)
            pt = packet.pts if packet.pts is not None else packet.dts
            if t is not None and pt is not None and float(pt * packet.time_base) >= t:
                return
        self._audio_done = True

    # -- video --------------------------------------------------------------------

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        """frame: RGB uint8 (H, W, 3), shown from ``t`` s on (None: the next frame).

        The file has a constant rate, and a frame with a time goes to output frame
        round(t x fps): the frame before is repeated up to it, and a frame whose slot is
        taken (frames faster than the rate) is dropped, so a variable-rate input (a
        phone's) stays in time with its audio.
        """
        import av

        if frame.shape != (self._video.height, self._video.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self._video.height}, {self._video.width}, 3), "
                             f"got {frame.dtype} {frame.shape}")
        if t is None:
            due = self.frames
        else:
            self._t0 = t if self._t0 is None else self._t0
            due = round((t - self._t0) * float(self.fps))
            if due < self.frames:
                return
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        try:
            while self.frames < due:
                self._encode(self._last)
            self._encode(vf)
        except OSError as e:  # PyAV's av.error.OSError is one too
            if is_disk_full(e):
                raise DiskFull(self.path) from e
            raise

    def _encode(self, vf) -> None:
        vf.pts = self.frames
        self._out.mux(self._video.encode(vf))
        self._last = vf
        self.frames += 1
        self._mux_audio_until(self.frames / float(self.fps))

    def close(self) -> Path:
        """Finish the file and move it into place (safe to call twice)."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            self._out.mux(self._video.encode(None))
            self._mux_audio_until(None)
            if self._audio_in is not None and self._transcode:
                self._out.mux(self._audio_out.encode(None))
            self._out.close()
        except Exception as e:
            self._cleanup()
            if is_disk_full(e):
                raise DiskFull(self.path) from e
            raise
        self._close_audio()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if not self._closed:
            self._closed = True
            try:
                self._out.close()
            except Exception:  # the file is being thrown away; nothing to save
                pass
            self._cleanup()

    def _cleanup(self) -> None:
        self._close_audio()
        if self.tmp.exists():
            self.tmp.unlink()

    def _close_audio(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()
