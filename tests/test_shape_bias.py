"""The generator's face-shape bias (trainers.shape_bias): measured through the real
landmarker and drawn away in the expression model."""

import cv2
import numpy as np
import pytest

from f2f_cam import expression as ex
from f2f_cam.landmarks import LandmarkDetector
from f2f_cam.quality import shape_ratios
from trainers import shape_bias

SIZE = 256
STRETCH = 1.06  # the test's "generator" draws every face 6 % wider than its sketch


@pytest.fixture(scope="module")
def frames(tmp_path_factory, talking_head):
    """(meta, photos): a 20-frame dataset of the talking head at SIZE px and its photos."""
    from trainers.dataset import build_dataset, load_dataset

    folder = tmp_path_factory.mktemp("datasets") / "bias"
    build_dataset(talking_head[0], folder, frames=20, size=SIZE, val_fraction=0.2, progress=False)
    meta = load_dataset(folder)
    meta["pairs"].sort(key=lambda p: p["frame"])
    photos = [cv2.cvtColor(cv2.imread(str(folder / "B" / p["file"])), cv2.COLOR_BGR2RGB) for p in meta["pairs"]]
    return meta, photos


def stretching_draw(base: np.ndarray, base_points: np.ndarray, stretch: float = STRETCH):
    """A stand-in generator with a known bias: the base photo moved onto the drawn points
    (the least-squares affine from its landmarks to them), then stretched sideways about
    the face's centre."""
    src = np.c_[base_points, np.ones(len(base_points))]

    def draw(points: np.ndarray) -> np.ndarray:
        m = np.linalg.lstsq(src, np.asarray(points, np.float64), rcond=None)[0].T  # (2, 3)
        cx = float(np.asarray(points)[:, 0].mean())
        s = np.array([[stretch, 0, cx * (1 - stretch)], [0, 1, 0], [0, 0, 1]])
        return cv2.warpAffine(base, (s @ np.vstack([m, [0, 0, 1]]))[:2], (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)

    return draw


def face_width(image: np.ndarray, detector) -> float:
    face = detector(image)
    assert face is not None
    return float(shape_ratios(face.points[:, :2])[1])  # face width over face height


def test_a_known_widening_is_measured_and_drawn_away(frames):
    from trainers.export import fit_expression

    meta, photos = frames
    model = fit_expression(meta)
    mats = np.array([p["pose"] for p in meta["pairs"]])
    scores = np.array([p["blendshapes"] for p in meta["pairs"]])
    mean = ex.mean_pose(mats)
    k = int(np.argmin(np.abs(np.array([p["landmarks"] for p in meta["pairs"]]) - meta["neutral_landmarks"]).sum((1, 2))))
    with LandmarkDetector(mode="image") as det:
        base_points = det(photos[k]).points[:, :2]
        draw = stretching_draw(photos[k], base_points)
        fixed = shape_bias.correct(model, draw, photos, scores, mats, mean, det, max_frames=12)
        facts = fixed.facts["shape_bias"]
        assert facts["rounds"] == shape_bias.ROUNDS and facts["frames"] >= shape_bias.MIN_FRAMES
        assert facts["before_px"] > 1.0  # 6 % of a ~90 px face, at its sides
        assert facts["after_px"] < 0.5 * facts["before_px"]
        # What a viewer sees: the drawn face is as wide as the photo's again, not 6 % wider.
        real = face_width(photos[k], det)
        before = face_width(draw(model.predict(scores[k], ex.head_pose(mats[k], mean))), det) / real
        after = face_width(draw(fixed.predict(scores[k], ex.head_pose(mats[k], mean))), det) / real
    assert before > 1.03 and abs(after - 1.0) < 0.5 * abs(before - 1.0), (before, after)
    # Only the mean shape moved, by at most MAX_SHIFT of the face width; the rest is the same model.
    assert not np.allclose(fixed.arrays["mean_shape"], model.arrays["mean_shape"])
    moved = np.linalg.norm(fixed.arrays["mean_shape"] - model.arrays["mean_shape"], axis=1).max()
    assert moved <= shape_bias.MAX_SHIFT * model.arrays["placement"][2] + 1e-3
    for name in ex.ARRAYS:
        if name != "mean_shape":
            assert np.array_equal(fixed.arrays[name], model.arrays[name])


def test_a_generator_that_draws_no_face_leaves_the_model_as_it_was(frames):
    from trainers.export import fit_expression

    meta, photos = frames
    model = fit_expression(meta)
    mats = np.array([p["pose"] for p in meta["pairs"]])
    with LandmarkDetector(mode="image") as det:
        fixed = shape_bias.correct(model, lambda points: np.full((SIZE, SIZE, 3), 128, np.uint8), photos,
                                   np.array([p["blendshapes"] for p in meta["pairs"]]), mats, ex.mean_pose(mats), det,
                                   max_frames=12)
    assert fixed.facts["shape_bias"] == {"frames": 0, "rounds": 0}
    for name in ex.ARRAYS:
        assert np.array_equal(fixed.arrays[name], model.arrays[name])
