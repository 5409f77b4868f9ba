"""Retargeting: where on the persona's image the user's face is drawn.

expression the persona's own landmarks, predicted by its expression model
         (``f2f_cam.expression``) from the user's 52 blendshape scores and head pose,
         both relative to the user's neutral face: the sketch keeps the persona's
         face shape and stays within the expressions it was trained on; its irises
         sit between its eye corners where the user's do (within the range it
         showed), so it looks where the user looks. A persona
         without a model (format 1) gets ``transfer``, and so does a face without
         scores (a detector made without ``blendshapes=True``);
raw      the old behaviour: points drawn where the camera saw them (through the
         persona's training crop), so it only works at the training distance;
align    a similarity transform (rotation, scale, shift) of the user's stable points
         onto the persona's canonical landmarks: any position or distance works;
transfer persona neutral + (user now - user neutral), both aligned: the persona
         keeps its own face shape and takes the user's expression.

Without calibration the user's neutral face is the first face seen (its aligned
points, scores and pose), as the generated clips and a user sitting down expect.
"""

from __future__ import annotations

import logging

import numpy as np

from f2f_cam.expression import gaze
from f2f_cam.geometry import STABLE_POINTS, apply_affine, fit_similarity
from f2f_cam.landmarks import Face
from f2f_cam.persona import Persona
from f2f_cam.registry import RETARGET_MODES

log = logging.getLogger(__name__)


class Retargeter:
    """A ``Face`` in a camera frame -> (478, 2) float32 persona image points.

    ``mode`` is the mode asked for, ``mode_used`` the one it runs: ``expression`` is
    ``transfer`` for a persona without an expression model.
    """

    def __init__(self, persona: Persona, mode: str = "expression"):
        self.persona = persona
        self.mode = RETARGET_MODES.check(mode)
        self.mode_used = "transfer" if mode == "expression" and persona.expression is None else mode
        self._stable = np.array(STABLE_POINTS)
        self._user_neutral: np.ndarray | None = None  # aligned user neutral, persona px
        self._neutral_scores: np.ndarray | None = None  # (52,) the user's neutral blendshapes
        self._neutral_pose: np.ndarray | None = None  # (4, 4) the user's neutral pose

    def align(self, points: np.ndarray) -> np.ndarray:
        """Similarity-align the points onto the persona's canonical landmarks."""
        m = fit_similarity(points[self._stable, :2], self.persona.canonical[self._stable])
        return apply_affine(m, points)

    def calibrate(self, face: Face) -> None:
        """Take this face as the user's neutral face (its points; its scores and pose
        too when it has them)."""
        self._user_neutral = self.align(face.points)
        if face.blendshapes is not None and face.pose is not None:
            self._neutral_scores = np.array(face.blendshapes, np.float32)
            self._neutral_pose = np.array(face.pose, np.float32)

    @property
    def calibrated(self) -> bool:
        return self._user_neutral is not None

    def __call__(self, face: Face, frame_size: tuple[int, int], smooth=None) -> np.ndarray:
        """face: the camera frame's face (points in frame px); frame_size: (w, h) px;
        smooth: ``expression`` mode's filter of the user's scores and pose (see
        ``ExpressionModel.drive``), unused by the other modes."""
        if self.mode == "raw":
            return self._raw(face.points, frame_size)
        if self.mode_used == "expression" and face.blendshapes is not None and face.pose is not None:
            return self._expression(face, smooth)
        aligned = self.align(face.points)
        if self.mode == "align":
            return aligned
        if self._user_neutral is None:
            # Nothing calibrated yet: the first face seen is the neutral one.
            log.info("%s: no neutral face calibrated, using the first face seen", self.mode_used)
            self._user_neutral = aligned
        return (self.persona.neutral + (aligned - self._user_neutral)).astype(np.float32)

    def _expression(self, face: Face, smooth=None) -> np.ndarray:
        if self._neutral_scores is None:
            log.info("expression: no neutral face calibrated, using the first face seen")
            self._neutral_scores = np.array(face.blendshapes, np.float32)
            self._neutral_pose = np.array(face.pose, np.float32)
        return self.persona.expression.drive(face.blendshapes, face.pose, self._neutral_scores, self._neutral_pose,
                                             smooth, user_gaze=gaze(face.points))

    def _raw(self, points: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        # Map the camera frame onto the training frame (same height, centred), then
        # through the training crop: where the camera saw the face is where it is drawn.
        w, h = frame_size
        crop = self.persona.crop
        s = crop.frame_height / h
        p = (np.asarray(points)[:, :2] - (w / 2, h / 2)) * s + (crop.frame_width / 2, crop.frame_height / 2)
        return crop.to_image(p, self.persona.image_size).astype(np.float32)
