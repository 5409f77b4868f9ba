"""Synthetic "talking head" clips made from ``skimage.data.astronaut()``.

No face dataset can be downloaded where this project is built and tested, so
tests and the demo animate the public-domain NASA portrait that ships inside
scikit-image. Every frame comes with its ground truth (:class:`Motion`): the
head moves by a known affine transform (:func:`frame_transform`), and the
mouth opens, the eyes close and the eyebrows rise or lower by known amounts,
so trackers can be checked against the truth.

A frame is made in two steps, both in closed form and both cheap:

1. the face changes expression in astronaut-image coordinates, by vertical
   displacement fields computed once and applied with ``cv2.remap`` on two
   small boxes:

   * the mouth (``MOUTH_BOX``): ``y + m * D(x, y)``, and the gap that opens
     between the lips is filled with a dark mouth interior;
   * the brows and eyes (``UPPER_BOX``): the brows and the lower forehead move
     up or down (``y + |b| * B(x, y)``, with one field ``B`` for raising and
     one for lowering), then the upper eyelids slide down over the eyeballs
     to meet the lower lids, which rise a little (a closed-form map per eye
     column); the covered eye opening is tinted towards the eyelid skin just
     above the eye;

2. the head moves: ``cv2.warpAffine`` maps the whole image to the output frame
   with :func:`frame_transform`.

Two motion styles: ``"train"`` (the clip a persona is trained on: wandering
head, steady talking, natural blinks, slow brows) and ``"drive"`` (a clip to
drive a persona with, moving unlike the training clip: a head tilted mostly
one way, faster talking with pauses, a long eyes-closed moment, brow raises
and frowns).

Run ``python -m f2f_cam.synth OUT.mp4 [--style drive]`` to write a clip.
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

# Eyes, measured the same way as the mouth above (MediaPipe FaceLandmarker,
# Tasks API, IMAGE mode, face_landmarker.task, on astronaut() at 512x512,
# normalised coordinates times 512). "Right" is the subject's right (image left).
RIGHT_EYE_UPPER = (202.6, 97.8)  # index 159, upper lid
RIGHT_EYE_LOWER = (204.2, 104.2)  # index 145, lower lid
RIGHT_EYE_OUTER = (195.3, 100.6)  # index 33, outer corner
RIGHT_EYE_INNER = (213.6, 103.6)  # index 133, inner corner
LEFT_EYE_UPPER = (248.1, 100.2)  # index 386
LEFT_EYE_LOWER = (245.9, 106.5)  # index 374
LEFT_EYE_INNER = (236.4, 104.9)  # index 362
LEFT_EYE_OUTER = (255.3, 103.8)  # index 263
# Upper edge of the eyebrows, from the outer end to the inner end (same measurement).
RIGHT_BROW = ((187.9, 90.7), (191.6, 87.8), (197.5, 86.6), (205.6, 87.8), (215.1, 89.8))  # 70, 63, 105, 66, 107
LEFT_BROW = ((236.0, 90.6), (245.9, 89.7), (254.2, 89.6), (260.2, 91.5), (263.7, 94.9))  # 336, 296, 334, 293, 300

# Eye closing at eyes = 1: the upper lid slides down EYE_MEET of the way to
# the lower lid, the lower lid rises the rest, so they meet low as in a real
# blink. The skin above the upper lid stretches over UPPER_LID_SKIN px (the
# lid margin and the top of that band keep their texture; the middle
# stretches); below the lower lid over LOWER_LID_SKIN px.
EYE_MEET = 0.85
UPPER_LID_SKIN = 7.0  # px
LOWER_LID_SKIN = 4.0  # px
# How far the covered eye opening is tinted towards the skin above the eye,
# at full closure (the stretched lid alone keeps some of the lid crease's and
# lashes' darkness, which reads as a smear); less at partial closure.
EYELID_TINT = 0.75
# Eyebrows at brows = +1: the brow band moves up by 4 % of the face height; at
# -1 it moves down by up to as much (less where the brow is close to the eye:
# the skin between brow and eye is squeezed, see BROW_MAX_SLOPE). Above the
# band the displacement fades over FOREHEAD_FALLOFF (the lower forehead moves
# a bit, the hairline does not), below it over the gap down to just above the
# upper eyelid (the eye openings do not move), and sideways over
# BROW_SIDE_FALLOFF beyond the brow ends.
BROW_LIFT = 0.04 * FACE_HEIGHT
BROW_BAND = (2.0, 0.5)  # px above / below the upper brow edge that move rigidly
FOREHEAD_FALLOFF = 16.0  # px
BROW_SIDE_FALLOFF = 10.0  # px
# Px above the upper lid margin where the falloff under the brows ends, for
# raised / lowered brows: raising must not stretch the dark lid crease and
# lashes (they smear); lowering may squeeze them.
BROW_STOP = (3.0, 1.0)
BROW_MAX_SLOPE = 0.8  # cap on the squeeze under lowered brows: the map stays one-to-one
# Box in astronaut pixels (x0, y0, x1, y1) of the brow and eye warps; it does
# not overlap MOUTH_BOX.
UPPER_BOX = (172, 64, 280, 118)

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

# Expressions of the "train" style: a blink (eyes closing and opening again in
# BLINK_CLOSE + BLINK_HOLD + BLINK_OPEN = 0.2 s) every BLINK_EVERY s, give or
# take BLINK_JITTER (the seed picks each one's offset), the first one
# BLINK_FIRST s in; the brows drift slowly within +/- TRAIN_BROW_RANGE.
BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN = 0.07, 0.03, 0.10  # s
BLINK_EVERY = 3.5  # s
BLINK_JITTER = 0.5  # s, so blinks come 3 to 4 s apart
BLINK_FIRST = 1.2  # s, the first nominal blink (plus its jitter)
TRAIN_BROW_FREQS = (0.11, 0.19, 0.31)  # Hz
TRAIN_BROW_RANGE = 0.6

# The "drive" style: other frequencies, a head that tilts mostly one way
# (counter-clockwise, up to the full `rotate`), faster talking in bursts with
# pauses, quicker blinks, and a DRIVE_CYCLE-second cycle of set pieces: a
# brow raise, a long eyes-closed moment, a frown with narrowed eyes.
DRIVE_MOTION_FREQS = {
    "dx": (0.23, 0.59, 1.61),
    "dy": (0.41, 0.97, 1.43),
    "scale": (0.17, 0.47, 1.13),
    "angle": (0.71, 1.37, 1.89),
}
DRIVE_TILT = 0.8  # share of `rotate` in the one-way tilt; the rest wobbles both ways
DRIVE_TILT_FREQ = 0.12  # Hz, cycles of the tilt: 0 at t = 0, full around 1 / (2 f) = 4.2 s
DRIVE_TILT_HOLD = 1.4  # the tilt is min(1, HOLD * sin^2): it dwells at its full value
DRIVE_MOUTH_RATE = 2.7  # Hz, syllables per second
DRIVE_TALK_FREQ = 0.29  # Hz, talk-pause bursts
DRIVE_BLINK_EVERY = 2.2  # s
DRIVE_BLINK_FIRST = 0.9  # s
DRIVE_CYCLE = 7.0  # s
DRIVE_CYCLE_JITTER = 0.4  # s, the seed delays the whole cycle by up to this
# (start in the cycle, rise, hold, fall) in s, and the level reached.
DRIVE_BROW_RAISE = ((0.7, 0.25, 0.9, 0.35), 1.0)
DRIVE_EYES_CLOSED = ((2.9, 0.12, 1.0, 0.2), 1.0)
DRIVE_FROWN = ((4.7, 0.4, 1.0, 0.5), -0.8)
DRIVE_FROWN_SQUINT = 0.35  # eyes narrow this much while frowning fully

STYLES = ("train", "drive")

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
        eyes: Eye closing in [0, 1] (0 open as in the photo, 1 closed).
        brows: Eyebrows in [-1, 1] (positive raised, negative lowered as in
            a frown; 1 is BROW_LIFT astronaut px).
    """

    dx: float  # head shift in output pixels, x
    dy: float  # head shift in output pixels, y
    scale: float  # head scale factor (1.0 = base framing)
    angle: float  # in-plane head rotation, degrees, counter-clockwise as seen on screen
    mouth: float  # mouth opening in [0, 1] (0 closed, 1 wide open)
    eyes: float = 0.0  # eye closing in [0, 1] (0 open as in the photo, 1 closed)
    brows: float = 0.0  # eyebrows in [-1, 1] (+ raised, - lowered)


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
        blink: Whether the eyes blink (and, in "drive", close for a while
            and narrow).
        brows: Whether the eyebrows move.
        style: "train" (the persona's training clip) or "drive" (a clip to
            drive a persona with, whose motion and expressions are unlike
            the training clip's).

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
    # Added last, so positional arguments keep their meaning.
    blink: bool = True  # animate the eyes (blinks; in "drive" also closed and narrowed eyes)
    brows: bool = True  # animate the eyebrows
    style: str = "train"  # "train" or "drive": which motion and expressions

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"frame size must be positive even numbers, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.face_scale > 0:
            raise ValueError(f"face_scale must be positive, got {self.face_scale}")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.shift < 0 or self.rotate < 0 or not 0 <= self.zoom < 1:
            raise ValueError(
                f"need shift >= 0, rotate >= 0 and 0 <= zoom < 1, got shift={self.shift}, "
                f"rotate={self.rotate}, zoom={self.zoom}"
            )
        # Largest half extents of the face around the frame centre over all
        # motions: the face box (the chin lowered by the open jaw) rotated by
        # up to `rotate`, scaled by 1 + zoom, shifted by `shift`. (Raised
        # brows lift the top of the face by less than BROW_LIFT.)
        cx, cy = FACE_CENTER
        half_w = max(cx - FACE_BOX[0], FACE_BOX[2] - cx)
        half_h = max(cy - FACE_BOX[1] + BROW_LIFT, FACE_BOX[3] + JAW_DROP - cy)
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

    "train" (the default): each head channel is a sum of sines with
    seed-dependent phases, shifted so that frame 0 is the neutral pose and
    scaled so it never exceeds the spec's limits. The mouth opens and closes
    at about MOUTH_RATE syllables a second, the eyes blink every 3 to 4 s
    (0.2 s each) and the brows drift slowly within +/- TRAIN_BROW_RANGE.

    "drive": other frequencies and phases; the head tilts mostly
    counter-clockwise (up to ``spec.rotate``), the mouth talks faster
    (DRIVE_MOUTH_RATE) in bursts with pauses, blinks come more often, and
    every DRIVE_CYCLE s the brows rise fully, the eyes stay closed for about a
    second, then the brows frown with narrowed eyes.

    Both styles stay within the spec's limits and start from the neutral
    frame (the first face a persona's retargeting sees is its neutral face).

    Args:
        spec: The clip.
        i: Frame index (0-based); time is ``i / spec.fps``.

    Returns:
        The motion; frame 0 is ``Motion(0, 0, 1, 0, 0, eyes=0, brows=0)``.
    """
    t = i / spec.fps
    rng = np.random.default_rng(spec.seed)
    # (4 head channels + 2 mouth, 3) phases in [0, 2 pi), fixed by the seed;
    # drawn first, so "train" head and mouth motion is what it always was.
    phases = rng.uniform(0.0, 2.0 * math.pi, size=(6, 3))
    # (1 brow + 4 drive head channels + 2 drive mouth, 3) more phases.
    extra = rng.uniform(0.0, 2.0 * math.pi, size=(7, 3))
    cycle_delay = float(rng.uniform(0.0, DRIVE_CYCLE_JITTER))

    def wave(p: np.ndarray, freqs: tuple[float, float, float]) -> float:
        # Each term sin(w t + p) - sin(p) is 0 at t = 0 and at most 1 + |sin p|
        # in magnitude; dividing by that keeps the sum in [-1, 1].
        total = 0.0
        for w, f, ph in zip(MOTION_WEIGHTS, freqs, p):
            ph = float(ph)
            total += w * (math.sin(2 * math.pi * f * t + ph) - math.sin(ph)) / (1 + abs(math.sin(ph)))
        return total

    def syllables(rate: float, p1: float, p2: float) -> tuple[float, float]:
        # sin^2 of a phase that is 0 at t = 0: closed at frame 0, open once
        # per syllable; the seed wobbles the rhythm. Also returns the slow
        # cosine the envelope is made of.
        phase = math.pi * rate * t + MOUTH_WOBBLE * (math.sin(2 * math.pi * MOUTH_WOBBLE_FREQ * t + p1) - math.sin(p1))
        return math.sin(phase) ** 2, math.cos(2 * math.pi * MOUTH_ENVELOPE_FREQ * t + p2)

    eyes = brows = mouth = 0.0
    if spec.style == "train":
        dx = spec.shift * wave(phases[0], MOTION_FREQS["dx"])
        dy = spec.shift * wave(phases[1], MOTION_FREQS["dy"])
        scale = 1.0 + spec.zoom * wave(phases[2], MOTION_FREQS["scale"])
        angle = spec.rotate * wave(phases[3], MOTION_FREQS["angle"])
        if spec.mouth:
            # The envelope (in [0.6, 1]) makes some syllables wider than others.
            open_, slow = syllables(MOUTH_RATE, float(phases[4, 0]), float(phases[5, 0]))
            mouth = open_ * (0.8 + 0.2 * slow)
        if spec.blink:
            eyes = _blinks(t, spec.seed, 0, BLINK_FIRST, BLINK_EVERY)
        if spec.brows:
            brows = TRAIN_BROW_RANGE * wave(extra[0], TRAIN_BROW_FREQS)
    else:
        dx = spec.shift * wave(extra[1], DRIVE_MOTION_FREQS["dx"])
        dy = spec.shift * wave(extra[2], DRIVE_MOTION_FREQS["dy"])
        scale = 1.0 + spec.zoom * wave(extra[3], DRIVE_MOTION_FREQS["scale"])
        # 0 .. 1, one way, held at 1 for about a third of each tilt cycle.
        tilt = min(1.0, DRIVE_TILT_HOLD * math.sin(math.pi * DRIVE_TILT_FREQ * t) ** 2)
        angle = spec.rotate * (DRIVE_TILT * tilt + (1 - DRIVE_TILT) * wave(extra[4], DRIVE_MOTION_FREQS["angle"]))
        if spec.mouth:
            # Talk in bursts: the envelope is 0 (a pause) about a third of the time.
            open_, _ = syllables(DRIVE_MOUTH_RATE, float(extra[5, 0]), 0.0)
            talk = min(1.0, max(0.0, 0.3 + 0.9 * math.sin(2 * math.pi * DRIVE_TALK_FREQ * t + float(extra[6, 0]))))
            mouth = open_ * talk
        raise_, closed, frown = (
            level * _cycle_pulse(t - cycle_delay, DRIVE_CYCLE, *shape)
            for shape, level in (DRIVE_BROW_RAISE, DRIVE_EYES_CLOSED, DRIVE_FROWN)
        )
        if spec.blink:
            blink = _blinks(t, spec.seed, 1, DRIVE_BLINK_FIRST, DRIVE_BLINK_EVERY)
            eyes = max(blink, closed, DRIVE_FROWN_SQUINT * frown / DRIVE_FROWN[1])
        if spec.brows:
            brows = raise_ + frown
    return Motion(
        dx=dx, dy=dy, scale=scale, angle=angle, mouth=_clip(mouth, 0.0, 1.0),
        eyes=_clip(eyes, 0.0, 1.0), brows=_clip(brows, -1.0, 1.0),
    )


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
        motion: Head pose and expression of this frame.

    Returns:
        RGB uint8 array of shape (spec.height, spec.width, 3). The same
        arguments always give the same bytes.
    """
    assets = _assets()
    image = assets.image  # (512, 512, 3) RGB uint8, read-only
    m = _clip(float(motion.mouth), 0.0, 1.0)
    e = _clip(float(motion.eyes), 0.0, 1.0)
    b = _clip(float(motion.brows), -1.0, 1.0)
    if m > 0 or e > 0 or b != 0:
        image = image.copy()
    if e > 0 or b != 0:
        x0, y0, x1, y1 = UPPER_BOX
        image[y0:y1, x0:x1] = _warp_upper(assets, e, b)
    if m > 0:
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
    """Command line: ``python -m f2f_cam.synth OUT.mp4 [--seconds S] [--fps F] [--size WxH] [--audio] [--seed K]
    [--shift PX] [--style train|drive] [--no-blink] [--no-brows]``."""
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
    parser.add_argument("--zoom", type=float, default=SynthSpec.zoom,
                        help="largest relative head scale change (default %(default)s)")
    parser.add_argument("--rotate", type=float, default=SynthSpec.rotate,
                        help="largest head rotation in degrees (default %(default)s)")
    parser.add_argument("--style", choices=STYLES, default=SynthSpec.style,
                        help="motion and expressions: 'train' for a persona's training clip, 'drive' for a clip "
                             "that moves unlike it, to drive a persona with (default %(default)s)")
    parser.add_argument("--no-blink", dest="blink", action="store_false", help="keep the eyes open")
    parser.add_argument("--no-brows", dest="brows", action="store_false", help="keep the eyebrows still")
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
                         blink=args.blink, brows=args.brows)
        motions = write_video(args.out, spec)
    except (ValueError, OSError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(motions)} frames, {spec.width}x{spec.height}, {spec.fps:g} fps, "
          f"{spec.style} style{', audio' if spec.audio else ''})")
    return 0


# --- helpers -----------------------------------------------------------------


@dataclass(frozen=True)
class _Assets:
    """What every frame reuses: the portrait and the warp fields (all read-only)."""

    image: np.ndarray  # (512, 512, 3) RGB uint8, the astronaut
    grid_x: np.ndarray  # (h, w) float32, absolute x of each MOUTH_BOX pixel
    grid_y: np.ndarray  # (h, w) float32, absolute y
    field: np.ndarray  # (h, w) float32, D: backward y displacement at full opening, px
    gap_top: np.ndarray  # (1, w) float32, -(rise of the upper lip edge at m = 1), relative to lip_line
    gap_bottom: np.ndarray  # (1, w) float32, drop of the lower lip edge at m = 1, relative to lip_line
    lip_line: np.ndarray  # (1, w) float32, y of the line where the lips part, box-relative
    upper: _UpperAssets  # the brow and eye warps on UPPER_BOX


@dataclass(frozen=True)
class _UpperAssets:
    """The brow and eye warps on UPPER_BOX; (1, w) arrays are per column, y absolute."""

    grid_x: np.ndarray  # (h, w) float32, absolute x of each UPPER_BOX pixel
    grid_y: np.ndarray  # (h, w) float32, absolute y
    brow_up: np.ndarray  # (h, w) float32, backward y displacement at brows = +1, px (>= 0)
    brow_down: np.ndarray  # (h, w) float32, backward y displacement at brows = -1, px (<= 0)
    lid_upper: np.ndarray  # (1, w) float32, y of the upper lid margin (where there is an eye)
    lid_lower: np.ndarray  # (1, w) float32, y of the lower lid margin
    lid_gap: np.ndarray  # (1, w) float32, lower minus upper lid, 0 outside the eyes
    skin: np.ndarray  # (1, w, 3) float32, RGB of the eyelid skin above each eye


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
    upper = _upper_assets(image, frozen)
    image.flags.writeable = False
    return _Assets(
        image=image,
        grid_x=frozen(np.broadcast_to(xs, (h, w))),
        grid_y=frozen(np.broadcast_to(ys, (h, w))),
        field=frozen(field),
        gap_top=frozen(-UPPER_LIFT * lips),
        gap_bottom=frozen(JAW_DROP * lips),
        lip_line=frozen(line - y0),
        upper=upper,
    )


def _upper_assets(image: np.ndarray, frozen) -> _UpperAssets:
    """Precompute the brow field and the eyelid lines on UPPER_BOX."""
    x0, y0, x1, y1 = UPPER_BOX
    xs = np.arange(x0, x1, dtype=np.float64)[None, :]  # (1, w)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]  # (h, 1)
    h, w = y1 - y0, x1 - x0

    # Eyelid margins: per eye, a parabola through both corners and the
    # mid-lid landmark, for the upper and for the lower lid.
    lid_upper = np.full((1, w), np.nan)
    lid_lower = np.full((1, w), np.nan)
    skin = np.zeros((1, w, 3))
    for outer, upper_mid, lower_mid, inner in (
        (RIGHT_EYE_OUTER, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_INNER),
        (LEFT_EYE_OUTER, LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_EYE_INNER),
    ):
        lo_x, hi_x = sorted((outer[0], inner[0]))
        inside = (xs >= lo_x) & (xs <= hi_x)
        for mid, out in ((upper_mid, lid_upper), (lower_mid, lid_lower)):
            px, py = zip(outer, mid, inner)
            out[inside] = np.polyval(np.polyfit(px, py, 2), xs[inside])
        # The eyelid skin: the mean colour of a strip 3 to 6 px above the
        # upper lid over the middle half of the eye (below the brow).
        cx, top = upper_mid[0], upper_mid[1]
        half = (hi_x - lo_x) / 4
        patch = image[int(round(top - 6)):int(round(top - 3)), int(round(cx - half)):int(round(cx + half)) + 1]
        skin[0, inside[0]] = patch.reshape(-1, 3).mean(axis=0)
    gap = np.where(np.isnan(lid_upper), 0.0, np.maximum(lid_lower - lid_upper, 0.0))

    # Where the falloff under the brows ends: just above the upper lids
    # (BROW_STOP, by direction); between the eyes straight from inner corner
    # to inner corner; beyond the outer corners it drops away (the temples
    # may move), never below the box.
    corners = sorted((RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER))
    cx_, cy_ = zip(*corners)
    lids = np.interp(xs, cx_, cy_)
    lids = np.where(np.isnan(lid_upper), lids, lid_upper)
    lids = lids + 0.8 * np.clip(cx_[0] - xs, 0, None) + 0.8 * np.clip(xs - cx_[-1], 0, None)

    # Brows: a source pixel moves up by b * lift(x) * weight(x, y): the band
    # around the brows' upper edge moves rigidly, the forehead above and the
    # skin down to the stop line follow with a smooth falloff.
    bx, by = zip(*sorted(RIGHT_BROW + LEFT_BROW))
    brow = np.interp(xs, bx, by)  # (1, w)
    band_top, band_bottom = brow - BROW_BAND[0], brow + BROW_BAND[1]
    wx = 1 - _smoothstep(np.maximum(bx[0] - xs, xs - bx[-1]) / BROW_SIDE_FALLOFF)

    def falloff(stop_above_lid: float) -> np.ndarray:  # (1, w) px of falloff under the brows
        return np.maximum(np.minimum(lids - stop_above_lid, y1 - 3.0) - band_bottom, 1.0)

    def weight(y: np.ndarray, below: np.ndarray) -> np.ndarray:  # (n, 1) absolute y -> (n, w)
        above = 1 - _smoothstep((band_top - y) / FOREHEAD_FALLOFF)
        under = 1 - _smoothstep((y - band_bottom) / below)
        return wx * np.where(y < band_top, above, np.where(y <= band_bottom, 1.0, under))

    # Raising stretches the skin under the brows and may lift them the full
    # BROW_LIFT. Lowering squeezes it: a smoothstep over L px has slope up to
    # 1.5 / L, so the lift is capped where the brow is close to the eye to
    # keep the map one-to-one. The cap varies along the brow (the gap to the
    # eye does): take the least within BROW_SIDE_FALLOFF and smooth it, so
    # the brows keep their shape.
    below_up, below_down = falloff(BROW_STOP[0]), falloff(BROW_STOP[1])
    cap = np.minimum(BROW_LIFT, BROW_MAX_SLOPE * below_down / 1.5)[0]  # (w,)
    r = int(BROW_SIDE_FALLOFF)
    padded = np.pad(cap, r, mode="edge")
    cap = np.min([padded[k:k + w] for k in range(2 * r + 1)], axis=0)
    kernel = np.hanning(2 * r + 3)[1:-1]
    cap = np.convolve(np.pad(cap, r, mode="edge"), kernel / kernel.sum(), mode="valid")[None, :]

    # Backward fields at b = +1 and b = -1, by inverting the forward map of
    # each column on a fine grid (it is monotonic). A frame at b uses |b|
    # times the one of b's sign: exact at 0 and +/-1, close between.
    fine = np.arange(y0 - 8.0, y1 + 8.0, 0.125)[:, None]  # (n, 1)
    moved_up = fine - BROW_LIFT * weight(fine, below_up)  # where each fine source row lands, (n, w)
    moved_down = fine + cap * weight(fine, below_down)
    brow_up = np.empty((h, w))
    brow_down = np.empty((h, w))
    for j in range(w):
        brow_up[:, j] = np.interp(ys[:, 0], moved_up[:, j], fine[:, 0]) - ys[:, 0]
        brow_down[:, j] = np.interp(ys[:, 0], moved_down[:, j], fine[:, 0]) - ys[:, 0]

    return _UpperAssets(
        grid_x=frozen(np.broadcast_to(xs, (h, w))),
        grid_y=frozen(np.broadcast_to(ys, (h, w))),
        brow_up=frozen(brow_up),
        brow_down=frozen(brow_down),
        lid_upper=frozen(np.nan_to_num(lid_upper, nan=0.0)),
        lid_lower=frozen(np.nan_to_num(lid_lower, nan=0.0)),
        lid_gap=frozen(gap),
        skin=frozen(skin),
    )


def _warp_upper(assets: _Assets, e: float, b: float) -> np.ndarray:
    """Return UPPER_BOX of the portrait with brows at ``b`` and eyes closed by ``e``."""
    up = assets.upper
    # Backward maps, output -> source, composed: first the brows, then the eyes.
    if b:
        y = up.grid_y + np.float32(abs(b)) * (up.brow_up if b > 0 else up.brow_down)
    else:
        y = up.grid_y
    if e > 0:
        # Per column: the upper lid margin comes down by `drop`, the lower one
        # rises by `rise`; the eyeball between them stays where it is.
        drop = np.float32(e * EYE_MEET) * up.lid_gap  # (1, w)
        rise = np.float32(e * (1 - EYE_MEET)) * up.lid_gap
        lid_u = up.lid_upper + drop  # where the upper lid margin is now
        lid_l = up.lid_lower - rise
        top = up.lid_upper - np.float32(UPPER_LID_SKIN)
        bottom = up.lid_lower + np.float32(LOWER_LID_SKIN)
        # The skin band [top, lid_u] shows [top, lid_upper]: both ends keep
        # their texture (slope 1), the middle stretches.
        in_upper = (y >= top) & (y <= lid_u)
        stretched = y - drop * _smoothstep((y - top) / (lid_u - top))
        in_lower = (y > lid_u) & (y >= lid_l) & (y <= bottom)
        raised = y + rise * (1 - _smoothstep((y - lid_l) / (bottom - lid_l)))
        y = np.where(in_upper, stretched, np.where(in_lower, raised, y))
    roi = cv2.remap(assets.image, up.grid_x, np.ascontiguousarray(y, dtype=np.float32),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if e > 0:
        roi = _tint_lids(roi, up, e)
    return roi


def _tint_lids(roi: np.ndarray, up: _UpperAssets, e: float) -> np.ndarray:
    """Blend the covered eye opening (between the photo's upper lid margin
    and the lowered one) towards the eyelid skin colour, more the more closed."""
    y0 = UPPER_BOX[1]
    h = roi.shape[0]
    y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]  # (h, 1) absolute
    drop = np.float32(e * EYE_MEET) * up.lid_gap  # (1, w)
    lid_u = up.lid_upper + drop
    # The covered band, less a 1.5 px lash line kept dark at its bottom,
    # with soft (1 px) edges; nothing where there is no eye.
    start, end = up.lid_upper - 1.0, lid_u - 1.5
    alpha = np.clip(np.minimum(y - start, end - y), 0.0, 1.0) * np.float32(EYELID_TINT * e)
    alpha = np.where(up.lid_gap > 0, alpha, 0.0)[..., None]  # (h, w, 1)
    out = roi.astype(np.float32) * (1 - alpha) + up.skin * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


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


def _clip(v: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, v))


def _pulse(t: float, rise: float, hold: float, fall: float) -> float:
    """0 before t = 0, smoothly up to 1 over ``rise``, 1 for ``hold``, smoothly down over ``fall``."""
    if t <= 0.0 or t >= rise + hold + fall:
        return 0.0
    if t < rise:
        u = t / rise
    elif t <= rise + hold:
        return 1.0
    else:
        u = 1.0 - (t - rise - hold) / fall
    return u * u * (3.0 - 2.0 * u)


def _cycle_pulse(t: float, period: float, start: float, rise: float, hold: float, fall: float) -> float:
    """A pulse at ``start + k * period`` for k = 0, 1, ... (none before t = start)."""
    if t < 0.0:
        return 0.0
    k = math.floor(t / period)
    # A pulse may run past the end of its period: look at the one before too.
    return max(_pulse(t - kk * period - start, rise, hold, fall) for kk in (k - 1, k) if kk >= 0)


def _blinks(t: float, seed: int, stream: int, first: float, every: float) -> float:
    """Eye closing of blinks at ``first + k * every`` s, each moved by up to
    +/- BLINK_JITTER / 2 (picked by the seed), k = 0, 1, ...; 0 between."""
    k0 = math.floor((t - first) / every)
    closed = 0.0
    for k in (k0 - 1, k0, k0 + 1):
        if k < 0:
            continue
        jitter = float(np.random.default_rng([seed, 7 + stream, k]).uniform(-0.5, 0.5)) * BLINK_JITTER
        closed = max(closed, _pulse(t - (first + k * every + jitter), BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN))
    return closed


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
