"""``f2f-cam bench --quality``: each metric on known inputs, the figures composed from
real measurements of generated clips, and the command on a tiny persona."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import run_cli
from f2f_cam import quality as q
from f2f_cam import quality_bench as qb
from f2f_cam.errors import UserError
from f2f_cam.landmarks import BLENDSHAPE_NAMES
from f2f_cam.registry import RETARGET_MODES
from tests_helpers import one_line_error
from trainers import synth

# --- the metrics, on known inputs ----------------------------------------------------


def test_pearson_of_a_series_with_itself_is_one_and_undefined_for_a_constant():
    x = np.sin(np.linspace(0, 6, 50))
    assert q.pearson(x, x) == pytest.approx(1.0)
    assert q.pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert q.pearson(x, -x) == pytest.approx(-1.0)
    assert q.pearson(x, np.full(50, 0.2)) is None  # a face that never blinks: r is undefined
    # Frames without a face (NaN) are left out; fewer than 3 pairs left is undefined.
    y = x.copy()
    y[::3] = np.nan
    assert q.pearson(x, y) == pytest.approx(1.0)
    assert q.pearson(x[:2], x[:2]) is None


def test_expression_scores_average_left_and_right():
    b = np.zeros(len(BLENDSHAPE_NAMES), np.float32)
    for name, v in (("jawOpen", 0.7), ("eyeBlinkLeft", 0.2), ("eyeBlinkRight", 0.4),
                    ("mouthSmileLeft", 0.5), ("mouthSmileRight", 0.1), ("browInnerUp", 0.9)):
        b[BLENDSHAPE_NAMES.index(name)] = v
    np.testing.assert_allclose(q.expression_scores(b), [0.7, 0.3, 0.3, 0.9], atol=1e-6)


def face_points() -> np.ndarray:
    """(478, 3) points with a known face: height 100, the ratios 0.4, 0.9, 0.25, 0.2, 0.4."""
    p = np.zeros((478, 3))
    for i, xy in {10: (0, 0), 152: (0, 100), 33: (-30, 40), 133: (-10, 40), 362: (10, 40), 263: (30, 40),
                  234: (-45, 50), 454: (45, 50), 168: (0, 40), 1: (0, 65), 61: (-20, 80), 291: (20, 80)}.items():
        p[i, :2] = xy
    return p


def test_shape_ratios_of_a_known_face_do_not_change_with_pose():
    p = face_points()
    np.testing.assert_allclose(q.shape_ratios(p), [0.4, 0.9, 0.25, 0.2, 0.4])
    angle = np.radians(25)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = 2.5 * p @ rot.T + [300, 120, 7]
    np.testing.assert_allclose(q.shape_ratios(moved), q.shape_ratios(p))


def test_masked_psnr_counts_only_the_masked_pixels():
    real = np.full((8, 8, 3), 0.5)
    fake = real.copy()
    fake[:4] += 0.1  # the top half off by 0.1: 20 dB there
    top = np.zeros((8, 8), bool)
    top[:4] = True
    assert q.masked_psnr(fake, real, top) == pytest.approx(20.0)
    assert q.masked_psnr(fake, real, ~top) == pytest.approx(100.0)  # exact: the 1e-10 floor
    assert np.isnan(q.masked_psnr(fake, real, np.zeros((8, 8), bool)))
    assert q.region_psnr(fake, real, np.array([[0, 0], [7, 0], [7, 3], [0, 3]]))[0] == pytest.approx(20.0)


def test_iris_offset_is_in_eye_widths_averaged_over_both_eyes():
    p = face_points()  # each eye 20 wide
    p[468, :2], p[473, :2] = (-20, 40), (20, 40)  # the irises in the middle of their eyes
    assert q.iris_offset(p, p) == 0.0
    aside = p.copy()
    aside[468, 0] += 4  # the right iris a fifth of its eye towards the nose, the left still
    assert q.iris_offset(aside, p) == pytest.approx(0.1)
    both = aside.copy()
    both[473, 1] -= 2  # and the left one a tenth up
    assert q.iris_offset(both, p) == pytest.approx(0.15)
    assert q.iris_offset(both * 3, p * 3) == pytest.approx(0.15)  # the image's size does not matter


def test_identity_keep_counts_frames_nearer_the_persona_where_the_driver_differs():
    persona = np.array([0.4, 0.9, 0.25, 0.2, 0.4])
    driver = np.tile(persona * 1.15, (6, 1))  # 15 % off: differs
    assert q.identity_keep(np.tile(persona, (6, 1)), driver, persona) == 1.0  # the persona's own ratios
    assert q.identity_keep(driver, driver, persona) == 0.0  # the driver's shape leaked in
    half = np.vstack([np.tile(persona, (3, 1)), driver[:3]])
    assert q.identity_keep(half, driver, persona) == 0.5
    # A driver with the persona's shape: nothing to tell apart.
    assert q.identity_keep(driver, np.tile(persona * 1.01, (6, 1)), persona) is None
    # Frames without a face on either side are left out.
    out = np.tile(persona, (6, 1))
    out[:5] = np.nan
    assert q.identity_keep(out, driver, persona) == 1.0


def test_identity_keep_compares_with_the_persona_at_the_same_head_turn_and_expression():
    # A head turned 30 degrees narrows every face: the persona's own turned frames are
    # what a turned output must be near, not its frontal median.
    frontal = np.array([0.4, 0.9, 0.25, 0.2, 0.4])
    yaw = np.linspace(-30, 30, 61)
    narrowing = 1 - 0.3 * (np.abs(yaw) / 30)[:, None] * [1, 1, 0, 1, 1]
    zero = np.zeros_like(yaw)
    ref_ratios, ref_keys = frontal * narrowing, np.stack([yaw / 10, zero, zero, zero], 1)
    at = np.array([[3.0, 0, 0, 0], [0, 0, 0, 0], [np.nan] * 4])
    persona_at = q.ratios_alike(ref_ratios, ref_keys, at, k=3)
    np.testing.assert_allclose(persona_at[0], frontal * narrowing[-2])  # median of the 3 nearest: 29 deg
    np.testing.assert_allclose(persona_at[1], frontal * narrowing[31])  # -1, 0, 1 deg: the 1 deg value
    assert np.isnan(persona_at[2]).all()
    # A turned persona output, driven by another face (15 % off) turned the same way.
    output = np.tile(persona_at[0], (4, 1))
    driver = output * 1.15
    assert q.identity_keep(output, driver, np.tile(persona_at[0], (4, 1))) == 1.0
    # Against the frontal median, the same frames read as the driver's shape leaking in.
    assert q.identity_keep(output, driver, frontal) == 0.0


def test_sharpness_of_a_blurred_face_is_lower():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 128), dtype=np.uint8)
    blurred = cv2.GaussianBlur(image, (0, 0), 2.0)
    assert q.sharpness(blurred) < 0.2 * q.sharpness(image)
    assert q.sharpness(np.full((128, 128), 90, np.uint8)) == 0.0


def test_face_crop_is_the_landmark_square_at_128_px_even_past_the_frame_edge():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[20:60, 40:80] = 255  # the "face": a white square
    points = np.array([[40, 20], [80, 20], [40, 60], [80, 60]], np.float32)
    crop = q.face_crop(frame, points)
    assert crop.shape == (q.CROP, q.CROP) and crop.dtype == np.uint8
    assert crop[8:-8, 8:-8].min() == 255  # the square fills the crop
    edge = q.face_crop(frame, points - [60, 40])  # half the box left the frame: its edge repeats
    assert edge.shape == (q.CROP, q.CROP)


def test_region_psnr_splits_the_error_at_the_face_outline():
    real = np.full((64, 64, 3), 0.5)
    points = np.array([[16, 16], [48, 16], [48, 48], [16, 48], [32, 32]], float)  # the face: a square
    fake = real.copy()
    fake[:8] += 0.1  # wrong only above the face: 20 dB there, exact inside
    face, rest = q.region_psnr(fake, real, points)
    assert face == pytest.approx(100.0)  # no error: the 1e-10 floor
    outside = 64 * 64 - 33 * 33
    assert rest == pytest.approx(10 * np.log10(1 / (0.01 * 8 * 64 / outside)), abs=1e-6)
    fake[20:40, 20:40] -= 0.2  # now inside too
    assert q.region_psnr(fake, real, points)[0] == pytest.approx(10 * np.log10(1 / (0.04 * 400 / 33 ** 2)), abs=1e-6)


def test_flicker_is_the_mean_change_between_consecutive_crops():
    a, b = np.zeros((8, 8), np.uint8), np.full((8, 8), 10, np.uint8)
    assert q.flicker([a, a, a]) == 0.0
    assert q.flicker([a, b, a, b]) == 10.0
    assert q.flicker([a, None, b, b]) == 0.0  # only pairs with a face on both sides
    assert q.flicker([a, None]) is None
    assert q.ratio(5.0, 10.0) == 0.5 and q.ratio(None, 1.0) is None and q.ratio(1.0, 0.0) is None


def test_ssim_of_a_frame_with_itself_is_one():
    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 1.5)
    noisy = np.clip(frame + rng.normal(0, 40, frame.shape), 0, 255).astype(np.uint8)
    assert q.image_ssim([frame, frame], [frame, frame]) == pytest.approx(1.0, abs=1e-5)
    assert q.image_ssim([noisy], [frame]) < 0.8


# --- figures from real measurements of generated clips ------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """{name: Track}: 1.5 s generated drivers measured by the real landmarker: the
    astronaut, the same clip again, and another face shape with the same motion."""
    folder = tmp_path_factory.mktemp("quality")
    tracks = {}
    for name, shape in (("plain", synth.FaceShape()), ("shaped", synth.FaceShape(0.12, 0.15, 0.15))):
        path = folder / f"{name}.mp4"
        synth.write_video(path, synth.SynthSpec(width=320, height=240, shift=15.0, seconds=1.5, style="drive",
                                                seed=4, shape=shape))
        tracks[name] = q.measure(qb.Clip(name, path, 100))
    return tracks


def reference_of(track: q.Track) -> qb.Reference:
    return qb.Reference("test", np.nanmedian(track.ratios(), axis=0), track.sharpness(), len(track.samples),
                        track=track)


def test_an_output_that_is_the_driver_follows_it_exactly(clips):
    plain = clips["plain"]
    f = qb.driver_figures(plain, plain, reference_of(plain))
    assert f["face_rate"] == 1.0
    assert f["expr_r_jaw"] == pytest.approx(1.0) and f["expr_r"] == pytest.approx(1.0)
    assert f["sharpness_ratio"] == pytest.approx(1.0) and f["flicker_ratio"] == pytest.approx(1.0)
    assert f["identity_keep"] is None  # driver and persona are the same face
    assert f["gaze_offset"] == 0.0


def test_identity_keep_tells_the_persona_shape_from_the_driver_shape(clips):
    plain, shaped = clips["plain"], clips["shaped"]
    # The persona is the plain astronaut; the driver has another face shape.
    kept = qb.driver_figures(shaped, plain, reference_of(plain))
    assert kept["identity_keep"] == 1.0
    assert kept["expr_r_blink"] > 0.9  # the same motion script: the blink still follows
    leaked = qb.driver_figures(shaped, shaped, reference_of(plain))
    assert leaked["identity_keep"] == 0.0


# --- the command ---------------------------------------------------------------------


class Overlay(torch.nn.Module):
    """A generator that draws the sketch over one fixed photo of the persona: real (and
    simple) TorchScript whose output always holds a face that moves with the sketch."""

    def __init__(self, photo: torch.Tensor):  # (1, 3, S, S) in [-1, 1]
        super().__init__()
        self.register_buffer("photo", photo)

    def forward(self, x):
        return torch.where((x > -0.9).any(dim=1, keepdim=True), x, self.photo)


@pytest.fixture(scope="module")
def overlay_folder(tmp_path_factory, talking_head):
    """A 128 px persona of the talking head's astronaut with the ``Overlay`` generator,
    exported through the real path."""
    from conftest import detect_all
    from f2f_cam.generator import to_input
    from f2f_cam.sources import VideoFileSource
    from trainers.dataset import face_crop, reference_landmarks
    from trainers.export import export_persona

    faces, size = detect_all(talking_head[0])
    points = [f.points for f in faces if f is not None]
    crop = face_crop(points, size)
    canonical, neutral = reference_landmarks(points, crop, 128)
    with VideoFileSource(talking_head[0]) as src:
        first = next(iter(src))[1]
    photo = cv2.warpAffine(first, crop.affine(128), (128, 128), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return export_persona(Overlay(to_input(photo)), tmp_path_factory.mktemp("personas") / "overlay",
                          name="overlay", image_size=128, crop=crop, canonical=canonical, neutral=neutral,
                          training={"frames": len(points)})


@pytest.fixture
def overlay(overlay_folder):
    from f2f_cam.persona import PersonaStore

    return PersonaStore().install_folder(overlay_folder)


@pytest.fixture
def overlay_dataset(overlay, talking_head):
    """The persona's dataset in its run folder, built from its own clip."""
    from f2f_cam import paths
    from trainers.dataset import build_dataset

    folder = paths.data_dir() / "runs" / overlay.name / "dataset"
    build_dataset(talking_head[0], folder, frames=8, size=overlay.image_size, progress=False)
    return folder


def test_the_dataset_of_a_persona_trained_from_another_runs_dataset_is_found(overlay):
    """``train --dataset RUNS/OTHER/dataset --name NAME`` leaves no dataset in NAME's run
    folder: bench --quality finds the other run's, if it is of the same video, size and split."""
    import dataclasses

    from f2f_cam import paths

    runs = paths.data_dir() / "runs"
    sha = "ab" * 32
    persona = dataclasses.replace(overlay, training={**overlay.training, "video_sha256": sha, "val_pairs": 4})

    def dataset(run, **change):
        folder = runs / run / "dataset"
        folder.mkdir(parents=True)
        meta = {"image_size": persona.image_size, "video_sha256": sha, "val": 4, **change}
        (folder / "dataset.json").write_text(json.dumps(meta))
        return folder

    assert qb.find_dataset(persona) is None
    dataset("a_other_video", video_sha256="cd" * 32)
    dataset("b_other_size", image_size=persona.image_size * 2)
    dataset("c_other_split", val=8)
    assert qb.find_dataset(persona) is None
    found = dataset("d_same")
    assert qb.find_dataset(persona) == found
    own = dataset(persona.name)  # its own run folder, when there is one, comes first
    assert qb.find_dataset(persona) == own


@pytest.fixture(scope="module")
def shaped_driver(tmp_path_factory):
    """1.5 s of the astronaut with another face shape: a driver unlike the persona."""
    path = tmp_path_factory.mktemp("drivers") / "shaped.mp4"
    synth.write_video(path, synth.SynthSpec(width=320, height=240, shift=15.0, seconds=1.5, style="drive",
                                            seed=5, shape=synth.FaceShape(0.12, 0.15, 0.15)))
    return path


def sane(figures: dict, keys=qb.FIGURES) -> None:
    """Every figure there; r in [-1, 1], rates in [0, 1], ratios > 0; null allowed."""
    assert set(figures) == set(keys)
    for k, v in figures.items():
        if v is None:
            continue
        if k.startswith("expr_r") or k == "pose_ssim_min":
            assert -1.0 <= v <= 1.0, (k, v)
        elif k in ("face_rate", "identity_keep", "gaze_offset"):
            assert 0.0 <= v <= 1.0, (k, v)
        else:
            assert v > 0, (k, v)


def test_bench_quality_json_has_every_figure(overlay_dataset, shaped_driver, talking_head):
    proc = run_cli("bench", "--quality", "--persona", "overlay", "--driver", shaped_driver, "--frames", "10",
                   "--json", check=True)
    r = json.loads(proc.stdout)
    assert {"persona", "modes", "self", "drivers", "frames", "reference"} <= set(r)
    assert r["persona"] == "overlay" and r["frames"] == 10
    assert list(r["modes"]) == list(RETARGET_MODES)  # every registered mode
    for figures in r["modes"].values():
        sane(figures)
        assert figures["face_rate"] > 0.9 and figures["identity_keep"] is not None  # the driver differs
    (d,) = r["drivers"]
    assert d["frames"] == 10 and d["face_rate"] == 1.0 and d["source"] == str(shaped_driver)
    for figures in d["modes"].values():
        sane(figures, qb.FIGURES[:-1])  # the pose grid is per mode, not per driver
    # The reference is the dataset's own video; self-reenactment ran on its held-out pair.
    assert r["reference"]["source"] == str(talking_head[0].resolve()) and r["reference"]["note"] is None
    s = r["self"]
    assert s["available"] and s["frames"] >= 1 and s["psnr"] > 0 and 0 < s["l1"] < 1
    assert -1 <= s["ssim"] <= 1 and s["sharpness_ratio"] > 0
    # The landmarker finds the held-out photo's face near where its landmarks say; the
    # overlay draws one fixed photo, whose irises are elsewhere or not found at all.
    assert s["iris_offset_real"] is not None and 0 <= s["iris_offset_real"] < 0.15
    assert s["iris_offset"] is None or s["iris_offset"] >= 0
    # The whole frame's error is the face's and the rest's together: its PSNR lies between theirs.
    assert min(s["psnr_face"], s["psnr_rest"]) - 0.5 <= s["psnr"] <= max(s["psnr_face"], s["psnr_rest"]) + 0.5
    assert 0 < s["psnr_eyes"] < 100
    assert 0 <= s["checkerboard"] < 0.05  # a few hundredths at most: a grid of 0.05 would be a 25-level pattern
    text = qb.format_quality(r)
    assert all(m in text for m in RETARGET_MODES) and all(f in text for f in qb.FIGURES)


def test_without_a_dataset_the_idle_frame_is_the_reference(overlay, talking_head):
    r = qb.bench_quality(overlay, drivers=[talking_head[0]], modes=["align"], frames=6, progress=False)
    assert list(r["modes"]) == ["align"]
    sane(r["modes"]["align"])
    assert "idle frame" in r["reference"]["note"] and "--reference" in r["reference"]["note"]
    assert r["self"] == {"available": False, "note": pytest.approx(r["self"]["note"])}
    assert "no dataset" in r["self"]["note"]


def test_a_persona_with_no_face_in_its_idle_frame_needs_a_reference(installed_persona, talking_head):
    # The tiny persona's generator is untrained: its idle frame holds no face.
    with pytest.raises(UserError, match="no face found in the reference .*--reference"):
        qb.bench_quality(installed_persona, drivers=[talking_head[0]], modes=["align"], frames=5, progress=False)


@pytest.mark.parametrize("args, expected", [
    (("--mode", "sideways"), "unknown retarget mode 'sideways'"),
    (("--persona", "nobody"), "unknown persona 'nobody'"),
])
def test_bench_quality_bad_names_are_one_line(installed_persona, args, expected):
    one_line_error(run_cli("bench", "--quality", *args), expected)


def test_bench_quality_bad_videos_are_one_line(installed_persona, talking_head, faceless_video, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    one_line_error(run_cli("bench", "--quality", "--persona", "tiny", "--driver", talking_head[0],
                           "--reference", text), "is not a video file")
    one_line_error(run_cli("bench", "--quality", "--persona", "tiny", "--driver", faceless_video,
                           "--reference", talking_head[0]), "no face found in the driver")
