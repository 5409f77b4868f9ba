"""Synthetic talking-head clips of ``skimage.data.astronaut()``, with per-frame ground truth.

No face dataset can be downloaded where this project is built and tested, so
tests and the demo persona's training clip animate the public-domain NASA
portrait that ships inside scikit-image. Every frame comes with its ground truth
(:class:`Motion`): the head moves by a known affine transform
(:func:`frame_transform`), and the mouth opens, the eyes close and the eyebrows
rise or lower by known amounts, so trackers can be checked against the truth.

One module per job:

* :mod:`~trainers.synth.astronaut`: where the face's features are in the photo,
  and the expression warps (mouth, eyelids, brows) in photo pixels;
* :mod:`~trainers.synth.shape`: :class:`FaceShape`, another face shape (wider
  face, eyes further apart, longer nose) for a driver unlike the persona;
* :mod:`~trainers.synth.frame`: :class:`SynthSpec` (the clip), :class:`Motion`
  (one frame's truth), the framing affine and :func:`render_frame`;
* :mod:`~trainers.synth.styles`: :func:`motion_at`, the "train" and "drive"
  motion scripts;
* :mod:`~trainers.synth.clip`: :func:`write_video` (the .mp4, optionally with a
  quiet tone) and the command line.

Run ``python -m trainers.synth OUT.mp4 [--style drive]`` to write a clip. Needs
scikit-image (``pip install 'f2f-cam[synth]'``); no torch, no mediapipe.
"""

from trainers.synth.clip import main, write_video
from trainers.synth.frame import STYLES, Motion, SynthSpec, base_transform, frame_transform, render_frame
from trainers.synth.shape import FaceShape
from trainers.synth.styles import motion_at

__all__ = [
    "STYLES", "FaceShape", "Motion", "SynthSpec", "base_transform", "frame_transform", "motion_at", "render_frame",
    "write_video", "main",
]
