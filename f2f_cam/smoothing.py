"""Landmark smoothing: the One Euro filter (Casiez, Roussel, Vogel, CHI 2012).

Little smoothing when the face moves fast (no lag), strong smoothing when it is still
(no jitter): the cut-off frequency rises with the speed of the signal.
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
    """

    def __init__(self, min_cutoff: float = 1.5, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
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
        # One cut-off for the whole face, from its mean speed (px/s), so that all
        # points lag by the same amount and the face shape is not distorted.
        speed = float(np.abs(self._dx).mean())
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()
