"""The clip writer and the command line: a synthetic clip as an H.264 .mp4 file.

``python -m trainers.synth OUT.mp4 [--style drive] ...`` writes one;
:func:`write_video` is the same as a function and returns the clip's ground truth.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from f2f_cam.atomic import atomic_path
from f2f_cam.errors import one_line
from trainers.synth.frame import STYLES, Motion, SynthSpec, render_frame
from trainers.synth.shape import FaceShape
from trainers.synth.styles import motion_at

logger = logging.getLogger(__name__)

AUDIO_RATE = 48000  # Hz
AUDIO_TONE = 220.0  # Hz
AUDIO_LEVEL = 0.05  # peak amplitude in [-1, 1], about -26 dBFS: quiet
AUDIO_FADE = 0.01  # s, fade in and out so the tone does not click
AUDIO_CHUNK = 1024  # samples per encoded AAC frame


def write_video(path: str | os.PathLike[str], spec: SynthSpec) -> list[Motion]:
    """Write the clip as an H.264 .mp4 and return its ground truth.

    Video is yuv420p at a constant frame rate (frame i has pts i in time base
    1/fps). With ``spec.audio`` a mono 48 kHz AAC track of a quiet 220 Hz tone
    of the same duration is muxed in, interleaved with the video. The file
    appears atomically: it is written to a temporary file in the same folder
    and renamed over ``path``.

    Args:
        path: Where to write the .mp4.
        spec: The clip.

    Returns:
        One Motion per frame, in order.

    Raises:
        FileNotFoundError: If the folder of ``path`` does not exist.
    """
    import av  # heavy; only the writer needs it

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        motions = _encode(container, spec)
    logger.info(
        "wrote %s: %d frames, %dx%d at %g fps%s",
        path, len(motions), spec.width, spec.height, spec.fps, ", with audio" if spec.audio else "",
    )
    return motions


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m trainers.synth OUT.mp4 [--seconds S] [--fps F] [--size WxH] [--audio] [--seed K]
    [--shift PX] [--style train|drive] [--no-blink] [--no-brows] [--shape W,E,N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m trainers.synth",
        description="Write a synthetic talking-head clip of the scikit-image astronaut.",
    )
    parser.add_argument("out", type=Path, help="the .mp4 to write")
    parser.add_argument("--seconds", type=float, default=SynthSpec.seconds, help="clip length (default %(default)s)")
    parser.add_argument("--fps", type=float, default=SynthSpec.fps, help="frame rate (default %(default)s)")
    parser.add_argument("--size", type=_parse_size, default=(SynthSpec.width, SynthSpec.height),
                        metavar="WxH", help="frame size (default 640x480)")
    parser.add_argument("--audio", action="store_true", help="add a quiet 220 Hz tone")
    parser.add_argument("--seed", type=int, default=SynthSpec.seed, help="motion seed (default %(default)s)")
    parser.add_argument("--shift", type=float, default=None,
                        help="largest head shift in px (default 40 at 480 px height, scaled with the height)")
    parser.add_argument("--zoom", type=float, default=SynthSpec.zoom,
                        help="largest relative head scale change (default %(default)s)")
    parser.add_argument("--rotate", type=float, default=SynthSpec.rotate,
                        help="largest head rotation in degrees (default %(default)s)")
    parser.add_argument("--style", choices=STYLES, default=SynthSpec.style,
                        help="motion and expressions: 'train' for a persona's training clip, 'drive' for a clip "
                             "that moves unlike it, to drive a persona with (default %(default)s)")
    parser.add_argument("--no-blink", dest="blink", action="store_false", help="keep the eyes open")
    parser.add_argument("--no-brows", dest="brows", action="store_false", help="keep the eyebrows still")
    parser.add_argument("--shape", type=_parse_shape, default=FaceShape(), metavar="W,E,N",
                        help="another face shape: relative changes of face width, eye spacing and nose "
                             "length, e.g. 0.12,0.15,0.15 (default: the astronaut's own)")
    parser.add_argument("--verbose", action="store_true", help="log details and show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        width, height = args.size
        # The default shift is in px for a 480 px frame; scaling it keeps the
        # face inside smaller frames too.
        shift = SynthSpec.shift * height / SynthSpec.height if args.shift is None else args.shift
        spec = SynthSpec(width=width, height=height, fps=args.fps, seconds=args.seconds,
                         shift=shift, zoom=args.zoom, rotate=args.rotate, audio=args.audio,
                         seed=args.seed, style=args.style,
                         blink=args.blink, brows=args.brows, shape=args.shape)
        motions = write_video(args.out, spec)
    except (ValueError, OSError) as exc:
        if args.verbose:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(motions)} frames, {spec.width}x{spec.height}, {spec.fps:g} fps, "
          f"{spec.style} style{', audio' if spec.audio else ''})")
    return 0


# --- helpers -----------------------------------------------------------------


def _encode(container, spec: SynthSpec) -> list[Motion]:
    """Encode the clip's frames (and tone) into an open av output container."""
    import av

    rate = Fraction(spec.fps).limit_denominator(1001)  # 15.0 -> 15, 29.97 -> 2997/100
    frame_tb = 1 / rate
    n = spec.frames
    n_samples = round(n / spec.fps * AUDIO_RATE)  # audio as long as the video
    video = container.add_stream("libx264", rate=rate)
    video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
    # Near-lossless so trackers see what was rendered, not block artefacts.
    video.options = {"crf": "16", "preset": "veryfast"}
    audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if spec.audio else None
    written = 0  # audio samples sent so far
    motions: list[Motion] = []
    for i in range(n):
        motion = motion_at(spec, i)
        motions.append(motion)
        frame = av.VideoFrame.from_ndarray(render_frame(spec, motion), format="rgb24")
        frame.pts, frame.time_base = i, frame_tb
        for packet in video.encode(frame):
            container.mux(packet)
        if audio is not None:
            # Keep the audio up to the end of this video frame, so the
            # muxer can interleave instead of appending all audio last.
            target = n_samples if i == n - 1 else round((i + 1) / spec.fps * AUDIO_RATE)
            while written < target:
                count = min(AUDIO_CHUNK, target - written)
                for packet in audio.encode(_tone(written, count, n_samples)):
                    container.mux(packet)
                written += count
    for packet in video.encode(None):
        container.mux(packet)
    if audio is not None:
        for packet in audio.encode(None):
            container.mux(packet)
    return motions


def _tone(start: int, count: int, total: int):
    """Return an av.AudioFrame of samples [start, start + count) of the clip's tone."""
    import av

    n = np.arange(start, start + count, dtype=np.float64)
    wave = AUDIO_LEVEL * np.sin(2 * np.pi * AUDIO_TONE * n / AUDIO_RATE)
    fade = AUDIO_FADE * AUDIO_RATE
    wave *= np.clip(np.minimum(n + 1, total - n) / fade, 0.0, 1.0)  # linear fade in and out
    frame = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None, :], format="fltp", layout="mono")  # (1, count)
    frame.sample_rate = AUDIO_RATE
    frame.pts, frame.time_base = start, Fraction(1, AUDIO_RATE)
    return frame


def _parse_shape(text: str) -> FaceShape:
    try:
        width, eyes, nose = (float(v) for v in text.split(","))
        return FaceShape(width=width, eyes=eyes, nose=nose)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected W,E,N like 0.12,0.15,0.15, got {text!r} ({e})") from None


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH like 640x480, got {text!r}") from None
    return w, h
