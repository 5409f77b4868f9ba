"""Retargeting: where on the persona's image the user's landmarks are drawn.

raw      the old behaviour: points drawn where the camera saw them (through the
         persona's training crop), so it only works at the training distance;
align    a similarity transform (rotation, scale, shift) of the user's stable points
         onto the persona's canonical landmarks: any position or distance works;
transfer persona neutral + (user now - user neutral), both aligned: the persona
         keeps its own face shape and takes the user's expression.
"""

from __future__ import annotations

import logging

import numpy as np

from f2f_cam.geometry import STABLE_POINTS, apply_affine, fit_similarity
from f2f_cam.persona import Persona
from f2f_cam.registry import RETARGET_MODES

log = logging.getLogger(__name__)

class Retargeter:
    """(478, 2+) camera-frame points -> (478, 2) persona image points."""

    def __init__(self, persona: Persona, mode: str = "align"):
        self.persona = persona
        self.mode = RETARGET_MODES.check(mode)
        self._stable = np.array(STABLE_POINTS)
        self._user_neutral: np.ndarray | None = None  # aligned user neutral, persona px

    def align(self, points: np.ndarray) -> np.ndarray:
        """Similarity-align the points onto the persona's canonical landmarks."""
        m = fit_similarity(points[self._stable, :2], self.persona.canonical[self._stable])
        return apply_affine(m, points)

    def calibrate(self, points: np.ndarray) -> None:
        """Take these camera-frame points as the user's neutral face."""
        self._user_neutral = self.align(points)

    @property
    def calibrated(self) -> bool:
        return self._user_neutral is not None

    def __call__(self, points: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        if self.mode == "raw":
            return self._raw(points, frame_size)
        aligned = self.align(points)
        if self.mode == "align":
            return aligned
        if self._user_neutral is None:
            # Nothing calibrated yet: the first face seen is the neutral one.
            log.info("transfer: no neutral face calibrated, using the first face seen")
            self._user_neutral = aligned
        return (self.persona.neutral + (aligned - self._user_neutral)).astype(np.float32)

    def _raw(self, points: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        # Map the camera frame onto the training frame (same height, centred), then
        # through the training crop: where the camera saw the face is where it is drawn.
        w, h = frame_size
        crop = self.persona.crop
        s = crop.frame_height / h
        p = (np.asarray(points)[:, :2] - (w / 2, h / 2)) * s + (crop.frame_width / 2, crop.frame_height / 2)
        return crop.to_image(p, self.persona.image_size).astype(np.float32)
