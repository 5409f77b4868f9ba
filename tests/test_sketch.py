import json

import cv2
import numpy as np
import pytest

from f2f_cam import sketch
from make_golden import POINTS, golden_path


def _points() -> np.ndarray:
    return np.array(json.loads(POINTS.read_text())["points"], np.float32)


@pytest.mark.parametrize("size", [256, 128])
def test_render_matches_golden_image(size):
    """Pins sketch.render: any pixel change here needs a SKETCH_VERSION bump (and
    `python tests/make_golden.py`), since personas were trained on these pixels."""
    got = sketch.render(_points() * (size / 256), size)
    want = cv2.cvtColor(cv2.imread(str(golden_path(size))), cv2.COLOR_BGR2RGB)
    assert got.shape == want.shape == (size, size, 3)
    diff = np.count_nonzero((got != want).any(axis=2))
    assert diff == 0, f"{diff} pixels differ from {golden_path(size).name}"


def test_parts_have_distinct_colours_and_appear():
    img = sketch.render(_points(), 256)
    colours = [c for _, _, c in sketch.PARTS] + [sketch.IRIS_COLOUR]
    assert len(set(colours)) == len(colours)
    present = {tuple(c) for c in img.reshape(-1, 3)}
    for colour in colours:
        assert tuple(colour) in present, f"colour {colour} missing from the sketch"
    assert set(map(tuple, img.reshape(-1, 3))) <= set(map(tuple, colours)) | {(0, 0, 0)}


def test_line_width_scales_with_size():
    assert [sketch.line_width(s) for s in (64, 128, 256, 512)] == [1, 1, 2, 4]
    lit = [np.count_nonzero(sketch.render(_points() * (s / 256), s).any(axis=2)) / s**2 for s in (128, 512)]
    # Same drawing at 4x the size covers about the same fraction of the image.
    assert lit[1] == pytest.approx(lit[0], rel=0.35)


def test_render_rectangular_into_buffer_and_bad_points():
    out = np.full((100, 200, 3), 7, np.uint8)
    img = sketch.render(_points() * 0.3 + (40, 5), (200, 100), out=out)
    assert img is out and img.shape == (100, 200, 3)
    assert (img == 7).sum() == 0  # cleared first
    with pytest.raises(ValueError):
        sketch.render(np.zeros((10, 2)), 64)
    bad = _points().copy()
    bad[5] = np.nan
    with pytest.raises(ValueError):
        sketch.render(bad, 64)


def test_sketch_module_is_shared_by_trainers():
    import trainers.export as ex

    assert ex.sketch is sketch  # one renderer for runtime and training
