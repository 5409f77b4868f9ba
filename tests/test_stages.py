"""Unit tests of the small stages: smoothing, retargeting, compositor, sources."""

import time

import cv2
import numpy as np
import pytest

from f2f_cam.compositor import Compositor, fit_into
from f2f_cam.errors import UserError
from f2f_cam.geometry import STABLE_POINTS, Crop, apply_affine, fit_similarity
from f2f_cam.landmarks import Face
from f2f_cam.retarget import Retargeter
from f2f_cam.smoothing import Smoother
from f2f_cam.sources import CameraSource, ImageFolderSource, open_source

from conftest import run_cli


def test_fit_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (30, 2))
    a, s = np.deg2rad(17), 1.7
    m = np.array([[s * np.cos(a), -s * np.sin(a), 5], [s * np.sin(a), s * np.cos(a), -3]])
    got = fit_similarity(src, apply_affine(m, src))
    assert np.allclose(got, m, atol=1e-4)


def test_smoother_reduces_jitter_but_follows_motion():
    rng = np.random.default_rng(1)
    f = Smoother(min_cutoff=1.0, beta=0.05)
    still = [f(np.full((478, 2), 100.0) + rng.normal(0, 2, (478, 2)), t / 30) for t in range(60)]
    assert np.std(np.array(still[30:])) < 1.0  # raw jitter has std 2
    f.reset()
    moving = [f(np.full((478, 2), 100.0 + 10 * t), t / 30) for t in range(30)]
    assert abs(moving[-1][0, 0] - (100 + 290)) < 30  # fast motion: little lag


def test_smoother_takes_fraction_times_as_floats():
    """A video's frame rate is a Fraction; times made from it must not turn the filter's
    arrays into Python objects (that ran 25x slower)."""
    from fractions import Fraction

    rng = np.random.default_rng(2)
    points = [np.full((478, 3), 100.0) + rng.normal(0, 2, (478, 3)) for _ in range(5)]
    a, b = Smoother(), Smoother()
    for i, p in enumerate(points):
        x, y = a(p, Fraction(i, 30)), b(p, i / 30)
    assert x.dtype == np.float32 and a._dx.dtype == np.float32
    assert np.allclose(x, y)


def test_expression_smoother_passes_a_blink_and_steadies_the_rest():
    """A blink moves 2 of the 52 scores from 0 to 0.8 in two frames: each score's own
    filter lets it through (the landmarks' filter, one cut-off from the mean speed of
    all 52, held it back), while the other scores' jitter and the head turn's are smoothed."""
    from f2f_cam.landmarks import BLENDSHAPE_NAMES
    from f2f_cam.smoothing import ExpressionSmoother

    rng = np.random.default_rng(3)
    blink = [BLENDSHAPE_NAMES.index("eyeBlinkLeft"), BLENDSHAPE_NAMES.index("eyeBlinkRight")]
    level = np.r_[np.zeros(20), 0.4, np.full(6, 0.8), np.zeros(10)]  # closed for 0.2 s at 30 fps
    per_score, whole = ExpressionSmoother(), Smoother()
    got, got_whole, rest, turn = [], [], [], []
    for i, v in enumerate(level):
        scores = 0.2 + rng.normal(0, 0.02, 52)
        scores[blink] = v
        pose = np.array([rng.normal(0, 1.0), rng.normal(0, 1.0), 0, 1, 0, 0])
        s, p = per_score(scores, pose, i / 30)
        got.append(s[blink].mean())
        got_whole.append(whole(scores, i / 30)[blink].mean())
        rest.append(np.delete(s, blink))
        turn.append(p[:2])
    assert got[21] > 0.7 and got[27] < 0.2  # closed in the second frame, open again in the first
    assert got_whole[21] < 0.4 and got_whole[27] > 0.4  # what one cut-off for all did
    assert np.std(np.array(rest[5:]), axis=0).mean() < 0.015  # raw jitter 0.02
    assert np.std(np.array(turn[5:])) < 0.5  # raw jitter 1 degree
    assert p[3:].tolist() == [1, 0, 0]  # scale and shift are not filtered


def test_retarget_modes(tiny_persona):
    from f2f_cam.persona import read_persona

    p = read_persona(tiny_persona[0])
    # A user face: the persona's canonical face, moved, scaled and rotated in a 640x480 frame.
    m = np.array([[2.0, -0.3, 150], [0.3, 2.0, 60]])
    user = apply_affine(m, p.canonical)
    align = Retargeter(p, "align")(Face(user), (640, 480))
    assert np.abs(align - p.canonical).max() < 1e-2  # any position or distance: same drawing
    transfer = Retargeter(p, "transfer")
    first = transfer(Face(user), (640, 480))
    assert np.abs(first - p.neutral).max() < 1e-2  # first face = neutral -> persona neutral
    opened = user.copy()
    opened[14] += (0, 20)  # the lower lip drops 20 px in the camera (10 px in persona space / 2x scale)
    moved = transfer(Face(opened), (640, 480))
    assert moved[14, 1] - p.neutral[14, 1] > 3
    centre = np.array([[p.crop.x + p.crop.size / 2, p.crop.y + p.crop.size / 2]] * 478)
    raw = Retargeter(p, "raw")(Face(centre), (p.crop.frame_width, p.crop.frame_height))
    assert np.allclose(raw[0], p.image_size / 2, atol=1e-3)  # the crop centre is the image centre
    with pytest.raises(UserError, match="choose one of: expression, raw, align, transfer"):
        Retargeter(p, "warp")


def test_compositor_layouts():
    cam = np.full((240, 320, 3), 200, np.uint8)
    sk = np.zeros((64, 64, 3), np.uint8)
    sk[10:20] = 255
    face = np.full((64, 64, 3), 90, np.uint8)
    out = Compositor("persona", (320, 240))(cam, sk, face)
    assert out.shape == (240, 320, 3)
    assert (out[:, 40:280] == 90).all() and (out[:, :40] == 0).all()  # square, undistorted, centred
    sbs = Compositor("side-by-side", (320 + 480, 240))(cam, sk, face)
    assert (sbs[:, :320] == 200).all() and (sbs[:, 560:] == 90).all()
    assert (Compositor("camera", (160, 120))(cam, None, None) == 200).all()
    assert (Compositor("persona", (320, 240))(cam, None, None) == 0).all()  # nothing yet: black
    with pytest.raises(UserError, match="unknown layout 'grid'; choose one of: persona, side-by-side, landmarks, camera"):
        Compositor("grid", (10, 10))


def test_fit_into_letterboxes_tall_images():
    out = np.zeros((100, 100, 3), np.uint8)
    fit_into(np.full((100, 50, 3), 255, np.uint8), out)
    assert (out[:, 25:75] == 255).all() and (out[:, :25] == 0).all()


def test_image_folder_source_and_video_from_it(tmp_path, talking_head, installed_persona):
    from f2f_cam.sources import VideoFileSource

    folder = tmp_path / "frames"
    folder.mkdir()
    with VideoFileSource(talking_head[0]) as src:
        for i, (_, frame) in enumerate(src):
            if i < 8:
                cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("ignored")
    src = open_source(folder)
    assert isinstance(src, ImageFolderSource) and src.frame_count == 8 and src.size == (320, 240)
    out = tmp_path / "from-images.mp4"
    proc = run_cli("video", folder, "-o", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "8 frames, face in 8" in proc.stdout


def test_missing_camera_is_a_user_error():
    with pytest.raises(UserError, match="cannot open camera"):
        CameraSource("/dev/video99")


def test_generator_cache_reuses_a_persona_until_it_changes(tiny_persona):
    """Switching back to a persona reuses its loaded generator (no load, no allocator
    growth: the soak's finding); a reinstalled persona is loaded anew; the oldest goes."""
    from f2f_cam.generator import GeneratorCache
    from f2f_cam.persona import PersonaStore

    store = PersonaStore()
    store.install_folder(tiny_persona[0])
    store.install_folder(tiny_persona[0], name="other")
    store.install_folder(tiny_persona[0], name="third")
    cache = GeneratorCache(keep=2)
    first = cache.get(store.get("tiny"), compile="off")
    assert cache.get(store.get("tiny"), compile="off") is first  # a new Persona object, same files
    assert cache.get(store.get("tiny"), precision="fp32", compile="off") is not first
    store.install_folder(tiny_persona[0], force=True)  # the same persona, reinstalled
    again = cache.get(store.get("tiny"), compile="off")
    assert again is not first
    other = cache.get(store.get("other"), compile="off")
    cache.get(store.get("third"), compile="off")  # keep=2: "tiny" is the oldest and goes
    assert cache.get(store.get("other"), compile="off") is other
    assert cache.get(store.get("tiny"), compile="off") is not again
