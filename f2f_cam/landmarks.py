"""Face landmarks: the MediaPipe Face Landmarker (Tasks API) as one pipeline stage.

``LandmarkDetector(mode="video")(frame, t_ms) -> Face | None`` with the 478 points in
pixel coordinates of the frame; the largest face wins when there are several.

In video mode one face is tracked (MediaPipe runs its face detector only while it has
none: ~4 ms a frame saved on a laptop CPU), and MediaPipe's face detector alone (~5 ms)
checks when a face is taken, and once a second after that, that no clearly larger face
is in view; if one is, the tracker is moved onto it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from f2f_cam import paths
from f2f_cam.atomic import atomic_path
from f2f_cam.errors import UserError

log = logging.getLogger(__name__)

MODEL_FILE = "face_landmarker.task"
# The official bundle (float16, version 1); see models/face_landmarker.PROVENANCE.md.
MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
    "face_landmarker/float16/1/face_landmarker.task"
)
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_SIZE = 3_758_596
NUM_POINTS = 478

MODES = ("video", "image")
CHECK_EVERY = 30  # frames between checks for a larger face than the one tracked (1 s at 30 fps)
TRACK_STEP_MS = 10_000  # what MediaPipe is told passed between two tracked frames (see detect_all)
SWITCH_AREA = 1.3  # a face this much larger (box area) than the one tracked takes over


# MediaPipe's 52 blendshape scores, in the order the model gives them (ARKit's names).
BLENDSHAPE_NAMES = ("_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft",
    "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight")
NUM_BLENDSHAPES = len(BLENDSHAPE_NAMES)  # 52


@dataclass(frozen=True)
class Face:
    """One face: ``points`` (478, 3) float32, x and y in pixels of the frame, z in the
    same scale as x (MediaPipe's z times the frame width; smaller is nearer).

    With ``LandmarkDetector(blendshapes=True)`` also ``blendshapes`` (52,) float32,
    MediaPipe's expression scores in [0, 1] in ``BLENDSHAPE_NAMES`` order, and ``pose``
    (4, 4) float32, its facial transformation matrix (the canonical face model ->
    this face, in centimetres); None otherwise.
    """

    points: np.ndarray
    blendshapes: np.ndarray | None = None
    pose: np.ndarray | None = None

    @property
    def xy(self) -> np.ndarray:
        """(478, 2) float32 pixel coordinates."""
        return self.points[:, :2]

    @property
    def area(self) -> float:
        """Its bounding box's area in px^2: the largest face is the person at the camera."""
        return float(np.prod(self.xy.max(axis=0) - self.xy.min(axis=0)))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Fetch the model to ``dest`` atomically, checking size and SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        if sha256_file(tmp) != MODEL_SHA256:
            raise UserError(
                f"downloaded {MODEL_FILE} has the wrong SHA-256; try again later or "
                f"copy the official file to {dest}"
            )


def find_model(download: bool = True) -> Path:
    """Path of a good ``face_landmarker.task``: the bundled one, a cached one, or a
    fresh download from the official URL (checked against its SHA-256)."""
    bundled = paths.bundled_models_dir() / MODEL_FILE
    cached = paths.cache_dir() / MODEL_FILE
    for candidate in (bundled, cached):
        if candidate.is_file() and candidate.stat().st_size == MODEL_SIZE:
            return candidate
    if not download:
        raise UserError(f"face landmark model missing: {bundled}; reinstall f2f-cam")
    log.warning("face landmark model missing at %s; downloading %s", bundled, MODEL_URL)
    try:
        _download(MODEL_URL, cached)
    except OSError as e:  # URLError is an OSError: offline, DNS, refused, timeout
        raise UserError(
            f"face landmark model missing ({bundled}) and the download failed ({e}); "
            f"reinstall f2f-cam, or download {MODEL_URL} to {cached}"
        ) from e
    return cached


@contextlib.contextmanager
def _native_stderr_quiet():
    """Silence stderr at the file-descriptor level unless debug logging is on.

    MediaPipe's C++ side logs INFO/WARNING lines straight to fd 2 when a landmarker is
    created and on its first frame, and no environment variable turns that off in
    mediapipe 1.x; the CLI keeps stderr for its own one-line messages.
    """
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LandmarkDetector:
    """MediaPipe Face Landmarker: RGB uint8 (H, W, 3) frame -> ``Face`` or None.

    ``mode="video"`` tracks the largest face across frames and needs increasing
    timestamps (ms); ``mode="image"`` treats every frame on its own (stills, image
    folders) and finds up to ``max_faces``. ``track_one=False`` in video mode looks for
    up to ``max_faces`` on every frame (MediaPipe's detector runs each time), as before
    tracking one face: ``bench --quality`` measures with it, an instrument that shares
    nothing with the way the live path finds faces.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        mode: str = "video",
        max_faces: int = 4,
        min_confidence: float = 0.5,
        blendshapes: bool = False,
        track_one: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown landmark mode {mode!r}; choose one of: {', '.join(MODES)}")
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(model_path) if model_path else find_model()
        video = mode == "video"
        one = video and track_one
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            # Video: one face, tracked; the finder below makes it the largest. Room for
            # more would run MediaPipe's detector on every frame, looking for them.
            num_faces=1 if one else max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=blendshapes,  # expression scores: a small second model (~1 ms)
            output_facial_transformation_matrixes=blendshapes,
        )
        self.mode = mode
        self._one = one  # one face tracked: told frames far apart (detect_all)
        self._finder = None
        with _native_stderr_quiet():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
            if one and max_faces > 1:
                with zipfile.ZipFile(path) as bundle:  # the landmarker's own face detector
                    detector = bundle.read("face_detector.tflite")
                self._finder = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
                    base_options=BaseOptions(model_asset_buffer=detector),
                    running_mode=vision.RunningMode.IMAGE, min_detection_confidence=min_confidence))
        self._last_t = -1
        self._calls = 0
        self._tracked = False  # whether the last frame had a face
        self._finder_used = False
        self._since_check = 0
        self._due: tuple | None = None  # (frame, face) to check for a larger face
        self._switch_to: tuple | None = None  # the box of a larger face to move to

    def __call__(self, frame: np.ndarray, t_ms: int | None = None) -> Face | None:
        """The largest face in the frame (the person at the camera), or None."""
        if self._finder is None:
            return max(self.detect_all(frame, t_ms), key=lambda f: f.area, default=None)
        if self._due is not None:
            self.between_frames()  # nobody called it between frames: the check runs now
        face = None
        if self._switch_to is not None:
            face, self._switch_to = self._moved_to(frame, self._switch_to), None
        if face is None:
            faces = self.detect_all(frame, t_ms)
            face = faces[0] if faces else None
        self._since_check += 1
        if face is not None and not self._tracked:  # a new face: checked at once
            self._since_check = 0
            larger = self._larger_face(frame, face)
            if larger is not None:
                face = self._moved_to(frame, larger) or face
        elif face is not None and self._since_check >= CHECK_EVERY:
            self._since_check = 0
            self._due = (frame, face)  # checked in ``between_frames``, off the frame's path
        self._tracked = face is not None
        return face

    def between_frames(self) -> None:
        """The periodic check for a larger face, when one is due: call it between frames
        (``Pipeline.between_frames``, after a frame is handed on), else the next call runs
        it. A larger face found is taken on the next frame."""
        if self._due is not None:
            (frame, face), self._due = self._due, None
            self._switch_to = self._larger_face(frame, face)

    def _larger_face(self, frame: np.ndarray, face: Face) -> tuple | None:
        """The box (x, y, w, h) of a face clearly larger than ``face`` in the frame, or None."""
        boxes = self.find_faces(frame)
        x, y = face.xy.mean(axis=0)
        mine = [b for b in boxes if b[0] <= x <= b[0] + b[2] and b[1] <= y <= b[1] + b[3]]
        largest = max(boxes, key=lambda b: b[2] * b[3], default=None)
        if not mine or largest is None or largest[2] * largest[3] <= SWITCH_AREA * mine[0][2] * mine[0][3]:
            return None
        return largest

    def _moved_to(self, frame: np.ndarray, box: tuple) -> Face | None:
        """The face in ``box``, the tracker moved onto it: all but the box (enlarged) is
        hidden, so the tracker loses its face on the first masked call and its detector
        finds the one left on the second. None if it does not (the face went)."""
        bx, by, bw, bh = box
        h, w = frame.shape[:2]
        x0, y0 = max(int(bx - 0.5 * bw), 0), max(int(by - 0.7 * bh), 0)
        x1, y1 = min(int(bx + 1.5 * bw), w), min(int(by + 1.5 * bh), h)
        masked = np.zeros_like(frame)
        masked[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
        for _ in range(2):
            found = self.detect_all(masked)  # tracking: told its own times (detect_all)
            if found and bx <= found[0].xy[:, 0].mean() <= bx + bw and by <= found[0].xy[:, 1].mean() <= by + bh:
                return found[0]
        log.debug("could not move the face tracker to the larger face at %s", box)
        return None

    def find_faces(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Boxes (x, y, w, h) in pixels of every face the face detector alone finds in
        the frame (video mode only: the landmarker's own detector). On the whole frame:
        a smaller copy is no faster (MediaPipe scales it to 128 px itself)."""
        import mediapipe as mp

        with _native_stderr_quiet() if not self._finder_used else contextlib.nullcontext():
            result = self._finder.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(frame)))
        self._finder_used = True
        return [(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height)
                for d in result.detections]

    def detect_all(self, frame: np.ndarray, t_ms: int | None = None) -> list[Face]:
        """Every face found (up to ``max_faces``; in video mode the one tracked), in
        MediaPipe's order."""
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("LandmarkDetector is closed")
        h, w = frame.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        # The first call still logs from C++ (delegate set-up); later ones do not.
        quiet = _native_stderr_quiet() if self._calls == 0 else contextlib.nullcontext()
        self._calls += 1
        with quiet:
            if self._one:
                # Tracking one face, MediaPipe also smooths its landmarks over time, which
                # lags them (jawOpen and eyeBlink by about a frame, driving the persona:
                # expr_r 0.82 -> 0.77 on d6). Frames TRACK_STEP_MS apart leave that filter
                # nothing to smooth, and the tracking as it is; the pipeline smooths.
                t = self._last_t = self._last_t + TRACK_STEP_MS
                result = self._landmarker.detect_for_video(image, t)
            elif self.mode == "video":
                # VIDEO mode rejects timestamps that do not increase.
                t = self._last_t + 33 if t_ms is None else int(t_ms)
                t = max(t, self._last_t + 1)
                self._last_t = t
                result = self._landmarker.detect_for_video(image, t)
            else:
                result = self._landmarker.detect(image)
        scores = result.face_blendshapes or [None] * len(result.face_landmarks)
        poses = result.facial_transformation_matrixes or [None] * len(result.face_landmarks)
        return [
            Face(points=np.array([(p.x * w, p.y * h, p.z * w) for p in lms], dtype=np.float32),
                 blendshapes=None if bs is None else np.array([c.score for c in bs], dtype=np.float32),
                 pose=None if m is None else np.asarray(m, dtype=np.float32).reshape(4, 4))
            for lms, bs, m in zip(result.face_landmarks, scores, poses)
        ]

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
        if self._finder is not None:
            with _native_stderr_quiet():  # it logs from C++ as it goes
                self._finder.close()
            self._finder = None

    def __enter__(self) -> "LandmarkDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
