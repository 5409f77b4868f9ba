"""Synthetic "talking head" clips made from ``skimage.data.astronaut()``.

No face dataset can be downloaded where this project is built and tested, so
tests and the demo animate the public-domain NASA portrait that ships inside
scikit-image. Every frame comes with its ground truth (:class:`Motion`): the
head moves by a known affine transform (:func:`frame_transform`) and the mouth
opens by a known amount, so trackers can be checked against the truth.

A frame is made in two steps, both in closed form and both cheap:

1. the mouth opens in astronaut-image coordinates: a dense vertical
   displacement field ``D`` (computed once) is applied as ``y + m * D(x, y)``
   with ``cv2.remap`` on a small box around the mouth, and the gap that opens
   between the lips is filled with a dark mouth interior;
2. the head moves: ``cv2.warpAffine`` maps the whole image to the output frame
   with :func:`frame_transform`.

Run ``python -m f2f_cam.synth OUT.mp4`` to write a clip.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import secrets
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Landmarks of the astronaut's face in astronaut-image pixels (x, y), measured
# once with MediaPipe FaceLandmarker (Tasks API, IMAGE mode, mediapipe 1.2.3,
# model face_landmarker.task float16 v1) on skimage.data.astronaut() at 512x512,
# normalised coordinates times 512. Hard-coded so this module needs no
# mediapipe. The subject smiles with her upper teeth showing between the lips.
MOUTH_CORNER_RIGHT = (202.3, 139.2)  # index 61, the subject's right (image left)
MOUTH_CORNER_LEFT = (244.5, 140.6)  # index 291
UPPER_LIP_OUTER = (223.4, 140.6)  # index 0
UPPER_LIP_INNER = (223.3, 143.2)  # index 13
LOWER_LIP_INNER = (223.0, 149.2)  # index 14
LOWER_LIP_OUTER = (222.7, 154.7)  # index 17
CHIN = (221.4, 177.4)  # index 152
NOSE_TIP = (223.5, 131.1)  # index 1
FOREHEAD = (226.0, 72.2)  # index 10, the top of the face mesh
# Bounding box (x0, y0, x1, y1) of all 478 landmarks: what "the face" means
# for framing and for the stay-inside-the-frame check.
FACE_BOX = (180.7, 71.8, 270.2, 177.4)
FACE_CENTER = ((FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2)
FACE_HEIGHT = CHIN[1] - FOREHEAD[1]  # px, forehead (10) to chin (152)

# At face_scale 1 the face (FACE_HEIGHT) fills this fraction of the frame height.
FACE_FRACTION = 0.45

# Mouth opening at m = 1, in astronaut pixels. The jaw drops: lower lip and chin
# move down by 8 % of the face height, the upper lip (and the upper teeth
# under it) rises by 2 %; both fade out smoothly so the rest of the face stays.
JAW_DROP = 0.08 * FACE_HEIGHT
UPPER_LIFT = 0.02 * FACE_HEIGHT
LIP_RAMP = 14.0  # px below the lip line over which the drop widens from the lip shape to the jaw shape
UPPER_FALLOFF = 10.0  # px above the lip line over which the lift fades (ends above the nose base)
NECK_FALLOFF = 30.0  # px below the chin over which the drop fades into the still neck
JAW_HALF_WIDTH = 45.0  # px from the mouth centre where the jaw stops moving sideways
# Box in astronaut pixels (x0, y0, x1, y1) where the field is non-zero; the
# remap runs only here, which keeps a frame cheap.
MOUTH_BOX = (170, 124, 280, 212)
# The opened gap between the lips: dark red-black at the top (shadow under the
# upper teeth), a little redder at the bottom (tongue). RGB.
MOUTH_DARK = (22, 6, 8)
MOUTH_TONGUE = (92, 30, 34)

# Head motion: each channel is a sum of three sines with these frequencies (Hz)
# and weights; the seed picks the phases. Frequencies are incommensurate so the
# motion does not visibly repeat within a clip.
MOTION_FREQS = {
    "dx": (0.37, 0.83, 1.31),
    "dy": (0.29, 0.67, 1.19),
    "scale": (0.21, 0.53, 0.97),
    "angle": (0.33, 0.77, 1.23),
}
MOTION_WEIGHTS = (0.5, 0.3, 0.2)
MOUTH_RATE = 1.6  # Hz, open-close cycles ("syllables") per second
MOUTH_WOBBLE = 0.5  # rad, seed-dependent phase modulation of the syllable rhythm
MOUTH_WOBBLE_FREQ = 0.45  # Hz
MOUTH_ENVELOPE_FREQ = 0.37  # Hz, slow change of how wide each syllable opens

AUDIO_RATE = 48000  # Hz
AUDIO_TONE = 220.0  # Hz
AUDIO_LEVEL = 0.05  # peak amplitude in [-1, 1], about -26 dBFS: quiet
AUDIO_FADE = 0.01  # s, fade in and out so the tone does not click
AUDIO_CHUNK = 1024  # samples per encoded AAC frame


@dataclass(frozen=True)
class Motion:
    """Per-frame ground truth.

    Attributes:
        dx: Head shift in output pixels, x.
        dy: Head shift in output pixels, y.
        scale: Head scale factor (1.0 = base framing).
        angle: In-plane head rotation, degrees, counter-clockwise as seen on screen.
        mouth: Mouth opening in [0, 1] (0 closed, 1 wide open).
    """

    dx: float  # head shift in output pixels, x
    dy: float  # head shift in output pixels, y
    scale: float  # head scale factor (1.0 = base framing)
    angle: float  # in-plane head rotation, degrees, counter-clockwise as seen on screen
    mouth: float  # mouth opening in [0, 1] (0 closed, 1 wide open)


@dataclass(frozen=True)
class SynthSpec:
    """What clip to make.

    Attributes:
        width: Output frame width, px (even: x264 with yuv420p needs it).
        height: Output frame height, px (even).
        fps: Frames per second.
        seconds: Clip length; the clip has ``round(fps * seconds)`` frames.
        face_scale: Base zoom of the face (1.0: the face is about 45 % of the
            frame height).
        shift: Largest head shift, px.
        zoom: Largest relative scale change (scale stays in 1 +/- zoom).
        rotate: Largest rotation, degrees.
        mouth: Whether the mouth opens and closes.
        audio: Whether to add a mono AAC track (a quiet 220 Hz sine, 48 kHz).
        seed: Picks the motion phases; the same spec gives identical frames.

    Raises:
        ValueError: From the constructor, if a field is out of range or the
            face would leave the frame at the motion extremes.
    """

    width: int = 640  # output frame size (even numbers, x264 needs them)
    height: int = 480
    fps: float = 15.0
    seconds: float = 2.0
    face_scale: float = 1.0  # base zoom of the face in the frame (1.0: face about 45 % of frame height)
    shift: float = 40.0  # max head shift, px
    zoom: float = 0.15  # max relative scale change (1 +/- zoom)
    rotate: float = 10.0  # max rotation, degrees
    mouth: bool = True  # animate mouth opening
    audio: bool = False  # add a mono AAC audio track (a quiet sine tone), 48 kHz, same duration
    seed: int = 0  # motion phases depend on it; same seed -> identical frames

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"frame size must be positive even numbers, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.face_scale > 0:
            raise ValueError(f"face_scale must be positive, got {self.face_scale}")
        if self.shift < 0 or self.rotate < 0 or not 0 <= self.zoom < 1:
            raise ValueError(
                f"need shift >= 0, rotate >= 0 and 0 <= zoom < 1, got shift={self.shift}, "
                f"rotate={self.rotate}, zoom={self.zoom}"
            )
        # Largest half extents of the face around the frame centre over all
        # motions: the face box (the chin lowered by the open jaw) rotated by
        # up to `rotate`, scaled by 1 + zoom, shifted by `shift`.
        cx, cy = FACE_CENTER
        half_w = max(cx - FACE_BOX[0], FACE_BOX[2] - cx)
        half_h = max(cy - FACE_BOX[1], FACE_BOX[3] + JAW_DROP - cy)
        theta = math.radians(min(self.rotate, 90.0))
        s = _base_scale(self) * (1 + self.zoom)
        reach_x = s * (math.cos(theta) * half_w + math.sin(theta) * half_h) + self.shift
        reach_y = s * (math.sin(theta) * half_w + math.cos(theta) * half_h) + self.shift
        if reach_x > self.width / 2 or reach_y > self.height / 2:
            raise ValueError(
                f"the face leaves the {self.width}x{self.height} frame at the motion extremes "
                f"(it reaches {reach_x:.0f} px sideways and {reach_y:.0f} px up/down from the centre); "
                "lower face_scale, shift, zoom or rotate"
            )

    @property
    def frames(self) -> int:
        """Number of frames in the clip, ``round(fps * seconds)``."""
        return max(1, round(self.fps * self.seconds))


def motion_at(spec: SynthSpec, i: int) -> Motion:
    """Return the ground-truth motion of frame ``i``.

    Each head channel is a sum of sines with seed-dependent phases, shifted so
    that frame 0 is the neutral pose and scaled so it never exceeds the spec's
    limits. The mouth opens and closes at about MOUTH_RATE syllables a second.

    Args:
        spec: The clip.
        i: Frame index (0-based); time is ``i / spec.fps``.

    Returns:
        The motion; frame 0 is ``Motion(0, 0, 1, 0, 0)``.
    """
    t = i / spec.fps
    # (4 head channels + 2 mouth, 3) phases in [0, 2 pi), fixed by the seed.
    phases = np.random.default_rng(spec.seed).uniform(0.0, 2.0 * math.pi, size=(6, 3))

    def wave(row: int, freqs: tuple[float, float, float]) -> float:
        # Each term sin(w t + p) - sin(p) is 0 at t = 0 and at most 1 + |sin p|
        # in magnitude; dividing by that keeps the sum in [-1, 1].
        total = 0.0
        for w, f, p in zip(MOTION_WEIGHTS, freqs, phases[row]):
            p = float(p)
            total += w * (math.sin(2 * math.pi * f * t + p) - math.sin(p)) / (1 + abs(math.sin(p)))
        return total

    dx = spec.shift * wave(0, MOTION_FREQS["dx"])
    dy = spec.shift * wave(1, MOTION_FREQS["dy"])
    scale = 1.0 + spec.zoom * wave(2, MOTION_FREQS["scale"])
    angle = spec.rotate * wave(3, MOTION_FREQS["angle"])
    mouth = 0.0
    if spec.mouth:
        # sin^2 of a phase that is 0 at t = 0: closed at frame 0, fully open
        # once per syllable; the seed wobbles the rhythm and the envelope
        # (in [0.6, 1]) makes some syllables wider than others.
        p1, p2 = float(phases[4, 0]), float(phases[5, 0])
        phase = math.pi * MOUTH_RATE * t + MOUTH_WOBBLE * (
            math.sin(2 * math.pi * MOUTH_WOBBLE_FREQ * t + p1) - math.sin(p1)
        )
        envelope = 0.8 + 0.2 * math.cos(2 * math.pi * MOUTH_ENVELOPE_FREQ * t + p2)
        mouth = min(1.0, max(0.0, math.sin(phase) ** 2 * envelope))
    return Motion(dx=dx, dy=dy, scale=scale, angle=angle, mouth=mouth)


def base_transform(spec: SynthSpec) -> np.ndarray:
    """Return the neutral-pose framing as a (2, 3) float64 affine.

    It maps astronaut-image pixel coordinates (x, y) to output-frame pixel
    coordinates: the face centre goes to the frame centre, and the face
    (forehead to chin) fills ``FACE_FRACTION * face_scale`` of the frame height.
    """
    s = _base_scale(spec)
    cx, cy = FACE_CENTER
    return np.array(
        [[s, 0.0, spec.width / 2 - s * cx], [0.0, s, spec.height / 2 - s * cy]],
        dtype=np.float64,
    )


def frame_transform(spec: SynthSpec, motion: Motion) -> np.ndarray:
    """Return the (2, 3) float64 affine from astronaut-image to output coordinates.

    The head motion is applied after the base framing: rotation by
    ``motion.angle`` (counter-clockwise on screen) and scaling by
    ``motion.scale`` about the face centre, then a shift by
    ``(motion.dx, motion.dy)``. A landmark at astronaut pixel ``p`` appears at
    ``M @ [p, 1]`` in the frame (the mouth warp aside).
    """
    base = np.vstack([base_transform(spec), [0.0, 0.0, 1.0]])  # (3, 3)
    centre = (spec.width / 2, spec.height / 2)  # where base puts FACE_CENTER
    # OpenCV's positive angle turns counter-clockwise on screen (y points down).
    head = np.vstack([cv2.getRotationMatrix2D(centre, motion.angle, motion.scale), [0.0, 0.0, 1.0]])
    head[0, 2] += motion.dx
    head[1, 2] += motion.dy
    return (head @ base)[:2]


def render_frame(spec: SynthSpec, motion: Motion) -> np.ndarray:
    """Render one frame.

    Args:
        spec: The clip (frame size, framing).
        motion: Head pose and mouth opening of this frame.

    Returns:
        RGB uint8 array of shape (spec.height, spec.width, 3). The same
        arguments always give the same bytes.
    """
    assets = _assets()
    image = assets.image  # (512, 512, 3) RGB uint8, read-only
    m = min(1.0, max(0.0, float(motion.mouth)))
    if m > 0:
        image = image.copy()
        x0, y0, x1, y1 = MOUTH_BOX
        # Backward map on the mouth box: output pixel (x, y) samples (x, y + m D).
        map_y = assets.grid_y + np.float32(m) * assets.field  # (h, w) float32
        roi = cv2.remap(assets.image, assets.grid_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        image[y0:y1, x0:x1] = _fill_gap(roi, assets, m)
    return cv2.warpAffine(
        image,
        frame_transform(spec, motion),
        (spec.width, spec.height),
        flags=cv2.INTER_LINEAR,
        # Replicating the edge never shows a second (mirrored) face, which a
        # reflecting border can when the face is small.
        borderMode=cv2.BORDER_REPLICATE,
    )


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
    rate = Fraction(spec.fps).limit_denominator(1001)  # 15.0 -> 15, 29.97 -> 2997/100
    frame_tb = 1 / rate
    n = spec.frames
    n_samples = round(n / spec.fps * AUDIO_RATE)  # audio as long as the video
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    tmp = _create_partial(path)
    motions: list[Motion] = []
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
            # Near-lossless so trackers see what was rendered, not block artefacts.
            video.options = {"crf": "16", "preset": "veryfast"}
            audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if spec.audio else None
            written = 0  # audio samples sent so far
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
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info(
        "wrote %s: %d frames, %dx%d at %g fps%s",
        path, n, spec.width, spec.height, spec.fps, ", with audio" if spec.audio else "",
    )
    return motions


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m f2f_cam.synth OUT.mp4 [--seconds S] [--fps F] [--size WxH] [--audio] [--seed K] [--shift PX]``."""
    parser = argparse.ArgumentParser(
        prog="python -m f2f_cam.synth",
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
    parser.add_argument("--verbose", action="store_true", help="log details and show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        width, height = args.size
        # The default shift is in px for a 480 px frame; scaling it keeps the
        # face inside smaller frames too.
        shift = SynthSpec.shift * height / SynthSpec.height if args.shift is None else args.shift
        spec = SynthSpec(width=width, height=height, fps=args.fps, seconds=args.seconds,
                         shift=shift, audio=args.audio, seed=args.seed)
        motions = write_video(args.out, spec)
    except (ValueError, OSError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(motions)} frames, {spec.width}x{spec.height}, {spec.fps:g} fps"
          f"{', audio' if spec.audio else ''})")
    return 0


# --- helpers -----------------------------------------------------------------


@dataclass(frozen=True)
class _Assets:
    """What every frame reuses: the portrait and the mouth field (all read-only)."""

    image: np.ndarray  # (512, 512, 3) RGB uint8, the astronaut
    grid_x: np.ndarray  # (h, w) float32, absolute x of each MOUTH_BOX pixel
    grid_y: np.ndarray  # (h, w) float32, absolute y
    field: np.ndarray  # (h, w) float32, D: backward y displacement at full opening, px
    gap_top: np.ndarray  # (1, w) float32, -(rise of the upper lip edge at m = 1), relative to lip_line
    gap_bottom: np.ndarray  # (1, w) float32, drop of the lower lip edge at m = 1, relative to lip_line
    lip_line: np.ndarray  # (1, w) float32, y of the line where the lips part, box-relative


@functools.cache
def _assets() -> _Assets:
    # Cached: loading the PNG alone takes ~5 ms, and the result is a pure
    # function of constants (a lazily computed constant, never mutated).
    from skimage import data

    image = data.astronaut()
    x0, y0, x1, y1 = MOUTH_BOX
    xs = np.arange(x0, x1, dtype=np.float64)[None, :]  # (1, w)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]  # (h, 1)

    # The line where the lips part, a parabola through both corners and the
    # point midway between the inner lips (through the visible upper teeth,
    # so the upper teeth rise with the upper lip as in a real jaw drop).
    mid = ((UPPER_LIP_INNER[0] + LOWER_LIP_INNER[0]) / 2, (UPPER_LIP_INNER[1] + LOWER_LIP_INNER[1]) / 2)
    px, py = zip(MOUTH_CORNER_RIGHT, mid, MOUTH_CORNER_LEFT)
    parabola = np.polyfit(px, py, 2)
    x_clamped = np.clip(xs, MOUTH_CORNER_RIGHT[0], MOUTH_CORNER_LEFT[0])
    line = np.polyval(parabola, x_clamped)  # (1, w) absolute y

    # Horizontal profiles: `lips` is how far the lips part at each x (rounded,
    # 0 at the corners); `jaw` is how far the jaw moves (1 across the mouth,
    # fading to 0 at JAW_HALF_WIDTH).
    centre = (MOUTH_CORNER_RIGHT[0] + MOUTH_CORNER_LEFT[0]) / 2
    half = (MOUTH_CORNER_LEFT[0] - MOUTH_CORNER_RIGHT[0]) / 2
    u = np.abs(xs - centre) / half
    lips = np.clip(1 - u**2, 0, None) ** 0.6
    jaw = 1 - _smoothstep((np.abs(xs - centre) - half) / (JAW_HALF_WIDTH - half))

    # Forward vertical displacement v at full opening (down positive), (h, w).
    below = ys >= line
    ramp = _smoothstep((ys - line) / LIP_RAMP)  # 0 at the lip line, 1 a lip's width lower
    neck = 1 - _smoothstep((ys - CHIN[1]) / NECK_FALLOFF)
    down = JAW_DROP * ((1 - ramp) * lips + ramp * jaw) * neck
    up = -UPPER_LIFT * lips * (1 - _smoothstep((line - ys) / UPPER_FALLOFF))
    forward = np.where(below, down, up)
    # First-order inverse: a pixel at y samples y - v(y). The only place that
    # is badly wrong is the gap the jump at the lip line opens, which
    # _fill_gap paints over; everywhere else v changes slowly (|dv/dy| < 1).
    field = -forward

    def frozen(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float32)
        a.flags.writeable = False
        return a

    h, w = y1 - y0, x1 - x0
    image.flags.writeable = False
    return _Assets(
        image=image,
        grid_x=frozen(np.broadcast_to(xs, (h, w))),
        grid_y=frozen(np.broadcast_to(ys, (h, w))),
        field=frozen(field),
        gap_top=frozen(-UPPER_LIFT * lips),
        gap_bottom=frozen(JAW_DROP * lips),
        lip_line=frozen(line - y0),
    )


def _fill_gap(roi: np.ndarray, assets: _Assets, m: float) -> np.ndarray:
    """Paint the mouth interior into the opened gap; roi is (h, w, 3) uint8 of MOUTH_BOX."""
    h = roi.shape[0]
    y = np.arange(h, dtype=np.float32)[:, None]  # (h, 1) box-relative
    top = assets.lip_line + np.float32(m) * assets.gap_top  # (1, w) upper lip edge
    bottom = assets.lip_line + np.float32(m) * assets.gap_bottom  # (1, w) lower lip edge
    # How much of each pixel's row span [y - 0.5, y + 0.5] lies inside the
    # gap [top, bottom]: anti-aliased edges, 0 where the lips touch, and a
    # faint dark line when the mouth is barely open.
    alpha = np.clip(np.minimum(y + 0.5, bottom) - np.maximum(y - 0.5, top), 0.0, 1.0)  # (h, w)
    depth = np.clip((y - top) / np.maximum(bottom - top, 1e-3), 0.0, 1.0) ** 2  # 0 top .. 1 bottom
    dark, tongue = np.float32(MOUTH_DARK), np.float32(MOUTH_TONGUE)
    colour = dark + depth[..., None] * (tongue - dark)  # (h, w, 3)
    a = alpha[..., None]
    out = roi.astype(np.float32) * (1 - a) + colour * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 for t <= 0, 1 for t >= 1, a smooth cubic between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _base_scale(spec: SynthSpec) -> float:
    """Astronaut pixels -> output pixels at the neutral pose."""
    return FACE_FRACTION * spec.face_scale * spec.height / FACE_HEIGHT


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


def _create_partial(path: Path) -> Path:
    """Create an empty, unique temp file beside ``path`` and return its name.

    Unlike tempfile.mkstemp (always 0600), the file gets the usual permissions
    (0666 less the umask), which os.replace then gives the finished clip.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"cannot create a temp file beside {path}")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH like 640x480, got {text!r}") from None
    return w, h


if __name__ == "__main__":
    raise SystemExit(main())
