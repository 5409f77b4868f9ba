"""Small helpers shared by tests (not fixtures)."""

from pathlib import Path

import numpy as np


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine."""
    full = np.vstack([m, [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def bundled_model() -> Path:
    from f2f_cam.paths import bundled_models_dir

    return bundled_models_dir() / "face_landmarker.task"


def skip_unless(condition: bool, reason: str) -> None:
    """Skip on a developer machine without the tool; in CI (CI=true, which installs
    it) a missing tool is a failure, so a skipped path never passes for tested."""
    import os

    import pytest

    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must have this: {reason}")
    pytest.skip(reason)
