"""The compositor: arranges camera, sketch and generated face into the output frame.

The layouts and what each shows are the registry ``f2f_cam.registry.LAYOUTS``.
"""

from __future__ import annotations

import cv2
import numpy as np

from f2f_cam.registry import LAYOUTS, Layout

LOST_TEXT = "camera lost - retrying"


def fit_into(image: np.ndarray, out: np.ndarray) -> None:
    """Scale ``image`` to fit ``out`` (keeping its aspect ratio) and centre it on black."""
    oh, ow = out.shape[:2]
    ih, iw = image.shape[:2]
    scale = min(ow / iw, oh / ih)
    w, h = max(1, round(iw * scale)), max(1, round(ih * scale))
    x, y = (ow - w) // 2, (oh - h) // 2
    # Black bars only where the image does not cover (one 1280x720 frame written once).
    out[:y] = 0
    out[y + h:] = 0
    out[y:y + h, :x] = 0
    out[y:y + h, x + w:] = 0
    if (w, h) == (iw, ih):
        out[y:y + h, x:x + w] = image
    else:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        # Straight into the frame (OpenCV writes a strided view): no 720x720 copy.
        cv2.resize(image, (w, h), dst=out[y:y + h, x:x + w], interpolation=interp)


def side_by_side_size(camera_size: tuple[int, int], height: int | None = None) -> tuple[int, int]:
    """Natural (width, height) of camera | sketch | face at the camera's height."""
    cw, ch = camera_size
    h = height or ch
    return round(cw * h / ch) + 2 * h, h


class Compositor:
    """(camera, sketch, face) -> RGB uint8 (H, W, 3) for the chosen layout.

    camera: (h, w, 3); sketch and face: (S, S, 3), or None when there is nothing to
    show yet (then that panel stays black).
    """

    def __init__(self, layout: str, out_size: tuple[int, int]):
        self.spec: Layout = LAYOUTS[layout]
        self.layout = self.spec.name
        self.width, self.height = out_size
        self._out = np.zeros((self.height, self.width, 3), np.uint8)

    def __call__(self, camera: np.ndarray, sketch: np.ndarray | None, face: np.ndarray | None) -> np.ndarray:
        # A fresh buffer each frame: sinks may hold on to what they were given.
        if self.layout == "side-by-side":
            out = np.zeros_like(self._out)
            self._side_by_side(out, camera, sketch, face)
            return out
        image = {"persona": face, "landmarks": sketch, "camera": camera}[self.layout]
        if image is None:
            return np.zeros_like(self._out)
        out = np.empty_like(self._out)
        fit_into(image, out)  # writes every pixel
        return out

    def _side_by_side(self, out, camera, sketch, face) -> None:
        ch, cw = camera.shape[:2]
        aspect = cw / ch
        # Panel height: as tall as the frame allows with all three panels in a row.
        ph = int(min(self.height, self.width / (aspect + 2)))
        widths = [int(round(aspect * ph)), ph, ph]
        x = (self.width - sum(widths)) // 2
        y = (self.height - ph) // 2
        for image, w in zip((camera, sketch, face), widths):
            if image is not None and w > 0 and ph > 0:
                fit_into(image, out[y:y + ph, x:x + w])
            x += w


def lost_frame(last: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """The last output darkened, with a short note: (H, W, 3) uint8 (the camera is gone)."""
    w, h = size
    out = (last // 4) if last is not None else np.zeros((h, w, 3), np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, w / 900)
    thick = max(1, round(scale * 2))
    (tw, th), _ = cv2.getTextSize(LOST_TEXT, font, scale, thick)
    org = ((w - tw) // 2, (h + th) // 2)
    cv2.putText(out, LOST_TEXT, org, font, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
    cv2.putText(out, LOST_TEXT, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
