"""Landmark smoothing: the One Euro filter (Casiez, Roussel, Vogel, CHI 2012).

Little smoothing when the face moves fast (no lag), strong smoothing when it is still
(no jitter): the cut-off frequency rises with the speed of the signal.

``Smoother`` filters landmarks (one cut-off for the whole face, so that its shape is
kept); ``ExpressionSmoother`` filters what ``expression`` retargeting runs on: each
blendshape score on its own, and the head turn.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class Smoother:
    """One Euro filter over a whole landmark array, e.g. (478, 3) pixels.

    min_cutoff (Hz): smoothing at rest; lower = smoother, laggier.
    beta: how fast the cut-off grows with speed; higher = less lag when moving.
    per_element: each element gets the cut-off of its own speed (the paper's filter, one
    per signal) instead of one from the whole array's mean speed.
    """

    def __init__(self, min_cutoff: float = 1.5, beta: float = 0.05, d_cutoff: float = 1.0,
                 per_element: bool = False):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.per_element = per_element
        self.reset()

    def reset(self) -> None:
        """Forget the past (after the face was lost, or a persona switch)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        """points: array of any shape; t: time in seconds. Returns the filtered array."""
        x = np.asarray(points, np.float32)
        t = float(t)  # a Fraction (a video's frame rate) would make every step object arithmetic, 25x slower
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        if self.per_element:
            tau = 1.0 / (2 * math.pi * (self.min_cutoff + self.beta * np.abs(self._dx)))
            a = 1.0 / (1.0 + tau / dt)
        else:
            # One cut-off for the whole face, from its mean speed (px/s), so that all
            # points lag by the same amount and the face shape is not distorted.
            a = _alpha(self.min_cutoff + self.beta * float(np.abs(self._dx).mean()), dt)
        self._x = (a * x + (1 - a) * self._x).astype(np.float32, copy=False)
        self._t = t
        return self._x.copy()


# ``expression`` mode's filters, picked on ``f2f-cam bench --quality`` (d6 driven by d13,
# d10 and d12; README, Quality): (min_cutoff Hz, beta per unit/s). A score's cut-off
# rises fast with its speed (a blink, 0 -> 0.8 in 0.1 s, passes at ~38 Hz); the head
# turn (degrees) is smoothed about as much as the landmarks are.
SCORE_FILTER = (6.0, 4.0)
TURN_FILTER = (1.0, 0.05)


class ExpressionSmoother:
    """One Euro filters on what ``expression`` retargeting is driven by: each of the
    blendshape scores on its own (a blink moves two of 52 scores: a cut-off from all of
    them, or from the predicted shape's mean speed, held it back and flattened it), and
    the head turn (yaw, pitch, roll) together. ``(scores, pose, t) -> (scores, pose)``;
    only the first three pose numbers are filtered (``expression.POSE_NAMES``)."""

    def __init__(self, scores: tuple[float, float] = SCORE_FILTER, turn: tuple[float, float] = TURN_FILTER):
        self.scores = Smoother(*scores, per_element=True)
        self.turn = Smoother(*turn)

    def reset(self) -> None:
        self.scores.reset()
        self.turn.reset()

    def __call__(self, scores: np.ndarray, pose: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        pose = np.array(pose, np.float64)
        pose[:3] = self.turn(pose[:3], t)
        return self.scores(scores, t).astype(np.float64), pose
