"""The landmark sketch: 478 face points -> the pix2pix "A" image.

``render`` is the ONE renderer: the dataset builder (``trainers``) and the runtime
both import it, so training and runtime can never draw different sketches. Any change
to what it draws must bump ``SKETCH_VERSION``; personas record the version they were
trained with and refuse to load with another one.
"""

from __future__ import annotations

import cv2
import numpy as np

SKETCH_VERSION = 1

# MediaPipe Face Mesh index chains, copied from mediapipe's FaceLandmarksConnections
# (1.2.3) as ordered polylines so that the sketch never changes with mediapipe.
FACE_OVAL = [[10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
              400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
              54, 103, 67, 109, 10]]
BROWS = [[276, 283, 282, 295, 285], [300, 293, 334, 296, 336],
         [46, 53, 52, 65, 55], [70, 63, 105, 66, 107]]
EYES = [[263, 249, 390, 373, 374, 380, 381, 382, 362], [263, 466, 388, 387, 386, 385, 384, 398, 362],
        [33, 7, 163, 144, 145, 153, 154, 155, 133], [33, 246, 161, 160, 159, 158, 157, 173, 133]]
NOSE = [[168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 326, 327, 294, 278, 344, 440, 275, 4, 45, 220,
         115, 48, 64, 98, 97, 2]]
OUTER_LIPS = [[61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291],
              [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]]
INNER_LIPS = [[78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308],
              [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]]
# Iris centre, then four points on its rim (one iris each).
IRISES = [[468, 469, 470, 471, 472], [473, 474, 475, 476, 477]]

# Face parts in drawing order, each in its own colour (RGB) on black, so the generator
# can tell a lip line from an eye line.
PARTS = (
    ("oval", FACE_OVAL, (255, 255, 255)),
    ("brows", BROWS, (255, 200, 0)),
    ("eyes", EYES, (0, 255, 0)),
    ("nose", NOSE, (255, 0, 255)),
    ("outer_lips", OUTER_LIPS, (255, 0, 0)),
    ("inner_lips", INNER_LIPS, (0, 128, 255)),
)
IRIS_COLOUR = (0, 255, 255)

_SHIFT = 4  # fractional bits for cv2 drawing: 1/16 px precision, still exact integers


def line_width(size: int) -> int:
    """Line thickness in pixels for a sketch ``size`` pixels tall (2 px at 256)."""
    return max(1, int(round(size / 128)))


def render(points: np.ndarray, size: int | tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Draw the landmark sketch.

    points: (478, 2+) pixel coordinates in the sketch's own frame (x right, y down).
    size:   S for an (S, S) sketch, or (width, height).
    out:    optional (H, W, 3) uint8 buffer to draw into (it is cleared first).
    Returns RGB uint8 (H, W, 3): coloured face-part lines on black.
    """
    w, h = (size, size) if isinstance(size, (int, np.integer)) else size
    if out is None:
        out = np.zeros((h, w, 3), np.uint8)
    else:
        out[:] = 0
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    if pts.shape[0] < 478 or not np.isfinite(pts).all():
        raise ValueError(f"sketch.render needs 478 finite points, got shape {pts.shape}")
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)  # (478, 2) fixed-point
    thickness = line_width(min(w, h))
    for _, chains, colour in PARTS:
        polylines = [fixed[chain].reshape(-1, 1, 2) for chain in chains]
        cv2.polylines(out, polylines, isClosed=False, color=colour, thickness=thickness,
                      lineType=cv2.LINE_8, shift=_SHIFT)
    for iris in IRISES:
        centre = pts[iris[0]]
        radius = float(np.linalg.norm(pts[iris[1:]] - centre, axis=1).mean())
        cv2.circle(out, tuple(int(v) for v in np.round(centre * (1 << _SHIFT))),
                   int(round(radius * (1 << _SHIFT))), IRIS_COLOUR, -1, cv2.LINE_8, _SHIFT)
    return out

