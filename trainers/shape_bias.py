"""The generator's face-shape bias, measured on the persona's held-out frames and drawn
away in its expression model.

A generator does not draw exactly the face its sketch outlines: d6's 30-minute
persona drew her face 2 % wider with a 3 % longer nose than her photos show (the
landmarker's reading of its outputs for her own sketches against its reading of the
photos), which is the way a wide-faced driver differs from her: the persona then looks
a little like whoever drives it. The sketch a persona is drawn from at run time comes
from its expression model, so the correction lives there: the model's mean shape moves
the bias the other way, and every sketch it draws moves with it (no format change, no
cost per frame).

How: the persona's held-out frames are driven through the model with their own scores
and head pose (what the runtime does with the persona's own face), drawn, generated,
and read by the landmarker; the photos are read by the same landmarker at the same
size. Both readings are aligned (stable points) onto the model's mean shape; the mean
difference is the bias. The generator follows a moved sketch only part of the way, so
the correction is refined over ``ROUNDS`` (the bias measured again with the corrected
sketch, and taken off again), each step bounded.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from f2f_cam import expression
from f2f_cam.sketch import FACE_OVAL, NOSE

log = logging.getLogger(__name__)

ROUNDS = 3  # measure and correct this many times (one round moved identity_keep half as far on d6)
MAX_FRAMES = 48  # held-out frames measured per round (a round then takes ~5 s on 2 cores)
MIN_FRAMES = 8  # fewer frames with a face in both photo and output: the bias is not known, no correction
DEGREE = 2  # the correction is a polynomial warp of this degree (``smooth_field``)
OWN_POINTS = sorted({i for line in FACE_OVAL + NOSE for i in line})  # corrected point by point
MAX_SHIFT = 0.03  # no point moves more than this share of the face width (~7 px on a 241 px face)


def read_aligned(image: np.ndarray | None, detector, reference: np.ndarray) -> np.ndarray | None:
    """The landmarker's (478, 2) reading of an RGB image, aligned (stable points) onto
    ``reference``; None where there is no image or no face in it."""
    face = None if image is None else detector(image)
    return None if face is None else expression.aligned_shapes(face.points[None, :, :2], reference)[0]


def measure(model: expression.ExpressionModel, draw, frames: list[dict], photos_read: list,
            detector) -> tuple[np.ndarray | None, int]:
    """The mean aligned (478, 2) difference between the outputs' and the photos' readings
    (persona px), and over how many frames; (None, n) when fewer than ``MIN_FRAMES``.

    frames: dicts with "scores" (52,) and "pose" (6,) relative to the persona's mean pose;
    photos_read: the photos' readings, aligned; draw: (478, 2) points -> RGB uint8 image
    (the sketch of those points through the generator)."""
    ref = model.arrays["mean_shape"].astype(np.float64)
    diffs = []
    for f, photo in tqdm(list(zip(frames, photos_read)), desc="shape bias", unit="frame", leave=False,
                         disable=None):  # a bar on a terminal only: export takes ~5 s a round
        if photo is None:
            continue
        out = read_aligned(draw(model.predict(f["scores"], f["pose"])), detector, ref)
        if out is not None:
            diffs.append(out - photo)
    if len(diffs) < MIN_FRAMES:
        return None, len(diffs)
    return np.mean(diffs, axis=0), len(diffs)


def correction_step(points: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(478, 2) the next step of the correction for this measured bias: point by point on
    the face's outline and the nose (what makes a face wider or a nose longer),
    a smooth warp (``smooth_field``) on the eyes, brows and lips, whose points carry the
    expression."""
    step = smooth_field(points, bias)
    step[OWN_POINTS] = bias[OWN_POINTS]
    return -step


def smooth_field(points: np.ndarray, field: np.ndarray, degree: int = DEGREE) -> np.ndarray:
    """``field`` (478, 2) projected onto polynomials of the point positions up to
    ``degree`` (least squares): the face's overall shape (wider, a longer nose, eyes
    further apart), without the per-point noise of the landmarker's readings, which
    moved the eyelids and brows and cost expression (blink r 0.89 -> 0.83 on d6)."""
    p = np.asarray(points, np.float64)
    u = (p - p.mean(0)) / p.std(0).max()
    cols = [u[:, 0] ** i * u[:, 1] ** j for i in range(degree + 1) for j in range(degree + 1 - i)]
    basis = np.stack(cols, 1)  # (478, terms)
    return basis @ np.linalg.lstsq(basis, np.asarray(field, np.float64), rcond=None)[0]


def with_shift(model: expression.ExpressionModel, shift: np.ndarray) -> expression.ExpressionModel:
    """The model with its mean shape moved by ``shift`` (478, 2), same facts."""
    return expression.ExpressionModel(dict(model.arrays, mean_shape=model.arrays["mean_shape"] + shift),
                                       dict(model.facts))


def correct(model: expression.ExpressionModel, draw, photos: list[np.ndarray], scores: np.ndarray,
            matrices: np.ndarray, mean_matrix: np.ndarray, detector, *, rounds: int = ROUNDS,
            max_frames: int = MAX_FRAMES) -> expression.ExpressionModel:
    """``model`` with the generator's shape bias taken off its mean shape.

    photos: RGB uint8 (S, S, 3) held-out photos (None: unreadable, left out); scores (N, 52) and matrices (N, 4, 4):
    their blendshapes and poses (``max_frames`` of them are measured, evenly spread); mean_matrix: the persona's mean pose (``mean_pose`` of
    all its frames); draw: (478, 2) persona px -> RGB uint8 image (``sketch.render``
    then the generator; a test gives a known warp instead). The model comes back
    unchanged (with a note in its facts) when too few frames give a face.
    Facts added: ``shape_bias``: rounds run, frames, the mean point shift before and
    after (px), the correction's mean and largest shift (px).
    """
    ref = model.arrays["mean_shape"].astype(np.float64)
    pick = np.linspace(0, len(photos) - 1, min(len(photos), max_frames)).round().astype(int)
    pick = np.unique(pick)
    photos_read = [read_aligned(photos[i], detector, ref) for i in pick]
    frames = [{"scores": scores[i], "pose": expression.head_pose(matrices[i], mean_matrix)} for i in pick]
    limit = MAX_SHIFT * float(model.arrays["placement"][2])
    shift = np.zeros_like(ref)
    tried = []  # (mean |bias| px, shift, frames): the first with no shift
    for _ in range(rounds + 1):  # the last pass only measures what is left
        bias, n = measure(with_shift(model, shift.astype(np.float32)), draw, frames, photos_read, detector)
        if bias is None:
            break
        tried.append((float(np.linalg.norm(bias, axis=1).mean()), shift, n))
        shift = shift + correction_step(ref, bias)
        norms = np.linalg.norm(shift, axis=1, keepdims=True)
        shift = shift * np.minimum(1.0, limit / np.maximum(norms, 1e-9))  # bounded: far off its manifold is worse
    if len(tried) < 2:  # nothing to compare a correction with: keep the model as it was
        log.info("shape bias not measured: only %d held-out frames with a face in both photo and output", n)
        return expression.ExpressionModel(model.arrays, dict(model.facts, shape_bias={"frames": n, "rounds": 0}))
    left, best, n = min(tried, key=lambda t: t[0])  # a round that made it worse is not kept
    norms = np.linalg.norm(best, axis=1)
    facts = {"frames": int(n), "rounds": len(tried) - 1, "before_px": round(tried[0][0], 3),
             "after_px": round(left, 3), "shift_mean_px": round(float(norms.mean()), 3),
             "shift_max_px": round(float(norms.max()), 3)}
    log.info("shape bias: %.2f px -> %.2f px (mean over 478 points, %d frames)", tried[0][0], left, n)
    current = with_shift(model, best.astype(np.float32))
    return expression.ExpressionModel(current.arrays, dict(model.facts, shape_bias=facts))
