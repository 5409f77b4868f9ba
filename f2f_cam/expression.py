"""The expression model: a user's expression and head pose -> the persona's own landmarks.

Fitted at export from the persona's training frames, stored in the persona
(``expression.npz``), used by ``Retargeter(mode="expression")``. numpy only.

Shape: every training frame's landmarks are similarity-aligned (stable points) onto
the persona's canonical face, so what is left is expression and out-of-plane head
turn. For each half of the face (above and below the nose tip), a ridge regression
maps that half's blendshape scores (eyes and brows; mouth, jaw and cheeks) and yaw
and pitch to the PCA coefficients of that half's offset from the mean shape; the
regularisation is picked by the error on the last frames, held out. Expressions the persona never
made are clamped, not extrapolated: the input scores are clipped to the per-score
range seen in training, the output coefficients to the per-component range seen.

Pose: a face's 4x4 transformation matrix relative to a neutral one becomes six
numbers (``POSE_NAMES``): yaw, pitch, roll in degrees (roll as seen in the image),
the apparent scale, and the shift in face widths. At run time the user's pose
relative to their neutral is clamped into the range of the persona's poses relative
to its mean; yaw and pitch feed the regression, and all six, through a linear map
fitted on the persona's frames (it knows what a turn does to the face's place in the
image), give the roll, scale and shift that put the predicted shape in its image.

``fit`` was measured against nearest-frames blending (k = 1..20, inverse-distance
weights, same inputs) on a real clip (d6, every third frame, the last 20 % held out):
aligned-shape error median 1.9 px for the ridge against 3.2 px for the best blend.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np

from f2f_cam.geometry import STABLE_POINTS, apply_affine, fit_similarity

NUM_POINTS = 478
NUM_SCORES = 52  # MediaPipe's blendshapes, in f2f_cam.landmarks.BLENDSHAPE_NAMES order
POSE_NAMES = ("yaw", "pitch", "roll", "scale", "shift_x", "shift_y")  # deg, deg, deg, ratio, face widths x2
REGRESSED_POSE = 2  # yaw and pitch change the 2-D shape, so they are regression inputs
NUM_FEATURES = NUM_SCORES + REGRESSED_POSE
# Width of MediaPipe's canonical face model between points 234 and 454 (cm): the
# matrix's translation is in cm, so this turns a shift into face widths. Measured
# here as face width px x depth / focal length (63 deg vertical field of view, what
# MediaPipe's geometry pipeline assumes) on two real clips: 15.3 and 14.8 cm.
FACE_WIDTH_CM = 15.0
# The share of a face's angle off the optical axis that MediaPipe's matrix shows as a head
# turn (yaw, pitch) for a face that looks the same anywhere in the image: fitted on
# bench --quality's pose grid (the generated driver shifted by +-20 % of the frame,
# angles off the axis up to 17 deg): 0.24 and 0.36 (a line through 140 faces).
VIEW_GAIN = (0.24, 0.36)
# ... and tilted (roll) by a share of the horizontal angle: -0.12 of it, fitted on the
# same driver shifted by 0, +-10 and +-20 % in x and y (the roll it read, up to 2.2 deg
# at 17 deg off the axis, rms 1.5 -> 0.2 deg).
VIEW_ROLL_GAIN = -0.12
# The eight eyeLook{Down,In,Out,Up}{Left,Right} scores (f2f_cam.landmarks.BLENDSHAPE_NAMES
# 11-18): where the eyes look. The persona's neutral gaze is their median over its
# frames, not its neutral frame's (see ``fit``).
GAZE_SCORES = tuple(range(11, 19))
# Where the eyes look (``gaze``): each iris's place between its eye's inner (0) and outer
# (1) corner, u_right and u_left, as two numbers: "side", (u_right - u_left) / 2, 0 for
# irises set alike in both eyes (looking along the face's own axis), positive towards
# the face's right; and "spread", (u_right + u_left) / 2, 0.5 for irises in the middle
# of both eyes, less for eyes turned in (near things: d6, recorded looking at a phone
# held close, 0.40; four other people looking at their camera, 0.52-0.53).
# Per eye: the iris centre, its ring, the outer and the inner corner.
IRISES = ((468, range(468, 473), 33, 133), (473, range(473, 478), 263, 362))
_CENTRES, _OUTERS, _INNERS = (np.array([eye[k] for eye in IRISES]) for k in (0, 2, 3))
_RINGS = np.array([list(eye[1]) for eye in IRISES])  # (2, 5)
GAZE_PERCENTILES = (1.0, 99.0)  # the range of gaze a persona is driven within: what its frames show
# The scores that move each half of the face (``BLENDSHAPE_NAMES`` indices): the upper
# half (eyes, brows, the face above the nose tip) by the brow, eye, cheek-squint and
# sneer scores; the lower half (mouth, jaw, cheeks, the nose below its tip) by the
# cheek, jaw, mouth and sneer scores. Both also by yaw and pitch. See ``_build``.
UPPER_SCORES = (*range(1, 6), 7, 8, *range(9, 23), 50, 51)
LOWER_SCORES = (6, 7, 8, *range(23, 52))
SPLIT_POINT = 1  # the nose tip: points of the mean face above it are the upper half
ALPHAS = tuple(10.0 ** e for e in np.arange(-2, 4.01, 0.5))  # ridge strengths tried (standardised inputs)
MAX_COMPONENTS = 48
EXPLAINED = 0.999  # PCA keeps the components that explain this much of the offsets' variance
ARRAYS = {  # name -> shape (K: the number of PCA components), all float32
    "mean_shape": (NUM_POINTS, 2),  # the aligned mean face, persona image px
    "basis": ("K", NUM_POINTS * 2),  # unit PCA directions of the offsets from it
    "coef_lo": ("K",), "coef_hi": ("K",),  # the range of each coefficient seen in training
    "weights": (NUM_FEATURES, "K"), "bias": ("K",),  # [scores, yaw, pitch] -> coefficients
    "score_lo": (NUM_SCORES,), "score_hi": (NUM_SCORES,),  # each score's range seen
    "neutral_scores": (NUM_SCORES,),  # the persona's neutral frame's scores
    "pose_lo": (len(POSE_NAMES),), "pose_hi": (len(POSE_NAMES),),  # its poses' range, relative to its mean
    "placement": (3,),  # the canonical face's centre x, y and width, persona image px
    "pose_map": (len(POSE_NAMES) + 1, 4),  # [pose, 1] -> where: angle deg, scale, shift x, y (face widths)
}


class ModelError(ValueError):
    """The stored arrays do not make a model (wrong names, shapes, or values)."""


# -- head pose --------------------------------------------------------------------

def _rotation(matrix: np.ndarray) -> np.ndarray:
    """The (3, 3) rotation of a pose (its top-left 3x3), made orthonormal (SVD)."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, np.float64)[:3, :3])
    r = u @ vt
    return r if np.linalg.det(r) > 0 else u @ np.diag([1, 1, -1]) @ vt


def _view_rotation(translation: np.ndarray) -> np.ndarray:
    """(3, 3): the turn that the landmarker reads into a face for its place in the frame.

    A face that looks the same in the image away from its centre comes back from
    MediaPipe's geometry turned towards the camera by a share (``VIEW_GAIN``) of the
    angle between the optical axis and the face (yaw then pitch, as ``head_pose``
    reads them), and tilted by a share of the horizontal angle (``VIEW_ROLL_GAIN``);
    this is that turn, from the matrix's translation."""
    u = -np.asarray(translation, np.float64)[:3]
    norm = np.linalg.norm(u)
    if norm < 1e-9 or u[2] <= 0:  # at the camera, or behind it: no face we would see
        return np.eye(3)
    u /= norm
    a = VIEW_GAIN[0] * math.atan2(u[0], u[2])
    b = VIEW_GAIN[1] * math.asin(float(np.clip(-u[1], -1, 1)))
    c = VIEW_ROLL_GAIN * math.atan2(u[0], u[2])
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _seen_rotation(matrix: np.ndarray) -> np.ndarray:
    """The head's rotation as the image shows it: its matrix's rotation without the
    turn towards the camera that its place in the frame adds (``_view_rotation``), so
    that moving in front of the camera does not read as a head turn."""
    m = np.asarray(matrix, np.float64)
    return _view_rotation(m[:3, 3]).T @ _rotation(m)


def _yaw_pitch(r: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch (deg) of a rotation R = Ry(yaw) Rx(pitch) Rz(roll)."""
    return (math.degrees(math.atan2(r[0, 2], r[2, 2])),
            math.degrees(math.asin(float(np.clip(-r[1, 2], -1, 1)))))


def head_pose(matrix: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(6,) pose of ``matrix`` relative to ``neutral`` (both MediaPipe 4x4 facial
    transformation matrices: canonical face model -> camera, cm, y up, the face at
    negative z): yaw, pitch, roll (deg; roll positive clockwise in the image), the
    apparent scale (neutral depth over depth), the shift in the image (in face widths
    at the neutral's distance; y down)."""
    m, n = np.asarray(matrix, np.float64), np.asarray(neutral, np.float64)
    r = _seen_rotation(n).T @ _seen_rotation(m)  # the turn in the head's own frame: R = Ry(yaw) Rx(pitch) Rz(roll)
    yaw, pitch = _yaw_pitch(r)
    roll = -math.degrees(math.atan2(r[1, 0], r[1, 1]))  # camera y is up, image y is down
    depth, depth0 = max(-m[2, 3], 1e-6), max(-n[2, 3], 1e-6)
    # Perspective: an image position is t_xy / depth; a face width there is FACE_WIDTH_CM / depth0.
    shift = (m[:2, 3] / depth - n[:2, 3] / depth0) * depth0 / FACE_WIDTH_CM
    return np.array([yaw, pitch, roll, depth0 / depth, shift[0], -shift[1]])


def turn(matrix: np.ndarray) -> np.ndarray:
    """(2,) yaw and pitch (deg) of a face as the image shows it (0, 0: facing the camera)."""
    return np.array(_yaw_pitch(_seen_rotation(matrix)))


def mean_pose(matrices: np.ndarray) -> np.ndarray:
    """(4, 4): the mean of (N, 4, 4) poses (rotations averaged, then made a rotation)."""
    m = np.asarray(matrices, np.float64)
    out = np.eye(4)
    out[:3, :3] = _rotation(m[:, :3, :3].mean(0))
    out[:3, 3] = m[:, :3, 3].mean(0)
    return out


NEUTRAL_POSE = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # head_pose(m, m): no turn, no move


# -- the model --------------------------------------------------------------------

@dataclass(frozen=True)
class ExpressionModel:
    """A persona's expression model: ``predict(scores, pose) -> (478, 2)`` persona image px.

    ``arrays`` (float32, shapes in ``ARRAYS``) are what ``expression.npz`` holds;
    ``facts`` (how it was fitted and how well it reconstructs held-out frames) go into
    persona.json. Built by ``fit``, read back by ``from_bytes``; checked either way.
    """

    arrays: dict
    facts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrays", check_arrays(self.arrays))
        object.__setattr__(self, "_gaze_range", _gaze_range(self.facts.get("gaze_range")))

    @property
    def gaze_range(self) -> np.ndarray | None:
        """(2, 2): the low and high of ``gaze``'s side and spread that the persona's frames
        show (their 1st and 99th percentiles); None for a model fitted before it was recorded."""
        return self._gaze_range

    @property
    def components(self) -> int:
        return len(self.arrays["bias"])

    @property
    def neutral_scores(self) -> np.ndarray:
        """(52,) the scores of the persona's neutral frame: what a user's neutral face maps to."""
        return self.arrays["neutral_scores"]

    def predict(self, scores: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
        """The persona's landmarks for these scores and this pose, clamped to its range.

        scores: (52,) blendshape scores as the persona would make them; pose: (6,) as
        ``head_pose`` gives it, relative to the persona's mean pose (None: the mean pose).
        Returns (478, 2) float32 persona image pixels.
        """
        a = self.arrays
        s = np.clip(np.asarray(scores, np.float64).reshape(NUM_SCORES), a["score_lo"], a["score_hi"])
        p = NEUTRAL_POSE if pose is None else np.asarray(pose, np.float64).reshape(len(POSE_NAMES))
        p = np.clip(p, a["pose_lo"], a["pose_hi"])
        coef = np.concatenate([s, p[:REGRESSED_POSE]]) @ a["weights"] + a["bias"]
        coef = np.clip(coef, a["coef_lo"], a["coef_hi"])  # only offsets it was seen to make
        shape = a["mean_shape"] + (coef @ a["basis"]).reshape(NUM_POINTS, 2)
        # The pose as the persona's image shows it (roll, scale, shift in 2-D), by the map
        # fitted on its frames: it includes what a turn does to the face's 2-D position.
        return place(shape, np.append(p, 1.0) @ a["pose_map"], a["placement"])

    def drive(self, scores: np.ndarray, matrix: np.ndarray, neutral_scores: np.ndarray,
              neutral_matrix: np.ndarray, smooth=None, user_gaze: np.ndarray | None = None) -> np.ndarray:
        """A user's face -> the persona's landmarks (478, 2), persona image px.

        The user's scores move the persona's neutral scores by as much as they differ
        from the user's own neutral ones; the user's head turn (yaw, pitch, roll of the
        4x4 pose relative to their neutral pose) turns the persona's head from its mean
        pose. The user's distance and position in the frame are not passed on: the
        persona stays at the size and place it was trained at, so any distance works.
        ``smooth``: ``(scores, pose) -> (scores, pose)`` applied to the user's scores and
        pose first (the pipeline's ``ExpressionSmoother``).
        ``user_gaze``: where the user looks (``gaze`` of their landmarks: side, spread).
        The persona's irises are then put there, within the range its frames show, instead
        of where the eye scores relative to the user's neutral face put them: a user who
        looks into the camera gets a persona who looks at the viewer, even one recorded
        looking at a phone held close (d6's irises sat 0.04-0.07 of an eye's width aside,
        driven, and turned in). A model without ``gaze_range`` (fitted before it was
        recorded) ignores it.
        """
        pose = head_pose(matrix, neutral_matrix)
        pose[3:] = NEUTRAL_POSE[3:]  # scale 1, no shift
        scores = np.asarray(scores, np.float64)
        if smooth is not None:
            scores, pose = smooth(scores, pose)
        shape = self.predict(self.neutral_scores + (scores - np.asarray(neutral_scores, np.float64)), pose)
        ranges = self._gaze_range
        if user_gaze is None or ranges is None or not np.isfinite(user_gaze).all():
            return shape
        return look(shape, np.clip(user_gaze, ranges[:, 0], ranges[:, 1]))

    def to_bytes(self) -> bytes:
        """``expression.npz``: plain float32 arrays (loads with ``allow_pickle=False``)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, facts: dict | None = None) -> "ExpressionModel":
        """Read ``expression.npz``'s bytes; ``ModelError`` when they are not a model."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except Exception as e:  # a damaged zip, a pickled array, not an npz at all
            raise ModelError(f"not a readable .npz ({type(e).__name__}: {e})") from None
        return cls(arrays, dict(facts or {}))


def gaze(points: np.ndarray) -> np.ndarray:
    """Where a face's eyes look, from its (478, 2+) landmarks: (side, spread), see
    ``IRISES``. In eye widths; a glance to a corner moves side by about 0.2-0.3."""
    u = _along(np.asarray(points), _CENTRES)
    return np.array([(u[0] - u[1]) / 2, (u[0] + u[1]) / 2])


def _along(points: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(2,) where the points ``at`` (one per eye) sit between its inner (0) and outer (1) corner."""
    inner = points[_INNERS, :2].astype(np.float64)
    axis = points[_OUTERS, :2] - inner
    return ((points[at, :2] - inner) * axis).sum(1) / np.maximum((axis * axis).sum(1), 1e-12)


def look(shape: np.ndarray, target) -> np.ndarray:
    """``shape`` (478, 2) with both irises moved along their eyes so that its ``gaze`` is
    ``target`` (side, spread); the eyelids and the irises' height stay."""
    out = np.array(shape, np.float32)
    side, spread = np.asarray(target, np.float64) - gaze(out)
    steps = np.array([spread + side, spread - side])  # per eye, along it
    out[_RINGS, :2] += (steps[:, None] * (out[_OUTERS, :2] - out[_INNERS, :2]))[:, None, :]
    return out


def _gaze_range(ranges) -> np.ndarray | None:
    """persona.json's ``gaze_range`` as a (2, 2) array (None: not recorded); ``ModelError``
    when it is not [[low, high], [low, high]] within [-1, 1]."""
    if ranges is None:
        return None
    try:
        a = np.array(ranges, np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != (2, 2) or not (np.isfinite(a).all() and (np.abs(a) <= 1).all()
                                               and (a[:, 0] <= a[:, 1]).all()):
        raise ModelError(f"gaze_range must be [[low, high], [low, high]] within [-1, 1], got {str(ranges)[:80]}")
    return a


def place(shape: np.ndarray, where: np.ndarray, placement: np.ndarray) -> np.ndarray:
    """Put an aligned (478, 2) shape (at the persona's mean pose) ``where`` = (angle
    in degrees, clockwise in the image; scale; shift x, y in face widths): rotated and
    scaled about the face centre, then shifted. placement: (centre x, centre y, face
    width), persona image px. Returns (478, 2) float32 persona image px."""
    cx, cy, width = (float(v) for v in placement)
    a = math.radians(where[0])
    rot = where[1] * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # y down: clockwise
    centre = np.array([cx, cy])
    out = (np.asarray(shape, np.float64) - centre) @ rot.T + centre + width * np.asarray(where[2:4])
    return out.astype(np.float32)


def where_placed(shape: np.ndarray, landmarks: np.ndarray, placement: np.ndarray) -> np.ndarray:
    """(4,) the ``place`` arguments that best put an aligned shape onto a frame's landmarks."""
    stable = np.array(STABLE_POINTS)
    m = fit_similarity(shape[stable], np.asarray(landmarks)[stable, :2])
    centre = np.asarray(placement[:2], np.float64)
    shift = m[:, :2] @ centre + m[:, 2] - centre
    return np.array([math.degrees(math.atan2(m[1, 0], m[0, 0])), math.hypot(m[0, 0], m[1, 0]),
                     *(shift / placement[2])])


def check_arrays(arrays: dict) -> dict:
    """The arrays as float32 if they make a model, else ``ModelError`` saying why."""
    if set(arrays) != set(ARRAYS):
        missing, extra = sorted(set(ARRAYS) - set(arrays)), sorted(set(arrays) - set(ARRAYS))
        raise ModelError(f"expected arrays {', '.join(ARRAYS)}; missing {missing or 'none'}, "
                         f"unexpected {extra or 'none'}")
    k = np.shape(arrays["bias"])[0] if np.ndim(arrays["bias"]) == 1 else -1
    if not 1 <= k <= NUM_POINTS * 2:
        raise ModelError(f"bias must be (K,) with 1 <= K <= {NUM_POINTS * 2}, got shape {np.shape(arrays['bias'])}")
    out = {}
    for name, want in ARRAYS.items():
        a = np.asarray(arrays[name])
        shape = tuple(k if d == "K" else d for d in want)
        if a.shape != shape:
            raise ModelError(f"{name} must have shape {shape}, got {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ModelError(f"{name} must be numbers, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise ModelError(f"{name} has non-finite values")
        out[name] = a.astype(np.float32)
    for lo, hi in (("score_lo", "score_hi"), ("pose_lo", "pose_hi"), ("coef_lo", "coef_hi")):
        if (out[lo] > out[hi]).any():
            raise ModelError(f"{lo} is above {hi}")
    if out["placement"][2] <= 0 or out["pose_lo"][3] <= 0:
        raise ModelError("the face width and the scale range must be positive")
    return out


# -- fitting ------------------------------------------------------------------------

def aligned_shapes(landmarks: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """(N, 478, 2): each frame's landmarks similarity-aligned (stable points) onto the
    canonical face: what is left is expression and out-of-plane turn."""
    stable = np.array(STABLE_POINTS)
    ref = np.asarray(canonical, np.float64)[stable]
    return np.stack([apply_affine(fit_similarity(p[stable, :2], ref), p) for p in np.asarray(landmarks)])


def _pca(offsets: np.ndarray) -> np.ndarray:
    """(K, 956) the principal directions of (N, 956) offsets that explain EXPLAINED."""
    x = offsets - offsets.mean(0)
    # From the (N, N) Gram matrix: LAPACK's SVD of the (N, 956) offsets took seconds on
    # real frames (aligned shapes are rank-deficient), this takes milliseconds.
    lam, u = np.linalg.eigh(x @ x.T)
    lam, u = lam[::-1].clip(0), u[:, ::-1]
    var = np.cumsum(lam) / max(float(lam.sum()), 1e-12)
    k = max(1, min(int(np.searchsorted(var, EXPLAINED) + 1), MAX_COMPONENTS, len(x) - 1))
    basis = u[:, :k].T @ x  # (K, 956), rows orthogonal, of norm sqrt(lam)
    return basis / np.maximum(np.linalg.norm(basis, axis=1, keepdims=True), 1e-12)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bias) with y ~= x @ weights + bias; the penalty on standardised inputs."""
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)  # a score that never moved: its weight stays ~0
    xs = (x - mu) / sd
    w = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ (y - y.mean(0)))
    weights = w / sd[:, None]
    return weights, y.mean(0) - mu @ weights


def halves(mean_shape: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    """[(points, scores)] for the upper and the lower half of this (478, 2) face."""
    upper = mean_shape[:, 1] < mean_shape[SPLIT_POINT, 1]
    return [(np.flatnonzero(upper), UPPER_SCORES), (np.flatnonzero(~upper), LOWER_SCORES)]


def _build(shapes: np.ndarray, scores: np.ndarray, poses: np.ndarray, placed: np.ndarray, alpha: float,
           placement: np.ndarray, neutral_scores: np.ndarray, split: bool = True) -> ExpressionModel:
    """The model of these frames: shapes (N, 478, 2) aligned, scores (N, 52), poses
    (N, 6) relative to the mean pose, placed (N, 4) where each frame's shape sits in its image.

    With ``split``, each half of the face (``halves``) has PCA components of its own,
    regressed on its own scores only: a ridge over all 52 also learns what the persona
    happened to do together (d6 glanced aside while she talked), and a user who looks
    aside would then move the persona's mouth. The arrays are the same either way
    (the halves' components side by side, with zero weight on the other half's scores)."""
    mean_shape = shapes.mean(0)
    offsets = (shapes - mean_shape).reshape(len(shapes), -1)
    x = np.concatenate([scores, poses[:, :REGRESSED_POSE]], 1)
    pose_cols = list(range(NUM_SCORES, NUM_FEATURES))
    parts = halves(mean_shape) if split else [(np.arange(NUM_POINTS), tuple(range(NUM_SCORES)))]
    bases, weights, biases = [], [], []
    for points, cols in parts:
        mask = np.zeros((NUM_POINTS, 2), bool)
        mask[points] = True
        part = np.where(mask.ravel(), offsets, 0.0)  # (N, 956): this half's offsets only
        basis = _pca(part)  # (K_h, 956), zero outside the half
        cols = [*cols, *pose_cols]
        w_part, b_part = _ridge(x[:, cols], part @ basis.T, alpha)
        w = np.zeros((NUM_FEATURES, len(basis)))
        w[cols] = w_part
        bases.append(basis), weights.append(w), biases.append(b_part)
    basis, weights, bias = np.concatenate(bases), np.concatenate(weights, 1), np.concatenate(biases)
    coefs = offsets @ basis.T  # (N, K): the halves' bases are orthogonal (disjoint points)
    return ExpressionModel({
        "mean_shape": mean_shape, "basis": basis, "coef_lo": coefs.min(0), "coef_hi": coefs.max(0),
        "weights": weights, "bias": bias, "score_lo": scores.min(0), "score_hi": scores.max(0),
        "neutral_scores": neutral_scores, "pose_lo": poses.min(0), "pose_hi": poses.max(0),
        "placement": placement,
        "pose_map": np.linalg.lstsq(np.concatenate([poses, np.ones((len(poses), 1))], 1), placed, rcond=None)[0],
    })


def _errors(model: ExpressionModel, landmarks: np.ndarray, scores: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """(N * 478,) px from each predicted point to the real one."""
    pred = np.stack([model.predict(s, p) for s, p in zip(scores, poses)])
    return np.linalg.norm(pred - landmarks, axis=2).ravel()


def fit(landmarks: np.ndarray, scores: np.ndarray, matrices: np.ndarray, canonical: np.ndarray,
        neutral_index: int, *, holdout: float = 0.2, alphas=ALPHAS, split: bool = True) -> ExpressionModel:
    """Fit a persona's expression model on its frames, in recording order.

    landmarks: (N, 478, 2) persona image px; scores: (N, 52); matrices: (N, 4, 4)
    MediaPipe poses; canonical: (478, 2) the persona's mean face at its mean pose
    (image px); neutral_index: its neutral frame, whose scores a user's neutral face maps
    to, except where the eyes look (``GAZE_SCORES``): that is the median over all frames,
    where the person looked while recording (the camera, a screen), since one frame
    picked for a closed mouth may have caught a glance aside, which every user would
    then make all the time (d6's neutral frame looked 0.2 out with one eye, 0.0 in its
    median; driven, its irises sat at the corners). The ridge strength is the one with
    the least error on the last ``holdout`` of the frames for a model fitted on the
    rest (the nearest thing to a new recording); that error is in ``facts``
    (``heldout_median_px``, ``heldout_p95_px``; ``face_width_px`` for scale); the
    model returned is then refitted on all frames.
    """
    lm = np.asarray(landmarks, np.float64)[:, :, :2]
    sc = np.asarray(scores, np.float64)
    mats = np.asarray(matrices, np.float64)
    n = len(lm)
    if lm.shape[1:] != (NUM_POINTS, 2) or sc.shape != (n, NUM_SCORES) or mats.shape != (n, 4, 4):
        raise ValueError(f"fit needs (N, 478, 2) landmarks, (N, 52) scores and (N, 4, 4) poses; got "
                         f"{lm.shape}, {sc.shape}, {mats.shape}")
    if n < 10:
        raise ValueError(f"fit needs at least 10 frames, got {n}")
    canonical = np.asarray(canonical, np.float64)[:, :2]
    stable = np.array(STABLE_POINTS)
    placement = np.array([*canonical[stable].mean(0), np.linalg.norm(canonical[454] - canonical[234])])
    shapes = aligned_shapes(lm, canonical)
    mean = mean_pose(mats)
    poses = np.stack([head_pose(m, mean) for m in mats])  # (N, 6) relative to the mean pose
    placed = np.stack([where_placed(s, p, placement) for s, p in zip(shapes, lm)])  # (N, 4)
    neutral = sc[int(neutral_index)].copy()
    neutral[list(GAZE_SCORES)] = np.median(sc[:, list(GAZE_SCORES)], axis=0)
    cut = n - max(1, int(round(n * holdout)))
    held = slice(cut, n)
    tried = {}
    for alpha in alphas:
        model = _build(shapes[:cut], sc[:cut], poses[:cut], placed[:cut], alpha, placement, neutral, split)
        tried[alpha] = _errors(model, lm[held], sc[held], poses[held])
    best = min(tried, key=lambda a: float(tried[a].mean()))
    err = tried[best]
    model = _build(shapes, sc, poses, placed, best, placement, neutral, split)
    facts = {"kind": "ridge", "split": split, "alpha": float(best), "frames": n, "components": model.components,
             "heldout_frames": n - cut, "heldout_median_px": round(float(np.median(err)), 3),
             "heldout_p95_px": round(float(np.percentile(err, 95)), 3),
             "face_width_px": round(float(placement[2]), 2),
             "gaze_range": np.percentile([gaze(p) for p in lm], GAZE_PERCENTILES, axis=0).T.round(4).tolist()}
    return ExpressionModel(model.arrays, facts)
