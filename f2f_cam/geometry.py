"""Small 2-D geometry shared by the runtime and the dataset builder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Landmarks that barely move with expression (eye corners, nose bridge, forehead,
# temples, cheekbones): the similarity fit in ``align`` uses only these, so opening
# the mouth does not move the whole face.
STABLE_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 10, 151, 234, 454, 127, 356, 4)


@dataclass(frozen=True)
class Crop:
    """The square of the training video's frames that the persona was trained on.

    (x, y) is the top-left corner and ``size`` the side, in pixels of a frame
    ``frame_width`` x ``frame_height``; the square may reach outside the frame.
    """

    x: float
    y: float
    size: float
    frame_width: int
    frame_height: int

    def to_image(self, points: np.ndarray, image_size: int) -> np.ndarray:
        """Frame pixel coords (N, 2) -> persona image coords (N, 2)."""
        return (np.asarray(points)[:, :2] - (self.x, self.y)) * (image_size / self.size)

    def affine(self, image_size: int) -> np.ndarray:
        """2x3 matrix mapping frame pixels to persona image pixels (for cv2.warpAffine)."""
        s = image_size / self.size
        return np.array([[s, 0, -self.x * s], [0, s, -self.y * s]], np.float64)

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "size": self.size,
                "frame_width": self.frame_width, "frame_height": self.frame_height}


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking src to dst.

    src, dst: (N, 2). Returns a 2x3 matrix M with dst ~= src @ M[:, :2].T + M[:, 2]
    (Umeyama 1991, without reflection).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    fix = np.diag([1.0, d])
    rot = u @ fix @ vt
    var = (a ** 2).sum() / len(src)
    scale = (sig * np.diag(fix)).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (N, 2+) points; returns (N, 2) float32."""
    p = np.asarray(points, np.float64)[:, :2]
    return (p @ m[:, :2].T + m[:, 2]).astype(np.float32)


def square_around(points: np.ndarray, frame_w: int, frame_h: int, margin: float = 0.6) -> Crop:
    """A square crop centred on the points' bounding box, its side (1 + 2*margin)
    times the box's longer side, so hair, neck and some background are in view."""
    p = np.asarray(points)[:, :2]
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return Crop(float(cx - side / 2), float(cy - side / 2), float(side), int(frame_w), int(frame_h))
