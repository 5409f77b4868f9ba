"""Quality figures of a persona's output: the metrics of ``f2f-cam bench --quality``.

Each metric is a plain function of arrays. ``FaceMeter`` is the one way faces are
measured, for drivers, outputs and reference frames alike: MediaPipe's own landmarker
with blendshapes, one ``FaceSample`` per frame. ``f2f_cam.quality_bench`` runs the
persona and puts the figures together.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from f2f_cam.expression import IRISES, gaze, turn
from f2f_cam.landmarks import BLENDSHAPE_NAMES

# The expression series compared between driver and output: name -> the blendshape
# scores averaged into it (left and right together: a mirror does not matter).
EXPRESSIONS = {
    "jaw": ("jawOpen",),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "brow": ("browInnerUp",),
}
_EXPRESSION_INDEX = [[BLENDSHAPE_NAMES.index(n) for n in names] for names in EXPRESSIONS.values()]

# Face-shape ratios, each a distance over the face height (forehead 10 to chin 152),
# from MediaPipe's 478 points; a "pair" is the midpoint of two points.
RATIOS = ("eye_spacing", "face_width", "nose_length", "eye_width", "mouth_width")
_FOREHEAD, _CHIN = 10, 152
_RIGHT_EYE, _LEFT_EYE = (33, 133), (362, 263)  # outer and inner corners
_CHEEKS = (234, 454)
_NASION, _NOSE_TIP = 168, 1
_MOUTH_CORNERS = (61, 291)
_IRISES = tuple((centre, outer, inner) for centre, _, outer, inner in IRISES)  # per eye: iris centre, outer and inner corner

# A driver "differs" from the persona when its ratios are this far from the persona's
# (root mean square of the relative differences): beyond what one face's own expressions
# and the landmarker's noise give (at most 4.5 % for the astronaut's generated drive clip
# against her training video; 8-12 % for the generated driver with another face shape).
DIFFER = 0.05
# The persona's ratios "with the same head turn and expression": the median over the
# NEAREST reference frames by (yaw, pitch, jawOpen, mouthSmile), in units of LIKENESS_UNITS
# (10 degrees of turn weigh as much as a quarter of the jaw's range): an open jaw makes
# the face taller and every ratio smaller, a turned head narrows it, on any face.
NEAREST = 15
LIKENESS_UNITS = np.array([10.0, 10.0, 0.25, 0.25])
CROP = 128  # px: the side of the face crop that sharpness and flicker are measured on
SSIM_SIZE = 256  # px: frames are compared at most this large (SSIM at 512 px costs 4x, tells no more)


def expression_scores(blendshapes: np.ndarray) -> np.ndarray:
    """(52,) blendshape scores -> (4,) in [0, 1]: jaw, blink, smile, brow (``EXPRESSIONS``)."""
    b = np.asarray(blendshapes, np.float64)
    return np.array([b[idx].mean() for idx in _EXPRESSION_INDEX])


def shape_ratios(points: np.ndarray) -> np.ndarray:
    """(478, 2 or 3) landmarks -> (5,) face-shape ratios (``RATIOS``), unitless.

    Distances use every coordinate given (MediaPipe's z is in x's scale, so 3-D points
    make the ratios less sensitive to head turns).
    """
    p = np.asarray(points, np.float64)

    def dist(a, b) -> float:
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))

    def mid(pair):
        return p[list(pair)].mean(axis=0)

    height = dist(p[_FOREHEAD], p[_CHIN])
    return np.array([
        dist(mid(_RIGHT_EYE), mid(_LEFT_EYE)),
        dist(*p[list(_CHEEKS)]),
        dist(p[_NASION], p[_NOSE_TIP]),
        (dist(*p[list(_RIGHT_EYE)]) + dist(*p[list(_LEFT_EYE)])) / 2,
        dist(*p[list(_MOUTH_CORNERS)]),
    ]) / height


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of two series over the entries where both are finite.

    None when fewer than 3 such entries remain or either series is constant there
    (standard deviation below 1e-6: r is undefined, e.g. a face that never blinks).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return None
    return float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))


def shape_distance(a: np.ndarray, b: np.ndarray, persona: np.ndarray) -> np.ndarray:
    """Root mean square of ``(a - b) / persona`` over the ratios: (..., 5) -> (...)."""
    return np.sqrt(np.mean(((np.asarray(a) - np.asarray(b)) / np.asarray(persona)) ** 2, axis=-1))


def iris_offset(points: np.ndarray, truth: np.ndarray) -> float:
    """How far the irises of ``points`` sit from those of ``truth`` ((478, 2+) landmarks at
    one image size): the mean over both eyes of the centres' distance over ``truth``'s eye
    width (corner to corner). 0.1 is a tenth of the eye off (an iris is ~0.4 of it wide)."""
    p, q = np.asarray(points, np.float64)[:, :2], np.asarray(truth, np.float64)[:, :2]
    return float(np.mean([np.linalg.norm(p[i] - q[i]) / np.linalg.norm(q[a] - q[b]) for i, a, b in _IRISES]))


def gaze_offset(driver: np.ndarray, output: np.ndarray) -> float | None:
    """How far the output looks from where the driver looks, left and right: the median
    over frames of |side| difference (``expression.gaze``, in eye widths; (T, 2) arrays,
    NaN rows left out). None without a frame where both have a face."""
    d, o = np.asarray(driver, np.float64)[:, 0], np.asarray(output, np.float64)[:, 0]
    ok = np.isfinite(d) & np.isfinite(o)
    return float(np.median(np.abs(o[ok] - d[ok]))) if ok.any() else None


def identity_keep(output: np.ndarray, driver: np.ndarray, persona: np.ndarray,
                  differ: float = DIFFER) -> float | None:
    """Share of frames, in [0, 1], whose output ratios are nearer the persona's than the
    driver's same-frame ratios.

    output, driver: (T, 5) ratios per frame (NaN rows: no face, left out); persona: (5,),
    or (T, 5): the persona's ratios with each frame's head turn and expression
    (``ratios_alike``), since turning the head or opening the mouth changes the ratios
    of any face.
    Only frames where the driver differs from the persona (``shape_distance`` above
    ``differ``) count; None when there is no such frame (the driver has the persona's
    face shape, so there is nothing to keep apart).
    """
    output, driver = np.asarray(output, np.float64), np.asarray(driver, np.float64)
    persona = np.broadcast_to(np.asarray(persona, np.float64), output.shape)
    ok = np.isfinite(output).all(axis=1) & np.isfinite(driver).all(axis=1) & np.isfinite(persona).all(axis=1)
    ok[ok] = shape_distance(driver[ok], persona[ok], persona[ok]) > differ
    if not ok.any():
        return None
    o, d, p = output[ok], driver[ok], persona[ok]
    return float((shape_distance(o, p, p) < shape_distance(o, d, p)).mean())


def ratios_alike(ratios: np.ndarray, keys: np.ndarray, at: np.ndarray, k: int = NEAREST) -> np.ndarray:
    """(T, 5): for each frame's ``Track.likeness`` key in ``at`` (T, 4), the median ratios
    of the ``k`` frames of (ratios (N, 5), keys (N, 4)) with the nearest keys: the
    persona's face shape with that head turn and that expression (NaN where ``at`` is)."""
    ratios, keys, at = (np.asarray(a, np.float64) for a in (ratios, keys, at))
    keep = np.isfinite(ratios).all(axis=1) & np.isfinite(keys).all(axis=1)
    ratios, keys = ratios[keep], keys[keep]
    out = np.full((len(at), ratios.shape[1]), np.nan)
    k = min(k, len(ratios))
    for i, a in enumerate(at):
        if k and np.isfinite(a).all():
            near = np.argsort(np.linalg.norm(keys - a, axis=1))[:k]
            out[i] = np.median(ratios[near], axis=0)
    return out


def region_psnr(fake: np.ndarray, real: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """PSNR (dB, as on [0, 1] images) of ``fake`` against ``real`` inside the face (the
    convex hull of its landmarks ``points``) and outside it (hair, neck, background:
    what a landmark sketch does not determine). fake, real: (H, W, 3) float in [0, 1]."""
    mask = np.zeros(real.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(np.asarray(points)[:, :2]).astype(np.int32)), 1)
    inside = mask.astype(bool)
    return masked_psnr(fake, real, inside), masked_psnr(fake, real, ~inside)


def masked_psnr(fake: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, as on [0, 1] images) of ``fake`` against ``real`` ((H, W, 3) float in
    [0, 1]) over the pixels where ``mask`` (H, W) is true; NaN over none."""
    se = ((np.asarray(fake, np.float64) - real) ** 2).mean(axis=2)[np.asarray(mask, bool)]
    return float(10 * np.log10(1.0 / max(float(se.mean()), 1e-10))) if se.size else float("nan")


def face_crop(frame: np.ndarray, points: np.ndarray, size: int = CROP) -> np.ndarray:
    """The face as a grey uint8 (size, size) image: the square around the landmarks' box
    (its longer side), the frame's edge repeated where the square leaves the frame,
    resized (area-averaged when shrinking, bilinear when enlarging)."""
    p = np.asarray(points)[:, :2]
    (x0, y0), (x1, y1) = p.min(axis=0), p.max(axis=0)
    side = max(x1 - x0, y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(int(round(side)), 1)
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    pad = max(0, -left, -top, left + n - w, top + n - h)
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    square = grey[top + pad:top + pad + n, left + pad:left + pad + n]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian (3x3) of a grey uint8 image, in grey levels squared:
    higher is sharper (blur removes the fine detail it responds to)."""
    return float(cv2.Laplacian(np.asarray(image, np.float64), cv2.CV_64F).var())


def flicker(crops: list[np.ndarray | None]) -> float | None:
    """Mean absolute change between consecutive face crops, grey levels (0-255), over
    the pairs of frames that both have one; None when there is no such pair."""
    diffs = [np.abs(b.astype(np.float64) - a).mean() for a, b in zip(crops, crops[1:])
             if a is not None and b is not None]
    return float(np.mean(diffs)) if diffs else None


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den, or None when either is missing or den is not positive."""
    if num is None or den is None or not den > 0:
        return None
    return float(num / den)


def image_ssim(a: list[np.ndarray], b: list[np.ndarray], size: int = SSIM_SIZE) -> float:
    """Mean SSIM (Wang et al. 2004, the trainer's validation SSIM) of pairs of RGB uint8
    (H, W, 3) frames, each first area-averaged down to at most ``size`` px a side (the
    11 px window then spans the same share of the face at any output size); 1 for
    identical frames."""
    import torch

    from trainers.metrics import ssim  # the trainer's SSIM: one copy of it

    def stack(frames):  # (N, 3, h, w) in [0, 1]
        h, w = frames[0].shape[:2]
        k = min(1.0, size / max(h, w))
        small = [f if k == 1 else cv2.resize(f, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
                 for f in frames]
        return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).float() / 255

    with torch.inference_mode():
        return float(ssim(stack(a), stack(b)).mean())


@dataclass(frozen=True)
class FaceSample:
    """What the measuring landmarker saw in one frame (None: no face)."""

    expression: np.ndarray  # (4,) jaw, blink, smile, brow
    ratios: np.ndarray  # (5,) RATIOS
    crop: np.ndarray  # (CROP, CROP) grey uint8
    sharpness: float
    turn: np.ndarray  # (2,) yaw, pitch (deg) as the image shows the head (expression.turn)
    gaze: np.ndarray  # (2,) where the eyes look: side, spread (expression.gaze, eye widths)


@dataclass(frozen=True)
class Track:
    """One sequence of frames, measured: per-frame arrays, NaN where no face was found."""

    samples: list  # FaceSample | None per frame

    @property
    def found(self) -> np.ndarray:
        """(T,) bool."""
        return np.array([s is not None for s in self.samples], bool)

    @property
    def face_rate(self) -> float | None:
        return float(self.found.mean()) if self.samples else None

    def expressions(self) -> np.ndarray:
        """(T, 4) expression scores."""
        return self._stack("expression", len(EXPRESSIONS))

    def ratios(self) -> np.ndarray:
        """(T, 5) face-shape ratios."""
        return self._stack("ratios", len(RATIOS))

    def gazes(self) -> np.ndarray:
        """(T, 2) where the eyes look: side and spread (``expression.gaze``)."""
        return self._stack("gaze", 2)

    def turns(self) -> np.ndarray:
        """(T, 2) head yaw and pitch (deg)."""
        return self._stack("turn", 2)

    def likeness(self) -> np.ndarray:
        """(T, 4) what changes face-shape ratios besides the face: yaw, pitch, jaw, smile,
        each over ``LIKENESS_UNITS``."""
        e = self.expressions()
        return np.column_stack([self.turns(), e[:, 0], e[:, 2]]) / LIKENESS_UNITS

    def crops(self) -> list[np.ndarray | None]:
        return [None if s is None else s.crop for s in self.samples]

    def sharpness(self) -> float | None:
        """Mean Laplacian variance of the face crops (grey levels squared)."""
        values = [s.sharpness for s in self.samples if s is not None]
        return float(np.mean(values)) if values else None

    def _stack(self, name: str, width: int) -> np.ndarray:
        rows = [np.full(width, np.nan) if s is None else getattr(s, name) for s in self.samples]
        return np.array(rows, np.float64).reshape(len(rows), width)


class FaceMeter:
    """A sink that measures the face in each frame written to it (``write(frame, t)``),
    with MediaPipe's own landmarker and its blendshapes.

    mode "video" for consecutive frames (t in seconds, increasing), "image" for frames
    far apart (a reference video sampled sparsely, dataset photos).
    """

    def __init__(self, mode: str = "video"):
        from f2f_cam.landmarks import LandmarkDetector

        # Every frame detected afresh, as before the live path tracked one face: figures
        # comparable with earlier ones, from an instrument that is not the live path's.
        self._detector = LandmarkDetector(mode=mode, blendshapes=True, track_one=False)
        self.samples: list[FaceSample | None] = []

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        face = self._detector(frame, None if t is None else int(round(t * 1000)))
        if face is None:
            self.samples.append(None)
            return
        crop = face_crop(frame, face.points)
        self.samples.append(FaceSample(expression_scores(face.blendshapes), shape_ratios(face.points),
                                       crop, sharpness(crop), turn(face.pose), gaze(face.points)))

    def track(self) -> Track:
        return Track(list(self.samples))

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> "FaceMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def measure(frames, mode: str = "video") -> Track:
    """Measure every ``(t, frame)`` (RGB uint8) with a fresh ``FaceMeter``."""
    with FaceMeter(mode) as meter:
        for t, frame in frames:
            meter.write(frame, t)
        return meter.track()
