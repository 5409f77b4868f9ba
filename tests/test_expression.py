"""The expression model (f2f_cam.expression): fitted on known maps, clamped, stored in
format-2 personas, refused when corrupt, and driven through the real detector."""

import json
import logging
import math
import shutil

import numpy as np
import pytest

from f2f_cam import expression as ex
from f2f_cam import persona as pf
from f2f_cam.errors import UserError
from f2f_cam.geometry import STABLE_POINTS
from f2f_cam.landmarks import BLENDSHAPE_NAMES, Face

from conftest import TINY_SIZE, run_cli
from tests_helpers import one_line_error

JAW, SMILE, BLINK = (BLENDSHAPE_NAMES.index(n) for n in ("jawOpen", "mouthSmileLeft", "eyeBlinkLeft"))


def pose_matrix(yaw=0.0, pitch=0.0, roll=0.0, depth=40.0, tx=0.0, ty=0.0) -> np.ndarray:
    """A MediaPipe-style 4x4 pose: R = Ry(yaw) Rx(pitch) Rz(-roll) (roll as seen in the
    image, y down), the face ``depth`` cm in front of the camera at (tx, ty) cm."""
    a, b, c = np.radians([yaw, pitch, -roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = ry @ rx @ rz
    m[:3, 3] = (tx, ty, -depth)
    return m


def test_head_pose_of_known_turns_and_moves():
    neutral = pose_matrix(yaw=10, pitch=-5, roll=3, depth=40)
    turned = neutral.copy()
    turned[:3, :3] = neutral[:3, :3] @ pose_matrix(yaw=12, pitch=-7, roll=9)[:3, :3]  # in the head's frame
    assert np.allclose(ex.head_pose(turned, neutral)[:3], [12, -7, 9], atol=1e-6)
    assert np.allclose(ex.head_pose(neutral, neutral), ex.NEUTRAL_POSE, atol=1e-9)
    # Twice as near looks twice as big; 15 cm right at 40 cm is one face width (up is -y).
    near = pose_matrix(depth=20)
    assert ex.head_pose(near, pose_matrix(depth=40))[3] == pytest.approx(2.0)
    assert np.allclose(ex.head_pose(pose_matrix(tx=ex.FACE_WIDTH_CM, ty=7.5), pose_matrix())[4:], [1.0, -0.5])


def test_moving_in_front_of_the_camera_is_not_a_head_turn():
    # 10 cm right and 8 cm up at 40 cm, looking as it does at the centre: its matrix is
    # turned towards the camera by VIEW_GAIN of the angles off the axis, and tilted by
    # VIEW_ROLL_GAIN of the horizontal one (what the landmarker gives such a face).
    yaw, pitch = -math.degrees(math.atan2(10, 40)), math.degrees(math.atan2(8, math.hypot(10, 40)))
    looking = pose_matrix(yaw=ex.VIEW_GAIN[0] * yaw, pitch=ex.VIEW_GAIN[1] * pitch, roll=-ex.VIEW_ROLL_GAIN * yaw,
                          tx=10, ty=8)
    assert np.allclose(ex.head_pose(looking, pose_matrix())[:3], 0, atol=1e-6)
    # A real turn there still reads as that turn.
    turned = looking.copy()
    turned[:3, :3] = looking[:3, :3] @ pose_matrix(yaw=15)[:3, :3]
    assert np.allclose(ex.head_pose(turned, pose_matrix())[:3], [15, 0, 0], atol=1e-6)


def known_map(seed=0):
    """A persona's face (478, 2) and a known linear map (3, 478, 2) of jawOpen, a smile
    and a blink to its landmarks (px per unit score): the jaw and the smile move the
    lower half of the face, the blink the upper half (``ex.halves``)."""
    rng = np.random.default_rng(seed)
    canonical = rng.uniform(8, 56, (478, 2))
    basis = rng.normal(0, 2.0, (3, 478, 2))
    basis[:, list(STABLE_POINTS)] = 0  # expression moves no stable point: alignment keeps it whole
    y = canonical[:, 1] - canonical[ex.SPLIT_POINT, 1]
    basis[:2, y < 0] = 0  # jaw, smile: the lower half
    basis[2, y >= 0] = 0  # blink: the upper half
    basis[:, np.abs(y) < 2] = 0  # nothing moves near the line between them
    return canonical, basis


def frames(n, seed, k=1.0):
    """(scores (n, 52): one of the three at a time, in [0, 0.7]; poses (n, 4, 4): rolls
    of -8..8 degrees, 36-44 cm away, shifted a few cm; never any yaw or pitch). ``k``
    shrinks the ranges about their middle (new frames well inside the ones seen)."""
    rng = np.random.default_rng(seed)

    def draw(lo, hi, size=None):
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * k
        return rng.uniform(mid - half, mid + half, size)

    scores = np.zeros((n, 52))
    scores[np.arange(n), rng.choice([JAW, SMILE, BLINK], n)] = draw(0, 0.7, n)
    matrices = np.stack([pose_matrix(roll=draw(-8, 8), depth=draw(36, 44), tx=draw(-3, 3), ty=draw(-2, 2))
                         for _ in range(n)])
    return scores, matrices


def truth(canonical, basis, scores, matrices):
    """(n, 478, 2): the face with these expressions, seen by a pinhole camera at these poses."""
    centre = canonical[list(STABLE_POINTS)].mean(0)
    out = []
    for s, m in zip(scores[:, [JAW, SMILE, BLINK]], matrices):
        depth, a = -m[2, 3], -math.atan2(m[1, 0], m[1, 1])  # roll as seen in the image
        rot = 40 / depth * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        shape = canonical + np.tensordot(s, basis, 1)
        out.append((shape - centre) @ rot.T + centre + 60 * np.array([m[0, 3], -m[1, 3]]) / depth)
    return np.stack(out)


def test_fit_recovers_a_known_map_and_clamps_what_it_never_saw():
    canonical, basis = known_map()
    scores, matrices = frames(150, seed=0)
    model = ex.fit(truth(canonical, basis, scores, matrices), scores, matrices, canonical, neutral_index=0)
    assert model.facts["heldout_median_px"] < 0.05 and model.facts["components"] >= 3
    mean = ex.mean_pose(matrices)  # fit takes poses relative to the mean of its frames
    # New expressions and poses inside the range seen: reconstructed.
    new_scores, new_matrices = frames(20, seed=1, k=0.8)
    pred = np.stack([model.predict(s, ex.head_pose(m, mean)) for s, m in zip(new_scores, new_matrices)])
    assert np.abs(pred - truth(canonical, basis, new_scores, new_matrices)).max() < 0.05
    # Out of range: clipped to the edge of what it saw, never extrapolated.
    s = np.zeros(52)
    s[JAW] = 1.0  # trained up to ~0.7
    edge = s.copy()
    edge[JAW] = model.arrays["score_hi"][JAW]
    assert np.allclose(model.predict(s), model.predict(edge))
    far = ex.head_pose(pose_matrix(roll=40, yaw=30), mean)  # rolls of -8..8 and no yaw in training
    edge_pose = np.clip(far, model.arrays["pose_lo"], model.arrays["pose_hi"])
    assert np.allclose(model.predict(s, far), model.predict(s, edge_pose))
    # Every score at once (never seen together) stays nearer the persona's range than
    # the linear sum would put it.
    linear = canonical + np.tensordot(model.arrays["score_hi"][[JAW, SMILE, BLINK]], basis, 1)
    got = ex.aligned_shapes(model.predict(np.ones(52))[None], canonical)[0]
    assert np.abs(got - canonical).max() < np.abs(linear - canonical).max()


def test_each_half_of_the_face_follows_its_own_scores_only():
    # The persona glanced aside whenever she opened her jaw: eyeLookInLeft went with
    # jawOpen in every frame, though only the jaw moved her mouth.
    canonical, basis = known_map()
    scores, matrices = frames(150, seed=0)
    look = BLENDSHAPE_NAMES.index("eyeLookInLeft")
    assert look in ex.GAZE_SCORES and BLENDSHAPE_NAMES[ex.GAZE_SCORES[0]] == "eyeLookDownLeft"
    scores[:, look] = scores[:, JAW]
    seen = truth(canonical, basis, scores, matrices)
    lower = ex.halves(canonical)[1][0]
    glance = np.zeros(52)
    glance[look] = 0.5
    moved = {}
    for split in (True, False):
        model = ex.fit(seen, scores, matrices, canonical, neutral_index=0, split=split)
        assert model.facts["split"] is split and model.facts["heldout_median_px"] < 0.05
        moved[split] = np.abs(model.predict(glance) - model.predict(np.zeros(52)))[lower].max()
    assert moved[True] < 1e-6  # a user's glance leaves the persona's mouth alone
    assert moved[False] > 1.0  # one ridge over all the scores took the glance for half the jaw


def test_the_personas_neutral_gaze_is_where_it_looked_most():
    canonical, basis = known_map()
    scores, matrices = frames(60, seed=0)
    rng = np.random.default_rng(1)
    gaze = list(ex.GAZE_SCORES)
    scores[:, gaze] = rng.uniform(0.0, 0.2, (60, len(gaze)))
    scores[7, gaze] = 0.9  # the neutral frame caught a glance
    model = ex.fit(truth(canonical, basis, scores, matrices), scores, matrices, canonical, neutral_index=7)
    assert np.allclose(model.neutral_scores[gaze], np.median(scores[:, gaze], 0), atol=1e-6)
    rest = [i for i in range(52) if i not in gaze]
    assert np.allclose(model.neutral_scores[rest], scores[7, rest], atol=1e-6)  # the rest: the neutral frame's


def test_the_users_neutral_maps_to_the_personas_neutral(expression_persona):
    _, model = expression_persona
    user_neutral = np.full(52, 0.3)
    m = pose_matrix(yaw=20, depth=60, tx=5)  # another person, further away, off to one side
    at_rest = model.drive(user_neutral, m, user_neutral, m)
    assert np.allclose(at_rest, model.predict(model.neutral_scores, ex.NEUTRAL_POSE), atol=1e-4)
    more = user_neutral.copy()
    more[JAW] += 0.2
    want = model.neutral_scores.copy()
    want[JAW] += 0.2
    assert np.allclose(model.drive(more, m, user_neutral, m), model.predict(want), atol=1e-4)


def eyes(u_right: float, u_left: float, lift: float = 0.0) -> np.ndarray:
    """(478, 2) points: two eyes 40 px wide, their corners level, each iris (centre and
    ring) at ``u`` of the way from its inner corner to its outer one, ``lift`` px above
    the corners' line."""
    p = np.zeros((478, 2))
    for (centre, ring, outer, inner), u, x_inner, x_outer in zip(ex.IRISES, (u_right, u_left),
                                                                 (90.0, 110.0), (50.0, 150.0)):
        p[inner], p[outer] = (x_inner, 100.0), (x_outer, 100.0)
        at = np.array([x_inner + u * (x_outer - x_inner), 100.0 - lift])
        p[list(ring)] = at + np.array([[0, 0], [6, 0], [0, -6], [-6, 0], [0, 6]])
        assert centre == ring[0]
    return p


def test_gaze_is_where_the_irises_sit_between_the_corners():
    assert np.allclose(ex.gaze(eyes(0.5, 0.5)), [0.0, 0.5])  # straight ahead, the irises centred
    assert np.allclose(ex.gaze(eyes(0.4, 0.4)), [0.0, 0.4])  # turned in (a near thing), not aside
    assert np.allclose(ex.gaze(eyes(0.7, 0.3)), [0.2, 0.5])  # to the face's right
    assert np.allclose(ex.gaze(eyes(0.7, 0.3, lift=5) * 3 + 11), [0.2, 0.5])  # up a little, bigger, moved
    # look() moves only the irises, along their eyes, to the gaze asked for.
    before = eyes(0.45, 0.35, lift=3)
    after = ex.look(before, [-0.1, 0.55])
    assert np.allclose(ex.gaze(after), [-0.1, 0.55], atol=1e-6)
    iris = [i for _, ring, _, _ in ex.IRISES for i in ring]
    rest = np.setdiff1d(np.arange(478), iris)
    assert np.array_equal(after[rest], before[rest].astype(np.float32))
    assert np.allclose(after[iris, 1], before[iris, 1])  # the irises' height stays
    ring = list(ex.IRISES[0][1])
    assert np.allclose(after[ring] - after[ring[0]], before[ring] - before[ring[0]], atol=1e-4)  # each moved whole


def test_a_driven_persona_looks_where_the_user_looks_within_what_it_showed():
    canonical, basis = known_map()
    scores, matrices = frames(80, seed=0)
    seen = truth(canonical, basis, scores, matrices)
    rng = np.random.default_rng(2)
    for k, frame in enumerate(seen):  # where the persona looked: side -0.1..0.05, spread 0.38..0.46
        frame[:] = ex.look(frame, [rng.uniform(-0.1, 0.05), rng.uniform(0.38, 0.46)])
    model = ex.fit(seen, scores, matrices, canonical, neutral_index=0)
    want = np.percentile([ex.gaze(f) for f in seen], ex.GAZE_PERCENTILES, axis=0).T
    assert np.allclose(model.gaze_range, want, atol=1e-4)
    assert -0.1 <= model.gaze_range[0, 0] < model.gaze_range[0, 1] <= 0.05
    m = pose_matrix()
    user = np.zeros(52)
    plain = model.drive(user, m, user, m)
    inside = model.drive(user, m, user, m, user_gaze=np.array([0.02, 0.4]))
    assert np.allclose(ex.gaze(inside), [0.02, 0.4], atol=1e-5)
    iris = [i for _, ring, _, _ in ex.IRISES for i in ring]
    rest = np.setdiff1d(np.arange(478), iris)
    assert np.allclose(inside[rest], plain[rest])  # only the irises moved
    # A glance further than the persona ever looked, eyes less turned in than hers: clamped.
    far = model.drive(user, m, user, m, user_gaze=np.array([0.3, 0.55]))
    assert np.allclose(ex.gaze(far), model.gaze_range[:, 1], atol=1e-5)
    assert np.allclose(model.drive(user, m, user, m, user_gaze=np.array([np.nan, 0.5])), plain)  # no reading: as fitted
    # A model fitted before the range was recorded draws the irises where its scores put them.
    older = ex.ExpressionModel(model.arrays, {k: v for k, v in model.facts.items() if k != "gaze_range"})
    assert older.gaze_range is None
    assert np.allclose(older.drive(user, m, user, m, user_gaze=np.array([0.02, 0.4])), plain)


@pytest.mark.parametrize("bad", [[0.1, 0.2], [[0.1, 0.0], [0.4, 0.5]], [[0, 1], [0, 2]], "wide", [[0, None], [0, 1]]])
def test_a_bad_gaze_range_is_a_corrupt_persona(expression_persona, tmp_path, bad):
    folder, _ = expression_persona
    broken = tmp_path / "tinyg"
    shutil.copytree(folder, broken)
    meta = json.loads((broken / "persona.json").read_text())
    meta["expression"]["gaze_range"] = bad
    (broken / "persona.json").write_text(json.dumps(meta))
    with pytest.raises(UserError) as e:
        pf.read_persona(broken)
    assert "is corrupt" in str(e.value) and "gaze_range" in str(e.value) and "\n" not in str(e.value)


# -- stored in the persona ---------------------------------------------------------

def test_model_round_trips_through_folder_and_archive(expression_persona, tmp_path):
    folder, model = expression_persona
    again = ex.ExpressionModel.from_bytes(model.to_bytes())
    assert all(np.array_equal(again.arrays[k], model.arrays[k]) for k in ex.ARRAYS)
    p = pf.read_persona(folder)
    assert p.meta["format_version"] == 2 and p.meta["expression"]["file"] == pf.EXPRESSION_FILE
    assert p.meta["expression"]["heldout_median_px"] == model.facts["heldout_median_px"]
    assert all(np.array_equal(p.expression.arrays[k], model.arrays[k]) for k in ex.ARRAYS)
    archive = pf.write_archive(folder, tmp_path / "tinyx.f2f")
    installed = pf.PersonaStore().import_archive(archive)
    assert (installed.path / pf.EXPRESSION_FILE).is_file()
    assert all(np.array_equal(installed.expression.arrays[k], model.arrays[k]) for k in ex.ARRAYS)


def _npz(arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _broken(model, how):
    a = {k: v.copy() for k, v in model.arrays.items()}
    if how == "shape":
        a["basis"] = a["basis"][:, :100]
    elif how == "nan":
        a["weights"][3, 0] = np.nan
    elif how == "missing":
        del a["pose_map"]
    elif how == "pickled":
        a["bias"] = np.array([{"evil": 1}], dtype=object)
    elif how == "garbage":
        return b"not a zip at all"
    return _npz(a)


@pytest.mark.parametrize("how, words", [
    ("shape", "basis must have shape"), ("nan", "weights has non-finite values"),
    ("missing", "missing ['pose_map']"), ("pickled", "not a readable .npz"), ("garbage", "not a readable .npz"),
])
def test_a_corrupt_model_is_refused_in_one_line_and_nothing_is_installed(expression_persona, tmp_path,
                                                                         how, words):
    folder, model = expression_persona
    files = pf.read_files(folder)
    files[pf.EXPRESSION_FILE] = _broken(model, how)
    archive = pf.write_archive(files, tmp_path / "bad.f2f")
    store = pf.PersonaStore()
    with pytest.raises(UserError) as e:
        store.import_archive(archive)
    assert "is corrupt" in str(e.value) and words in str(e.value) and "\n" not in str(e.value)
    assert store.names() == [] and not any(store.root.iterdir() if store.root.exists() else [])
    # An installed folder whose model went bad later is refused on load the same way.
    bad = tmp_path / "tinyx"
    shutil.copytree(folder, bad)
    (bad / pf.EXPRESSION_FILE).write_bytes(files[pf.EXPRESSION_FILE])
    with pytest.raises(UserError, match="is corrupt: expression.npz"):
        pf.read_persona(bad)


def test_import_of_a_corrupt_model_from_the_command_line(expression_persona, tmp_path):
    folder, model = expression_persona
    files = pf.read_files(folder)
    files[pf.EXPRESSION_FILE] = _broken(model, "nan")
    archive = pf.write_archive(files, tmp_path / "bad.f2f")
    one_line_error(run_cli("personas", "import", archive), "is corrupt", "expression.npz")
    del files[pf.EXPRESSION_FILE]  # listed in persona.json, but not there
    one_line_error(run_cli("personas", "import", pf.write_archive(files, tmp_path / "gone.f2f")),
                   "expression.npz is missing")
    assert pf.PersonaStore().names() == []


def version_1(tiny_persona, tmp_path, **extra):
    """The tiny persona's folder, its persona.json written as format version 1."""
    folder = tmp_path / "old"
    shutil.copytree(tiny_persona[0], folder)
    meta = json.loads((folder / pf.PERSONA_JSON).read_text())
    meta.update(format_version=1, **extra)
    (folder / pf.PERSONA_JSON).write_text(json.dumps(meta))
    return folder


def test_a_version_1_persona_loads_and_falls_back_to_transfer_with_one_note(tiny_persona, talking_head,
                                                                           tmp_path, caplog):
    from f2f_cam.config import PipelineConfig
    from f2f_cam.pipeline import Pipeline, stages_for
    from f2f_cam.sources import VideoFileSource

    old = pf.read_persona(version_1(tiny_persona, tmp_path))
    assert old.meta["format_version"] == 1 and old.expression is None
    cfg = PipelineConfig(layout="landmarks", retarget="expression")
    caplog.set_level(logging.WARNING, logger="f2f_cam.pipeline")
    with Pipeline(cfg, stages_for("landmarks", old, (64, 64), cfg=cfg)) as pipe, \
            VideoFileSource(talking_head[0]) as src:
        assert pipe.retarget_mode == "transfer" and not pipe.stages.blendshapes
        for i, (t, frame) in zip(range(5), src):
            pipe(frame, t)
            pipe.set_retarget("expression")  # again and again: one note
        assert pipe.face_found and pipe.retarget_mode == "transfer"
    notes = [r.getMessage() for r in caplog.records if "no expression model" in r.getMessage()]
    assert len(notes) == 1 and "'tiny'" in notes[0] and "transfer" in notes[0]


def test_version_1_with_an_expression_model_is_corrupt(tiny_persona, tmp_path):
    folder = version_1(tiny_persona, tmp_path, expression={"file": pf.EXPRESSION_FILE})
    with pytest.raises(UserError, match="is corrupt: expression must be"):
        pf.read_persona(folder)


# -- the blendshape path, through the real detector -----------------------------------

def test_expression_retargeting_follows_the_mouth_and_keeps_the_personas_shape(expression_persona,
                                                                              talking_head):
    from f2f_cam.landmarks import LandmarkDetector
    from f2f_cam.retarget import Retargeter
    from f2f_cam.sources import VideoFileSource
    from trainers.dataset import mouth_opening

    persona = pf.read_persona(expression_persona[0])
    path, motions = talking_head
    r = Retargeter(persona, "expression")
    assert r.mode_used == "expression"
    with VideoFileSource(path) as src, LandmarkDetector(mode="video", blendshapes=True) as det:
        size = src.size
        faces = [det(frame, int(t * 1000)) for t, frame in src]
    pairs = [(f, m) for f, m in zip(faces, motions) if f is not None]
    points = [r(f, size) for f, _ in pairs]
    assert all(p.shape == (478, 2) and p.dtype == np.float32 for p in points)
    assert np.all(np.abs(np.stack(points)) < 2 * TINY_SIZE)
    assert np.corrcoef([mouth_opening(p) for p in points], [m.mouth for _, m in pairs])[0, 1] > 0.8
    # The driver's face shape does not leak in: a wider face with the same expression
    # and pose draws the same persona face.
    f = pairs[5][0]
    wide = Face(f.points * np.array([1.3, 1.0, 1.0], np.float32), f.blendshapes, f.pose)
    iris = [i for _, ring, _, _ in ex.IRISES for i in ring]
    rest = np.setdiff1d(np.arange(478), iris)
    assert np.allclose(r(wide, size)[rest], r(f, size)[rest])
    # The irises' place in the eyes is read from the user's points: a stretch moves it
    # a little (an iris off its eye's axis projects differently), within 0.1 px here.
    assert np.abs(r(wide, size)[iris] - r(f, size)[iris]).max() < 0.1
    # Calibrated on a face, that face is the persona's neutral face at its mean pose,
    # looking where the user looks (within the persona's range).
    r.calibrate(f)
    model = persona.expression
    look = np.clip(ex.gaze(f.points), model.gaze_range[:, 0], model.gaze_range[:, 1])
    assert np.allclose(r(f, size), ex.look(model.predict(model.neutral_scores), look), atol=1e-3)
    assert np.allclose(ex.gaze(r(f, size)), look, atol=1e-5)


def test_video_with_expression_retargeting(expression_persona, talking_head, tmp_path):
    pf.PersonaStore().install_folder(expression_persona[0])
    out = tmp_path / "out.mp4"
    proc = run_cli("video", talking_head[0], "-o", out, "--persona", "tinyx", "--retarget", "expression",
                   "--layout", "side-by-side", "--quiet")
    assert proc.returncode == 0, proc.stderr
    import av

    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == len(talking_head[1])
    # The sketch panel (the middle third) shows a drawn face in every frame.
    w = frames[0].shape[1]
    assert all(f[:, w // 3: 2 * w // 3].max() > 100 for f in frames)


def test_fit_expression_gives_a_version_1_persona_its_model_from_its_training_video(tiny_persona, talking_head,
                                                                                   silent_head, tmp_path):
    from f2f_cam.landmarks import sha256_file

    video = talking_head[0]
    old = version_1(tiny_persona, tmp_path, training={"video_sha256": sha256_file(video), "frames": 20})
    store = pf.PersonaStore()
    store.install_folder(old)
    # Another video than the one it was trained on: refused, nothing changed.
    one_line_error(run_cli("personas", "fit-expression", "tiny", str(silent_head)), "is not the video persona 'tiny'")
    one_line_error(run_cli("personas", "fit-expression", "tiny", str(tmp_path / "nope.mp4")), "no such file")
    assert store.get("tiny").expression is None
    r = run_cli("personas", "fit-expression", "tiny", str(video), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "now has an expression model" in r.stdout and "px median error" in r.stdout
    p = store.get("tiny")
    assert p.meta["format_version"] == pf.FORMAT_VERSION and p.expression is not None
    assert p.expression.facts["frames"] == 20
    # Its own neutral scores drive it to (nearly) its neutral face.
    neutral = p.expression.drive(p.expression.neutral_scores, np.eye(4), p.expression.neutral_scores, np.eye(4))
    assert np.abs(neutral - p.neutral).max() < 0.1 * TINY_SIZE
    one_line_error(run_cli("personas", "fit-expression", "tiny", str(video)), "already has an expression model")
