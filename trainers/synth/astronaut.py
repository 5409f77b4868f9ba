"""The astronaut's face: where its features are, and how it changes expression.

Everything here is in astronaut-image pixels (x, y) of ``skimage.data.astronaut()``
(512x512 RGB). :func:`expression` returns the portrait with the mouth open, the eyes
closed and the brows raised or lowered by given amounts, by vertical displacement
fields computed once and applied with ``cv2.remap`` on two small boxes:

* the mouth (``MOUTH_BOX``): ``y + m * D(x, y)``, and the gap that opens between
  the lips is filled with a dark mouth interior;
* the brows and eyes (``UPPER_BOX``): the brows and the lower forehead move up or
  down (``y + |b| * B(x, y)``, with one field ``B`` for raising and one for
  lowering), then the upper eyelids slide down over the eyeballs to meet the lower
  lids, which rise a little (a closed-form map per eye column); the covered eye
  opening is tinted towards the eyelid skin just above the eye.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

# Landmarks of the astronaut's face in astronaut-image pixels (x, y), measured
# once with MediaPipe FaceLandmarker (Tasks API, IMAGE mode, mediapipe 1.2.3,
# model face_landmarker.task float16 v1) on skimage.data.astronaut() at 512x512,
# normalised coordinates times 512. Hard-coded so this module needs no
# mediapipe. The subject smiles with her upper teeth showing between the lips.
MOUTH_CORNER_RIGHT = (202.3, 139.2)  # index 61, the subject's right (image left)
MOUTH_CORNER_LEFT = (244.5, 140.6)  # index 291
UPPER_LIP_OUTER = (223.4, 140.6)  # index 0
UPPER_LIP_INNER = (223.3, 143.2)  # index 13
LOWER_LIP_INNER = (223.0, 149.2)  # index 14
LOWER_LIP_OUTER = (222.7, 154.7)  # index 17
CHIN = (221.4, 177.4)  # index 152
NOSE_TIP = (223.5, 131.1)  # index 1
FOREHEAD = (226.0, 72.2)  # index 10, the top of the face mesh
# Bounding box (x0, y0, x1, y1) of all 478 landmarks: what "the face" means
# for framing and for the stay-inside-the-frame check.
FACE_BOX = (180.7, 71.8, 270.2, 177.4)
FACE_CENTER = ((FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2)
FACE_HEIGHT = CHIN[1] - FOREHEAD[1]  # px, forehead (10) to chin (152)

# Mouth opening at m = 1, in astronaut pixels. The jaw drops: lower lip and chin
# move down by 8 % of the face height, the upper lip (and the upper teeth
# under it) rises by 2 %; both fade out smoothly so the rest of the face stays.
JAW_DROP = 0.08 * FACE_HEIGHT
UPPER_LIFT = 0.02 * FACE_HEIGHT
LIP_RAMP = 14.0  # px below the lip line over which the drop widens from the lip shape to the jaw shape
UPPER_FALLOFF = 10.0  # px above the lip line over which the lift fades (ends above the nose base)
NECK_FALLOFF = 30.0  # px below the chin over which the drop fades into the still neck
JAW_HALF_WIDTH = 45.0  # px from the mouth centre where the jaw stops moving sideways
# Box in astronaut pixels (x0, y0, x1, y1) where the field is non-zero; the
# remap runs only here, which keeps a frame cheap.
MOUTH_BOX = (170, 124, 280, 212)
# The opened gap between the lips: dark red-black at the top (shadow under the
# upper teeth), a little redder at the bottom (tongue). RGB.
MOUTH_DARK = (22, 6, 8)
MOUTH_TONGUE = (92, 30, 34)

# Eyes, measured the same way as the mouth above (MediaPipe FaceLandmarker,
# Tasks API, IMAGE mode, face_landmarker.task, on astronaut() at 512x512,
# normalised coordinates times 512). "Right" is the subject's right (image left).
RIGHT_EYE_UPPER = (202.6, 97.8)  # index 159, upper lid
RIGHT_EYE_LOWER = (204.2, 104.2)  # index 145, lower lid
RIGHT_EYE_OUTER = (195.3, 100.6)  # index 33, outer corner
RIGHT_EYE_INNER = (213.6, 103.6)  # index 133, inner corner
LEFT_EYE_UPPER = (248.1, 100.2)  # index 386
LEFT_EYE_LOWER = (245.9, 106.5)  # index 374
LEFT_EYE_INNER = (236.4, 104.9)  # index 362
LEFT_EYE_OUTER = (255.3, 103.8)  # index 263
# Upper edge of the eyebrows, from the outer end to the inner end (same measurement).
RIGHT_BROW = ((187.9, 90.7), (191.6, 87.8), (197.5, 86.6), (205.6, 87.8), (215.1, 89.8))  # 70, 63, 105, 66, 107
LEFT_BROW = ((236.0, 90.6), (245.9, 89.7), (254.2, 89.6), (260.2, 91.5), (263.7, 94.9))  # 336, 296, 334, 293, 300

# Eye closing at eyes = 1: the upper lid slides down EYE_MEET of the way to
# the lower lid, the lower lid rises the rest, so they meet low as in a real
# blink. The skin above the upper lid stretches over UPPER_LID_SKIN px (the
# lid margin and the top of that band keep their texture; the middle
# stretches); below the lower lid over LOWER_LID_SKIN px.
EYE_MEET = 0.85
UPPER_LID_SKIN = 7.0  # px
LOWER_LID_SKIN = 4.0  # px
# How far the covered eye opening is tinted towards the skin above the eye,
# at full closure (the stretched lid alone keeps some of the lid crease's and
# lashes' darkness, which reads as a smear); less at partial closure.
EYELID_TINT = 0.75
# Eyebrows at brows = +1: the brow band moves up by 4 % of the face height; at
# -1 it moves down by up to as much (less where the brow is close to the eye:
# the skin between brow and eye is squeezed, see BROW_MAX_SLOPE). Above the
# band the displacement fades over FOREHEAD_FALLOFF (the lower forehead moves
# a bit, the hairline does not), below it over the gap down to just above the
# upper eyelid (the eye openings do not move), and sideways over
# BROW_SIDE_FALLOFF beyond the brow ends.
BROW_LIFT = 0.04 * FACE_HEIGHT
BROW_BAND = (2.0, 0.5)  # px above / below the upper brow edge that move rigidly
FOREHEAD_FALLOFF = 16.0  # px
BROW_SIDE_FALLOFF = 10.0  # px
# Px above the upper lid margin where the falloff under the brows ends, for
# raised / lowered brows: raising must not stretch the dark lid crease and
# lashes (they smear); lowering may squeeze them.
BROW_STOP = (3.0, 1.0)
BROW_MAX_SLOPE = 0.8  # cap on the squeeze under lowered brows: the map stays one-to-one
# Box in astronaut pixels (x0, y0, x1, y1) of the brow and eye warps; it does
# not overlap MOUTH_BOX.
UPPER_BOX = (172, 64, 280, 118)


def expression(mouth: float, eyes: float, brows: float) -> np.ndarray:
    """Return the portrait with this expression.

    Args:
        mouth: Mouth opening in [0, 1] (0 closed, 1 wide open).
        eyes: Eye closing in [0, 1] (0 open as in the photo, 1 closed).
        brows: Eyebrows in [-1, 1] (positive raised, negative lowered; 1 is
            BROW_LIFT px).

    Returns:
        (512, 512, 3) RGB uint8 in astronaut-image pixels; read-only (the photo
        itself) for the neutral face, a new array otherwise. The same arguments
        always give the same bytes.
    """
    assets = _assets()
    image = assets.image  # (512, 512, 3) RGB uint8, read-only
    m, e, b = mouth, eyes, brows
    if m > 0 or e > 0 or b != 0:
        image = image.copy()
    if e > 0 or b != 0:
        x0, y0, x1, y1 = UPPER_BOX
        image[y0:y1, x0:x1] = _warp_upper(assets, e, b)
    if m > 0:
        x0, y0, x1, y1 = MOUTH_BOX
        # Backward map on the mouth box: output pixel (x, y) samples (x, y + m D).
        map_y = assets.grid_y + np.float32(m) * assets.field  # (h, w) float32
        roi = cv2.remap(assets.image, assets.grid_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        image[y0:y1, x0:x1] = _fill_gap(roi, assets, m)
    return image


# --- the warp fields, computed once --------------------------------------------


@dataclass(frozen=True)
class _Assets:
    """What every frame reuses: the portrait and the warp fields (all read-only)."""

    image: np.ndarray  # (512, 512, 3) RGB uint8, the astronaut
    grid_x: np.ndarray  # (h, w) float32, absolute x of each MOUTH_BOX pixel
    grid_y: np.ndarray  # (h, w) float32, absolute y
    field: np.ndarray  # (h, w) float32, D: backward y displacement at full opening, px
    gap_top: np.ndarray  # (1, w) float32, -(rise of the upper lip edge at m = 1), relative to lip_line
    gap_bottom: np.ndarray  # (1, w) float32, drop of the lower lip edge at m = 1, relative to lip_line
    lip_line: np.ndarray  # (1, w) float32, y of the line where the lips part, box-relative
    upper: _UpperAssets  # the brow and eye warps on UPPER_BOX


@dataclass(frozen=True)
class _UpperAssets:
    """The brow and eye warps on UPPER_BOX; (1, w) arrays are per column, y absolute."""

    grid_x: np.ndarray  # (h, w) float32, absolute x of each UPPER_BOX pixel
    grid_y: np.ndarray  # (h, w) float32, absolute y
    brow_up: np.ndarray  # (h, w) float32, backward y displacement at brows = +1, px (>= 0)
    brow_down: np.ndarray  # (h, w) float32, backward y displacement at brows = -1, px (<= 0)
    lid_upper: np.ndarray  # (1, w) float32, y of the upper lid margin (where there is an eye)
    lid_lower: np.ndarray  # (1, w) float32, y of the lower lid margin
    lid_gap: np.ndarray  # (1, w) float32, lower minus upper lid, 0 outside the eyes
    skin: np.ndarray  # (1, w, 3) float32, RGB of the eyelid skin above each eye


@functools.cache
def _assets() -> _Assets:
    # Cached: loading the PNG alone takes ~5 ms, and the result is a pure
    # function of constants (a lazily computed constant, never mutated).
    from skimage import data

    image = data.astronaut()
    x0, y0, x1, y1 = MOUTH_BOX
    xs = np.arange(x0, x1, dtype=np.float64)[None, :]  # (1, w)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]  # (h, 1)

    # The line where the lips part, a parabola through both corners and the
    # point midway between the inner lips (through the visible upper teeth,
    # so the upper teeth rise with the upper lip as in a real jaw drop).
    mid = ((UPPER_LIP_INNER[0] + LOWER_LIP_INNER[0]) / 2, (UPPER_LIP_INNER[1] + LOWER_LIP_INNER[1]) / 2)
    px, py = zip(MOUTH_CORNER_RIGHT, mid, MOUTH_CORNER_LEFT)
    parabola = np.polyfit(px, py, 2)
    x_clamped = np.clip(xs, MOUTH_CORNER_RIGHT[0], MOUTH_CORNER_LEFT[0])
    line = np.polyval(parabola, x_clamped)  # (1, w) absolute y

    # Horizontal profiles: `lips` is how far the lips part at each x (rounded,
    # 0 at the corners); `jaw` is how far the jaw moves (1 across the mouth,
    # fading to 0 at JAW_HALF_WIDTH).
    centre = (MOUTH_CORNER_RIGHT[0] + MOUTH_CORNER_LEFT[0]) / 2
    half = (MOUTH_CORNER_LEFT[0] - MOUTH_CORNER_RIGHT[0]) / 2
    u = np.abs(xs - centre) / half
    lips = np.clip(1 - u**2, 0, None) ** 0.6
    jaw = 1 - _smoothstep((np.abs(xs - centre) - half) / (JAW_HALF_WIDTH - half))

    # Forward vertical displacement v at full opening (down positive), (h, w).
    below = ys >= line
    ramp = _smoothstep((ys - line) / LIP_RAMP)  # 0 at the lip line, 1 a lip's width lower
    neck = 1 - _smoothstep((ys - CHIN[1]) / NECK_FALLOFF)
    down = JAW_DROP * ((1 - ramp) * lips + ramp * jaw) * neck
    up = -UPPER_LIFT * lips * (1 - _smoothstep((line - ys) / UPPER_FALLOFF))
    forward = np.where(below, down, up)
    # First-order inverse: a pixel at y samples y - v(y). The only place that
    # is badly wrong is the gap the jump at the lip line opens, which
    # _fill_gap paints over; everywhere else v changes slowly (|dv/dy| < 1).
    field = -forward

    h, w = y1 - y0, x1 - x0
    upper = _upper_assets(image)
    image.flags.writeable = False
    return _Assets(
        image=image,
        grid_x=_frozen(np.broadcast_to(xs, (h, w))),
        grid_y=_frozen(np.broadcast_to(ys, (h, w))),
        field=_frozen(field),
        gap_top=_frozen(-UPPER_LIFT * lips),
        gap_bottom=_frozen(JAW_DROP * lips),
        lip_line=_frozen(line - y0),
        upper=upper,
    )


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only, contiguous float32 copy: the assets are shared by every frame."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.flags.writeable = False
    return a


def _upper_assets(image: np.ndarray) -> _UpperAssets:
    """Precompute the brow field and the eyelid lines on UPPER_BOX."""
    x0, y0, x1, y1 = UPPER_BOX
    xs = np.arange(x0, x1, dtype=np.float64)[None, :]  # (1, w)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]  # (h, 1)
    h, w = y1 - y0, x1 - x0
    lid_upper, lid_lower, skin = _eyelids(image, xs)
    gap = np.where(np.isnan(lid_upper), 0.0, np.maximum(lid_lower - lid_upper, 0.0))
    brow_up, brow_down = _brow_fields(xs, ys, _above_eyes(xs, lid_upper))
    return _UpperAssets(
        grid_x=_frozen(np.broadcast_to(xs, (h, w))),
        grid_y=_frozen(np.broadcast_to(ys, (h, w))),
        brow_up=_frozen(brow_up),
        brow_down=_frozen(brow_down),
        lid_upper=_frozen(np.nan_to_num(lid_upper, nan=0.0)),
        lid_lower=_frozen(np.nan_to_num(lid_lower, nan=0.0)),
        lid_gap=_frozen(gap),
        skin=_frozen(skin),
    )


def _eyelids(image: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the upper and lower lid margins, (1, w) absolute y (NaN where there
    is no eye), and the eyelid skin colour above each eye, (1, w, 3) RGB."""
    w = xs.shape[1]
    # Eyelid margins: per eye, a parabola through both corners and the
    # mid-lid landmark, for the upper and for the lower lid.
    lid_upper = np.full((1, w), np.nan)
    lid_lower = np.full((1, w), np.nan)
    skin = np.zeros((1, w, 3))
    for outer, upper_mid, lower_mid, inner in (
        (RIGHT_EYE_OUTER, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_INNER),
        (LEFT_EYE_OUTER, LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_EYE_INNER),
    ):
        lo_x, hi_x = sorted((outer[0], inner[0]))
        inside = (xs >= lo_x) & (xs <= hi_x)
        for mid, out in ((upper_mid, lid_upper), (lower_mid, lid_lower)):
            px, py = zip(outer, mid, inner)
            out[inside] = np.polyval(np.polyfit(px, py, 2), xs[inside])
        # The eyelid skin: the mean colour of a strip 3 to 6 px above the
        # upper lid over the middle half of the eye (below the brow).
        cx, top = upper_mid[0], upper_mid[1]
        half = (hi_x - lo_x) / 4
        patch = image[int(round(top - 6)):int(round(top - 3)), int(round(cx - half)):int(round(cx + half)) + 1]
        skin[0, inside[0]] = patch.reshape(-1, 3).mean(axis=0)
    return lid_upper, lid_lower, skin


def _above_eyes(xs: np.ndarray, lid_upper: np.ndarray) -> np.ndarray:
    """Return the (1, w) line, absolute y, that the falloff under the brows works down to.

    Where the falloff under the brows ends (less BROW_STOP, by direction): the
    upper lids; between the eyes straight from inner corner to inner corner;
    beyond the outer corners it drops away (the temples may move).
    """
    corners = sorted((RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER))
    cx_, cy_ = zip(*corners)
    lids = np.interp(xs, cx_, cy_)
    lids = np.where(np.isnan(lid_upper), lids, lid_upper)
    return lids + 0.8 * np.clip(cx_[0] - xs, 0, None) + 0.8 * np.clip(xs - cx_[-1], 0, None)


def _brow_fields(xs: np.ndarray, ys: np.ndarray, lids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the backward y displacement fields, (h, w) px, at brows = +1 and -1."""
    y0, y1 = UPPER_BOX[1], UPPER_BOX[3]
    h, w = ys.shape[0], xs.shape[1]
    # Brows: a source pixel moves up by b * lift(x) * weight(x, y): the band
    # around the brows' upper edge moves rigidly, the forehead above and the
    # skin down to the stop line follow with a smooth falloff (never below
    # the box).
    bx, by = zip(*sorted(RIGHT_BROW + LEFT_BROW))
    brow = np.interp(xs, bx, by)  # (1, w)
    band_top, band_bottom = brow - BROW_BAND[0], brow + BROW_BAND[1]
    wx = 1 - _smoothstep(np.maximum(bx[0] - xs, xs - bx[-1]) / BROW_SIDE_FALLOFF)

    def falloff(stop_above_lid: float) -> np.ndarray:  # (1, w) px of falloff under the brows
        return np.maximum(np.minimum(lids - stop_above_lid, y1 - 3.0) - band_bottom, 1.0)

    def weight(y: np.ndarray, below: np.ndarray) -> np.ndarray:  # (n, 1) absolute y -> (n, w)
        above = 1 - _smoothstep((band_top - y) / FOREHEAD_FALLOFF)
        under = 1 - _smoothstep((y - band_bottom) / below)
        return wx * np.where(y < band_top, above, np.where(y <= band_bottom, 1.0, under))

    below_up, below_down = falloff(BROW_STOP[0]), falloff(BROW_STOP[1])
    cap = _lowering_cap(below_down)

    # Backward fields at b = +1 and b = -1, by inverting the forward map of
    # each column on a fine grid (it is monotonic). A frame at b uses |b|
    # times the one of b's sign: exact at 0 and +/-1, close between.
    fine = np.arange(y0 - 8.0, y1 + 8.0, 0.125)[:, None]  # (n, 1)
    moved_up = fine - BROW_LIFT * weight(fine, below_up)  # where each fine source row lands, (n, w)
    moved_down = fine + cap * weight(fine, below_down)
    brow_up = np.empty((h, w))
    brow_down = np.empty((h, w))
    for j in range(w):
        brow_up[:, j] = np.interp(ys[:, 0], moved_up[:, j], fine[:, 0]) - ys[:, 0]
        brow_down[:, j] = np.interp(ys[:, 0], moved_down[:, j], fine[:, 0]) - ys[:, 0]
    return brow_up, brow_down


def _lowering_cap(below: np.ndarray) -> np.ndarray:
    """Return how far lowered brows may move down, (1, w) px, given the (1, w)
    px of skin below them that the squeeze spreads over.

    Raising stretches the skin under the brows and may lift them the full
    BROW_LIFT. Lowering squeezes it: a smoothstep over L px has slope up to
    1.5 / L, so the lift is capped where the brow is close to the eye to keep
    the map one-to-one. The cap varies along the brow (the gap to the eye
    does): take the least within BROW_SIDE_FALLOFF and smooth it, so the brows
    keep their shape.
    """
    w = below.shape[1]
    cap = np.minimum(BROW_LIFT, BROW_MAX_SLOPE * below / 1.5)[0]  # (w,)
    r = int(BROW_SIDE_FALLOFF)
    padded = np.pad(cap, r, mode="edge")
    cap = np.min([padded[k:k + w] for k in range(2 * r + 1)], axis=0)
    kernel = np.hanning(2 * r + 3)[1:-1]
    return np.convolve(np.pad(cap, r, mode="edge"), kernel / kernel.sum(), mode="valid")[None, :]


def _warp_upper(assets: _Assets, e: float, b: float) -> np.ndarray:
    """Return UPPER_BOX of the portrait with brows at ``b`` and eyes closed by ``e``."""
    up = assets.upper
    # Backward maps, output -> source, composed: first the brows, then the eyes.
    if b:
        y = up.grid_y + np.float32(abs(b)) * (up.brow_up if b > 0 else up.brow_down)
    else:
        y = up.grid_y
    if e > 0:
        # Per column: the upper lid margin comes down by `drop`, the lower one
        # rises by `rise`; the eyeball between them stays where it is.
        drop = np.float32(e * EYE_MEET) * up.lid_gap  # (1, w)
        rise = np.float32(e * (1 - EYE_MEET)) * up.lid_gap
        lid_u = up.lid_upper + drop  # where the upper lid margin is now
        lid_l = up.lid_lower - rise
        top = up.lid_upper - np.float32(UPPER_LID_SKIN)
        bottom = up.lid_lower + np.float32(LOWER_LID_SKIN)
        # The skin band [top, lid_u] shows [top, lid_upper]: both ends keep
        # their texture (slope 1), the middle stretches.
        in_upper = (y >= top) & (y <= lid_u)
        stretched = y - drop * _smoothstep((y - top) / (lid_u - top))
        in_lower = (y > lid_u) & (y >= lid_l) & (y <= bottom)
        raised = y + rise * (1 - _smoothstep((y - lid_l) / (bottom - lid_l)))
        y = np.where(in_upper, stretched, np.where(in_lower, raised, y))
    roi = cv2.remap(assets.image, up.grid_x, np.ascontiguousarray(y, dtype=np.float32),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if e > 0:
        roi = _tint_lids(roi, up, e)
    return roi


def _tint_lids(roi: np.ndarray, up: _UpperAssets, e: float) -> np.ndarray:
    """Blend the covered eye opening (between the photo's upper lid margin
    and the lowered one) towards the eyelid skin colour, more the more closed."""
    y0 = UPPER_BOX[1]
    h = roi.shape[0]
    y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]  # (h, 1) absolute
    drop = np.float32(e * EYE_MEET) * up.lid_gap  # (1, w)
    lid_u = up.lid_upper + drop
    # The covered band, less a 1.5 px lash line kept dark at its bottom,
    # with soft (1 px) edges; nothing where there is no eye.
    start, end = up.lid_upper - 1.0, lid_u - 1.5
    alpha = np.clip(np.minimum(y - start, end - y), 0.0, 1.0) * np.float32(EYELID_TINT * e)
    alpha = np.where(up.lid_gap > 0, alpha, 0.0)[..., None]  # (h, w, 1)
    out = roi.astype(np.float32) * (1 - alpha) + up.skin * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _fill_gap(roi: np.ndarray, assets: _Assets, m: float) -> np.ndarray:
    """Paint the mouth interior into the opened gap; roi is (h, w, 3) uint8 of MOUTH_BOX."""
    h = roi.shape[0]
    y = np.arange(h, dtype=np.float32)[:, None]  # (h, 1) box-relative
    top = assets.lip_line + np.float32(m) * assets.gap_top  # (1, w) upper lip edge
    bottom = assets.lip_line + np.float32(m) * assets.gap_bottom  # (1, w) lower lip edge
    # How much of each pixel's row span [y - 0.5, y + 0.5] lies inside the
    # gap [top, bottom]: anti-aliased edges, 0 where the lips touch, and a
    # faint dark line when the mouth is barely open.
    alpha = np.clip(np.minimum(y + 0.5, bottom) - np.maximum(y - 0.5, top), 0.0, 1.0)  # (h, w)
    depth = np.clip((y - top) / np.maximum(bottom - top, 1e-3), 0.0, 1.0) ** 2  # 0 top .. 1 bottom
    dark, tongue = np.float32(MOUTH_DARK), np.float32(MOUTH_TONGUE)
    colour = dark + depth[..., None] * (tongue - dark)  # (h, w, 3)
    a = alpha[..., None]
    out = roi.astype(np.float32) * (1 - a) + colour * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 for t <= 0, 1 for t >= 1, a smooth cubic between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)
