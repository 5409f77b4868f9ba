"""How much roll MediaPipe reads into a face that only moved across the image, with and
without ``expression.VIEW_ROLL_GAIN`` (the numbers behind its value, README "Quality").

    python scripts/view_roll.py

A generated driver (``trainers.synth``: frontal, no roll) is shifted in x and y; each
frame's pose is read against the centred one with ``expression.head_pose``. Prints the
rms and largest roll, and the rms yaw and pitch, per gain; first on the shifts the gain
was fitted on (the bench's driver, seed 3), then on other seeds, face shapes and sizes.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from f2f_cam import expression as ex  # noqa: E402 (after the path)
from f2f_cam.landmarks import LandmarkDetector  # noqa: E402
from trainers import synth  # noqa: E402
from trainers.synth.shape import FaceShape  # noqa: E402

FIT = [(0.2, 0), (-0.2, 0), (0, 0.2), (0, -0.2), (0.2, -0.2), (-0.2, 0.2), (0.2, 0.2), (-0.2, -0.2), (0.1, 0.1),
       (-0.1, 0.05)]
CHECK = [(0.15, 0), (-0.15, 0.1), (0.15, -0.15), (-0.2, -0.1), (0.05, 0.2)]


def poses(det, spec, shifts) -> tuple[np.ndarray, list]:
    def frames(dx, dy):
        return [det(synth.render_frame(spec, dataclasses.replace(synth.motion_at(spec, j), dx=dx * spec.width,
                                                                 dy=dy * spec.height, scale=1.0, angle=0.0)), 0).pose
                for j in range(4)]
    return frames(0, 0)[0], [m for d in shifts for m in frames(*d)]


def report(label: str, ref, mats, gains) -> None:
    for g in gains:
        ex.VIEW_ROLL_GAIN = g
        p = np.array([ex.head_pose(m, ref) for m in mats])
        print(f"{label} gain {g:+.2f}: roll rms {np.sqrt((p[:, 2] ** 2).mean()):.2f} max {abs(p[:, 2]).max():.2f} deg, "
              f"yaw rms {np.sqrt((p[:, 0] ** 2).mean()):.2f}, pitch rms {np.sqrt((p[:, 1] ** 2).mean()):.2f}")


def main() -> None:
    det = LandmarkDetector(mode="image", blendshapes=True)
    chosen = ex.VIEW_ROLL_GAIN
    spec = synth.SynthSpec(style="drive", seed=3, fps=15.0, seconds=4 / 15.0, face_scale=0.8)
    report("fit  (seed 3)", *poses(det, spec, FIT), [round(g, 2) for g in np.arange(-0.2, 0.21, 0.04)])
    for seed, shape, scale in ((7, FaceShape(0.12, 0.15, 0.15), 0.7), (11, FaceShape(), 1.0)):
        spec = synth.SynthSpec(style="drive", seed=seed, fps=15.0, seconds=4 / 15.0, face_scale=scale, shape=shape)
        report(f"check (seed {seed})", *poses(det, spec, CHECK), [0.0, chosen])


if __name__ == "__main__":
    main()
