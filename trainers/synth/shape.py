"""Another face shape for the astronaut: a wider or narrower face, eyes further apart or
closer, a longer or shorter nose.

A driver whose face shape differs from the persona's is what ``f2f-cam bench --quality``
needs to tell whether the persona keeps its own face (``identity_keep``). The warp is
smooth, in astronaut-image pixels, applied to the portrait after the expression and
before the framing, and it moves exactly what the face-shape ratios measure (eye
spacing, face width, nose length, eye width, mouth width, each over face height):

* ``width``: the face (its landmark box) stretched sideways about its centre by
  ``1 + width``, the stretch fading to nothing over ``SIDE_FALLOFF`` px beyond the
  face and ``HEIGHT_FALLOFF`` px above and below it (hair and neck barely move);
  the face height does not change;
* ``eyes``: each eye, with its brow, moved outwards rigidly so the eye spacing
  (centre to centre) grows by ``eyes`` times itself, fading out by ``EYE_RADIUS`` px;
* ``nose``: the nose tip moved down by ``nose`` times the nose length (eye line to
  tip), the midface stretching above it and the part below easing back to the still
  chin, so the face height stays.

Forehead (landmark 10) and chin (152) do not move, so each ratio changes by about its
own factor. ``FaceShape()`` changes nothing (and the frames stay byte-identical).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from trainers.synth.astronaut import (
    CHIN, FACE_BOX, FACE_CENTER, LEFT_EYE_INNER, LEFT_EYE_OUTER, NOSE_TIP, RIGHT_EYE_INNER, RIGHT_EYE_OUTER,
    _smoothstep,
)

LIMIT = 0.25  # largest |change| of each ratio: beyond it the warp folds the photo
SIDE_FALLOFF = 30.0  # px beyond the face's sides over which the widening fades
HEIGHT_FALLOFF = 30.0  # px above and below the face over which the widening fades
EYE_RADIUS = 22.0  # px: each eye (and its brow) moves rigidly near its centre, nothing beyond
# Eye centres (the corners' midpoints) and the eye line, astronaut px.
RIGHT_EYE = tuple((a + b) / 2 for a, b in zip(RIGHT_EYE_OUTER, RIGHT_EYE_INNER))
LEFT_EYE = tuple((a + b) / 2 for a, b in zip(LEFT_EYE_OUTER, LEFT_EYE_INNER))
EYE_LINE = (RIGHT_EYE[1] + LEFT_EYE[1]) / 2


@dataclass(frozen=True)
class FaceShape:
    """Relative changes of the face's proportions (0: the astronaut's own).

    Attributes:
        width: Face width, e.g. 0.15 is 15 % wider, -0.1 10 % narrower.
        eyes: Eye spacing (centre to centre), on top of what ``width`` does.
        nose: Nose length (eye line to nose tip).

    Raises:
        ValueError: If a value is outside [-LIMIT, LIMIT].
    """

    width: float = 0.0
    eyes: float = 0.0
    nose: float = 0.0

    def __post_init__(self) -> None:
        for name in ("width", "eyes", "nose"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -LIMIT <= v <= LIMIT:
                raise ValueError(f"face shape {name} must be a number from {-LIMIT} to {LIMIT}, got {v!r}")

    @property
    def neutral(self) -> bool:
        """Whether this is the astronaut's own shape (the warp is skipped)."""
        return self.width == 0 and self.eyes == 0 and self.nose == 0


def reshape(image: np.ndarray, shape: FaceShape) -> np.ndarray:
    """The (512, 512, 3) RGB uint8 portrait with ``shape``'s proportions; ``image`` itself
    when the shape is neutral."""
    if shape.neutral:
        return image
    map_x, map_y = _backward_map(shape)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def displacement(shape: FaceShape, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward displacement (dx, dy), px, of the astronaut-image points (x, y)."""
    cx, _ = FACE_CENTER
    half_w = (FACE_BOX[2] - FACE_BOX[0]) / 2
    outside_y = np.maximum(FACE_BOX[1] - y, y - FACE_BOX[3])  # px above / below the face, <= 0 inside
    along_face = 1 - _smoothstep(outside_y / HEIGHT_FALLOFF)
    across_face = 1 - _smoothstep((np.abs(x - cx) - half_w) / SIDE_FALLOFF)
    # Width: a stretch about the centre line, constant beyond the sides then fading.
    u = x - cx
    side = np.where(np.abs(u) <= half_w, u, np.sign(u) * half_w * across_face)
    dx = shape.width * side * along_face
    # Eyes: each one moved outwards (the subject's right eye is on the image's left).
    spacing = LEFT_EYE[0] - RIGHT_EYE[0]
    for (ex, ey), sign in ((RIGHT_EYE, -1.0), (LEFT_EYE, 1.0)):
        near = 1 - _smoothstep(np.hypot(x - ex, y - ey) / EYE_RADIUS)
        dx = dx + sign * shape.eyes * spacing / 2 * near
    # Nose: the tip moved down, the stretch easing in from the eye line and out to the chin.
    length = NOSE_TIP[1] - EYE_LINE
    rise = _smoothstep((y - EYE_LINE) / length)
    fall = 1 - _smoothstep((y - NOSE_TIP[1]) / (CHIN[1] - NOSE_TIP[1]))
    dy = shape.nose * length * np.where(y <= NOSE_TIP[1], rise, fall) * across_face
    return dx, dy


@functools.cache
def _backward_map(shape: FaceShape) -> tuple[np.ndarray, np.ndarray]:
    """(map_x, map_y), each (512, 512) float32: the source pixel of each output pixel.

    Inverts the forward displacement by fixed-point iteration (p = q - d(p)), which
    converges because each field changes by much less than a pixel per pixel.
    Cached: a pure function of the (frozen) shape.
    """
    qy, qx = np.mgrid[0:512, 0:512].astype(np.float64)
    px, py = qx, qy
    for _ in range(6):
        dx, dy = displacement(shape, px, py)
        px, py = qx - dx, qy - dy
    map_x, map_y = px.astype(np.float32), py.astype(np.float32)
    map_x.flags.writeable = map_y.flags.writeable = False
    return map_x, map_y
