"""Dataset building blocks: the persona's crop and its reference landmarks.

The full dataset builder (frames -> pairs on disk) builds on these; tests use them to
make personas from the synthetic talking-head video.
"""

from __future__ import annotations

import numpy as np

from f2f_cam.geometry import STABLE_POINTS, Crop, apply_affine, fit_similarity, square_around

# Inner-lip midpoints (upper 13, lower 14) and the face's height (forehead 10, chin 152):
# mouth opening = gap / face height, the expression a "neutral" frame has least of.
_LIP_UPPER, _LIP_LOWER, _TOP, _CHIN = 13, 14, 10, 152


def face_crop(points: list[np.ndarray], frame_size: tuple[int, int], margin: float = 0.6) -> Crop:
    """One fixed square around where the face is over the whole video.

    points: per-frame (478, 2+) landmarks in frame pixels. The square covers the
    union of the per-frame boxes plus ``margin``, so the persona keeps its own head
    motion and background.
    """
    allpts = np.concatenate([np.asarray(p)[:, :2] for p in points])
    return square_around(allpts, *frame_size, margin=margin)


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap over face height (0 = closed)."""
    p = np.asarray(points)[:, :2]
    return float(np.linalg.norm(p[_LIP_LOWER] - p[_LIP_UPPER]) / np.linalg.norm(p[_CHIN] - p[_TOP]))


def reference_landmarks(points: list[np.ndarray], crop: Crop, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(canonical, neutral), each (478, 2) in persona image pixels.

    canonical: the mean face, after aligning every frame onto the first (so head motion
    does not blur it), placed at the mean pose. neutral: the real frame with the mouth
    most closed among the half of frames nearest the canonical shape.
    """
    img = [crop.to_image(p, image_size) for p in points]
    stable = np.array(STABLE_POINTS)
    ref = img[0]
    aligned = np.stack([apply_affine(fit_similarity(p[stable], ref[stable]), p) for p in img])
    mean_shape = aligned.mean(0)
    # Put the mean shape back at the average pose of the video.
    mean_pose = np.stack(img).mean(0)
    canonical = apply_affine(fit_similarity(mean_shape[stable], mean_pose[stable]), mean_shape)
    dist = np.linalg.norm(aligned - mean_shape, axis=2).mean(1)  # (F,) px from the mean shape
    near = np.flatnonzero(dist <= np.median(dist))
    neutral_idx = near[np.argmin([mouth_opening(img[i]) for i in near])]
    return canonical.astype(np.float32), img[neutral_idx].astype(np.float32)
