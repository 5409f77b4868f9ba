import numpy as np
import pytest

from f2f_cam import landmarks
from f2f_cam.errors import UserError
from f2f_cam.geometry import STABLE_POINTS, apply_affine
from trainers import synth
from tests_helpers import invert_affine

from conftest import detect_all


def test_faces_found_in_95_percent_and_follow_known_motion(talking_head, clip_spec):
    path, motions = talking_head
    faces, size = detect_all(path)
    assert size == (clip_spec.width, clip_spec.height)
    assert len(faces) == len(motions)
    found = [f is not None for f in faces]
    assert np.mean(found) >= 0.95, f"face found in only {np.mean(found):.0%} of frames"
    assert all(f.points.shape == (478, 3) for f in faces if f is not None)

    # Map frame 0's stable points through each frame's known head transform: the
    # detector must see them there (the mouth warp does not move these points).
    stable = list(STABLE_POINTS)
    m0 = synth.frame_transform(clip_spec, motions[0])
    ref = apply_affine(invert_affine(m0), faces[0].xy[stable])  # astronaut-image coords
    errors = []
    for face, motion in zip(faces, motions):
        if face is not None:
            expected = apply_affine(synth.frame_transform(clip_spec, motion), ref)
            errors.append(np.linalg.norm(face.xy[stable] - expected, axis=1).mean())
    face_h = np.ptp(faces[0].xy[:, 1])
    assert np.mean(errors) < 0.05 * face_h, f"mean error {np.mean(errors):.2f}px on a {face_h:.0f}px face"
    # The motion is large enough that a detector ignoring it would fail this test.
    shifts = [np.hypot(m.dx, m.dy) for m in motions]
    assert max(shifts) > 0.1 * face_h


def test_largest_face_wins_and_none_without_face():
    from skimage import data

    import cv2

    head = data.astronaut()[20:240, 110:330]  # (220, 220, 3) around the face
    canvas = np.zeros((480, 720, 3), np.uint8)
    canvas[20:460, 260:700] = cv2.resize(head, (440, 440))  # big face on the right
    canvas[130:350, 10:230] = head  # half-size face on the left
    with landmarks.LandmarkDetector(mode="image") as det:
        face = det(canvas)
        assert face is not None
        assert face.xy[:, 0].min() > 260, "picked the small face"
        left = det(np.ascontiguousarray(canvas[:, :240]))
        assert left is not None and left.xy[:, 0].max() < 240  # the small one alone is a face too
        assert det(np.zeros((240, 320, 3), np.uint8)) is None


def test_video_mode_tracks_one_face_and_moves_to_a_clearly_larger_one():
    """Video mode tracks one face (MediaPipe's detector would otherwise run on every
    frame looking for more) and checks once a second for a clearly larger face: one
    that walks up to the camera is taken within CHECK_EVERY frames (the check runs in
    ``between_frames``, else at the next call), while a smaller one coming into
    view does not pull the tracker off the person."""
    from skimage import data

    import cv2

    head = data.astronaut()[20:240, 110:330]
    both = np.zeros((480, 720, 3), np.uint8)
    both[20:460, 260:700] = cv2.resize(head, (440, 440))  # big face on the right
    both[130:350, 10:230] = head  # half-size face on the left
    small_only, big_only = both.copy(), both.copy()
    small_only[:, 240:] = 0
    big_only[:, :240] = 0
    n = landmarks.CHECK_EVERY
    with landmarks.LandmarkDetector(mode="video") as det:
        left = [det(small_only, i * 33).xy[:, 0].max() < 240 for i in range(3)]
        after = [det(both, (3 + i) * 33) for i in range(n + 3)]
        assert all(left) and all(f is not None for f in after)
        taken = [i for i, f in enumerate(after) if f.xy[:, 0].min() > 260]
        assert taken and taken[0] <= n + 1 and taken == list(range(taken[0], len(after))), taken
    with landmarks.LandmarkDetector(mode="video") as det:
        faces = [det(big_only, 0)] + [det(both, (1 + i) * 33) for i in range(n + 3)]
        assert all(f is not None and f.xy[:, 0].min() > 260 for f in faces)


def test_tracked_landmarks_are_not_smoothed_over_time():
    """Tracking one face, MediaPipe smooths its landmarks over time (jaw and blinks lag
    a frame); video mode leaves the smoothing to the pipeline: a face jumping 16 px
    back and forth is found where it is on every frame, as a still image would be
    (measured: within 1.1 px; with MediaPipe's smoothing 2-6 px behind)."""
    from skimage import data

    import cv2

    head = data.astronaut()[20:240, 110:330]
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[100:380, 180:460] = cv2.resize(head, (280, 280))
    frames = [cv2.warpAffine(canvas, np.float32([[1, 0, dx], [0, 1, 0]]), (640, 480)) for dx in (0, 16)]
    with landmarks.LandmarkDetector(mode="image") as still:
        where = [still(f).xy for f in frames]
    with landmarks.LandmarkDetector(mode="video") as det:
        errors = [np.linalg.norm(det(frames[i % 2], i * 33).xy - where[i % 2], axis=1).mean() for i in range(12)]
    assert max(errors) < 1.6, np.round(errors, 2)


def test_video_mode_accepts_non_increasing_timestamps(talking_head):
    from f2f_cam.sources import VideoFileSource

    with VideoFileSource(talking_head[0]) as src, landmarks.LandmarkDetector(mode="video") as det:
        frame = next(iter(src))[1]
        assert det(frame, 100) is not None
        assert det(frame, 100) is not None  # same timestamp again: bumped, not an error
        assert det(frame) is not None  # no timestamp: 33 ms steps


def test_missing_model_offline_is_a_clear_error(monkeypatch, tmp_path):
    from f2f_cam import paths

    monkeypatch.setattr(paths, "bundled_models_dir", lambda: tmp_path / "nothing")
    monkeypatch.setattr(landmarks, "MODEL_URL", "http://127.0.0.1:9/face_landmarker.task")
    with pytest.raises(UserError, match="download failed"):
        landmarks.find_model()
    assert not list((tmp_path).glob("**/*.task"))


def test_model_download_checks_sha256(monkeypatch, tmp_path):
    """A served file with the wrong hash is refused and nothing is cached."""
    import http.server
    import threading

    from f2f_cam import paths

    from tests_helpers import bundled_model

    real_model = bundled_model()
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "face_landmarker.task").write_bytes(b"not the model" * 100)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(srv), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(paths, "bundled_models_dir", lambda: tmp_path / "nothing")
        monkeypatch.setattr(landmarks, "MODEL_URL", f"http://127.0.0.1:{server.server_port}/face_landmarker.task")
        with pytest.raises(UserError, match="SHA-256"):
            landmarks.find_model()
        assert not (paths.cache_dir() / landmarks.MODEL_FILE).exists()
        # The real bundle, served the same way, is accepted and cached.
        import shutil

        shutil.copy(real_model, srv / "face_landmarker.task")
        got = landmarks.find_model()
        assert got == paths.cache_dir() / landmarks.MODEL_FILE
        assert landmarks.sha256_file(got) == landmarks.MODEL_SHA256
    finally:
        server.shutdown()


def test_blendshapes_and_pose_follow_the_known_mouth(talking_head):
    """With blendshapes on, each face carries MediaPipe's 52 scores and its 4x4 pose;
    the generated clip's known mouth opening shows in jawOpen."""
    from f2f_cam.sources import VideoFileSource

    path, motions = talking_head
    with VideoFileSource(path) as src, landmarks.LandmarkDetector(mode="video", blendshapes=True) as det:
        faces = [det(frame, int(t * 1000)) for t, frame in src]
    pairs = [(f, m) for f, m in zip(faces, motions) if f is not None]
    assert len(pairs) >= 0.95 * len(motions)
    for face, _ in pairs:
        assert face.blendshapes.shape == (landmarks.NUM_BLENDSHAPES,) and face.blendshapes.dtype == np.float32
        assert 0 <= face.blendshapes.min() and face.blendshapes.max() <= 1
        assert face.pose.shape == (4, 4) and np.allclose(face.pose[3], [0, 0, 0, 1], atol=1e-5)
        # A rotation (times scale): orthogonal columns of equal length.
        r = face.pose[:3, :3]
        gram = r.T @ r
        assert np.allclose(gram, np.eye(3) * gram[0, 0], atol=0.05 * gram[0, 0])
    jaw = [f.blendshapes[landmarks.BLENDSHAPE_NAMES.index("jawOpen")] for f, _ in pairs]
    mouth = [m.mouth for _, m in pairs]
    assert np.std(mouth) > 0.1  # the clip talks
    assert np.corrcoef(jaw, mouth)[0, 1] > 0.8
    # Off by default: no second model, no scores.
    with landmarks.LandmarkDetector(mode="image") as det:
        assert det(np.asarray(src_frame(path))).blendshapes is None


def src_frame(path):
    from f2f_cam.sources import VideoFileSource

    with VideoFileSource(path) as src:
        return next(iter(src))[1]
