"""One frame of a synthetic clip: what to make, its ground truth, and how it is framed.

:class:`SynthSpec` is the clip (size, rate, length, motion limits, style),
:class:`Motion` one frame's truth (head pose and expression). A frame is the
astronaut with that expression (:func:`trainers.synth.astronaut.expression`),
moved by ``cv2.warpAffine`` with :func:`frame_transform` into the output frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from trainers.synth.astronaut import BROW_LIFT, FACE_BOX, FACE_CENTER, FACE_HEIGHT, JAW_DROP, expression
from trainers.synth.shape import FaceShape, reshape

# At face_scale 1 the face (FACE_HEIGHT) fills this fraction of the frame height.
FACE_FRACTION = 0.45

STYLES = ("train", "drive")


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
        shape: The face's proportions (:class:`FaceShape`); the default is the
            astronaut's own, a changed one makes a driver with a face shape
            unlike the persona's.

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
    shape: FaceShape = FaceShape()  # the face's proportions; the default is the astronaut's own

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"frame size must be positive even numbers, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.face_scale > 0:
            raise ValueError(f"face_scale must be positive, got {self.face_scale}")
        if not isinstance(self.shape, FaceShape):
            raise ValueError(f"shape must be a FaceShape, got {self.shape!r}")
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
        half_w = max(cx - FACE_BOX[0], FACE_BOX[2] - cx) * (1 + max(self.shape.width, 0.0))
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
    m = clamp(float(motion.mouth), 0.0, 1.0)
    e = clamp(float(motion.eyes), 0.0, 1.0)
    b = clamp(float(motion.brows), -1.0, 1.0)
    return cv2.warpAffine(
        reshape(expression(m, e, b), spec.shape),
        frame_transform(spec, motion),
        (spec.width, spec.height),
        flags=cv2.INTER_LINEAR,
        # Replicating the edge never shows a second (mirrored) face, which a
        # reflecting border can when the face is small.
        borderMode=cv2.BORDER_REPLICATE,
    )


def clamp(v: float, lo: float, hi: float) -> float:
    """``v`` limited to [lo, hi]."""
    return min(hi, max(lo, v))


def _base_scale(spec: SynthSpec) -> float:
    """Astronaut pixels -> output pixels at the neutral pose."""
    return FACE_FRACTION * spec.face_scale * spec.height / FACE_HEIGHT

