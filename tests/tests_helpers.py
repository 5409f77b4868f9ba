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


def one_line_error(proc, *expected) -> str:
    """A command that failed as a user error: non-zero exit, exactly one stderr line
    ``f2f-cam: error: ...`` holding each ``expected`` text, no traceback, never
    "internal error". Returns the line."""
    assert proc.returncode != 0, (proc.returncode, proc.stdout)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("f2f-cam: error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]
