"""The bundled demo: persona, driving clip and `f2f-cam demo`."""

import json

import av
import numpy as np
import pytest

from f2f_cam import paths
from f2f_cam.demo import DEMO_PERSONA, driving_clip
from f2f_cam.persona import PersonaStore, read_persona

from conftest import run_cli

BUNDLED = paths.bundled_models_dir() / "personas" / DEMO_PERSONA

pytestmark = pytest.mark.usefixtures("with_bundled")


def test_bundled_persona_is_valid_small_and_meets_its_goals():
    p = read_persona(BUNDLED, bundled=True)
    assert p.image_size == 256 and p.meta["generator"]["ngf"] <= 32
    assert p.generator_path.stat().st_size <= 20 * 2**20
    t = p.training
    for key in ("frames", "epochs", "minutes", "device", "val_l1", "val_psnr", "val_ssim", "video_sha256"):
        assert key in t, key
    # The goals, measured on held-out frames of the training video.
    assert t["val_psnr"] >= 24.0 and t["val_ssim"] >= 0.80
    assert (BUNDLED / "MODEL_CARD.md").read_text().count("public domain") >= 1
    p.load_generator()  # (1,3,256,256) -> (1,3,256,256), no unpickling


def test_demo_persona_is_the_default_without_user_personas():
    store = PersonaStore()
    assert store.names() == [DEMO_PERSONA]
    assert store.default().name == DEMO_PERSONA and store.default().bundled


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_demo_writes_side_by_side_video_with_the_clip_frame_count(tmp_path):
    out, pic = tmp_path / "demo.mp4", tmp_path / "demo.png"
    proc = run_cli("demo", "-o", out, "--picture", pic, "--no-preview", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "astronaut" in proc.stdout
    clip = _frames(driving_clip())
    frames = _frames(out)
    assert len(frames) == len(clip)
    h, w = clip[0].shape[:2]
    assert frames[0].shape == (h, w + 2 * h, 3)
    import cv2

    strip = cv2.imread(str(pic))
    assert strip is not None and strip.shape[1] == 960 and strip.shape[0] > 3 * 200

    # The generated persona panel really shows a face: MediaPipe finds one in it.
    from f2f_cam.landmarks import LandmarkDetector

    with LandmarkDetector(mode="image") as det:
        found = [det(np.ascontiguousarray(f[:, w + h:])) is not None for f in frames[::3]]
    assert np.mean(found) >= 0.95, f"face in {np.mean(found):.0%} of the persona frames"


def test_video_uses_the_demo_persona_by_default(silent_head, tmp_path):
    proc = run_cli("video", silent_head, "-o", tmp_path / "o.mp4", "--quiet")
    assert proc.returncode == 0 and f"persona {DEMO_PERSONA}" in proc.stdout


def test_demo_errors_are_one_line(tmp_path):
    proc = run_cli("demo", "-o", tmp_path / "nope" / "demo.mp4", "--no-preview")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "cannot write" in proc.stderr
    proc = run_cli("demo", "--persona", "ghost", "--no-preview", "-o", tmp_path / "x.mp4")
    assert proc.returncode == 1 and "ghost" in proc.stderr and "Traceback" not in proc.stderr
