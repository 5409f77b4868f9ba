"""The motion scripts of the synthetic clips: how the head moves and the face talks over time.

Two styles: ``"train"`` (the clip a persona is trained on: wandering head, steady
talking, natural blinks, slow brows) and ``"drive"`` (a clip to drive a persona
with, moving unlike the training clip: a head tilted mostly one way, faster
talking with pauses, a long eyes-closed moment, brow raises and frowns). Both are
closed-form functions of time and the seed: :func:`motion_at` gives any frame's
ground truth without rendering the ones before it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from trainers.synth.frame import Motion, SynthSpec, clamp

# Head motion: each channel is a sum of three sines with these frequencies (Hz)
# and weights; the seed picks the phases. Frequencies are incommensurate so the
# motion does not visibly repeat within a clip.
MOTION_FREQS = {
    "dx": (0.37, 0.83, 1.31),
    "dy": (0.29, 0.67, 1.19),
    "scale": (0.21, 0.53, 0.97),
    "angle": (0.33, 0.77, 1.23),
}
MOTION_WEIGHTS = (0.5, 0.3, 0.2)
MOUTH_RATE = 1.6  # Hz, open-close cycles ("syllables") per second
MOUTH_WOBBLE = 0.5  # rad, seed-dependent phase modulation of the syllable rhythm
MOUTH_WOBBLE_FREQ = 0.45  # Hz
MOUTH_ENVELOPE_FREQ = 0.37  # Hz, slow change of how wide each syllable opens

# Expressions of the "train" style: a blink (eyes closing and opening again in
# BLINK_CLOSE + BLINK_HOLD + BLINK_OPEN = 0.2 s) every BLINK_EVERY s, give or
# take BLINK_JITTER (the seed picks each one's offset), the first one
# BLINK_FIRST s in; the brows drift slowly within +/- TRAIN_BROW_RANGE.
BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN = 0.07, 0.03, 0.10  # s
BLINK_EVERY = 3.5  # s
BLINK_JITTER = 0.5  # s, so blinks come 3 to 4 s apart
BLINK_FIRST = 1.2  # s, the first nominal blink (plus its jitter)
TRAIN_BROW_FREQS = (0.11, 0.19, 0.31)  # Hz
TRAIN_BROW_RANGE = 0.6

# The "drive" style: other frequencies, a head that tilts mostly one way
# (counter-clockwise, up to the full `rotate`), faster talking in bursts with
# pauses, quicker blinks, and a DRIVE_CYCLE-second cycle of set pieces: a
# brow raise, a long eyes-closed moment, a frown with narrowed eyes.
DRIVE_MOTION_FREQS = {
    "dx": (0.23, 0.59, 1.61),
    "dy": (0.41, 0.97, 1.43),
    "scale": (0.17, 0.47, 1.13),
    "angle": (0.71, 1.37, 1.89),
}
DRIVE_TILT = 0.8  # share of `rotate` in the one-way tilt; the rest wobbles both ways
DRIVE_TILT_FREQ = 0.12  # Hz, cycles of the tilt: 0 at t = 0, full around 1 / (2 f) = 4.2 s
DRIVE_TILT_HOLD = 1.4  # the tilt is min(1, HOLD * sin^2): it dwells at its full value
DRIVE_MOUTH_RATE = 2.7  # Hz, syllables per second
DRIVE_TALK_FREQ = 0.29  # Hz, talk-pause bursts
DRIVE_BLINK_EVERY = 2.2  # s
DRIVE_BLINK_FIRST = 0.9  # s
DRIVE_CYCLE = 7.0  # s
DRIVE_CYCLE_JITTER = 0.4  # s, the seed delays the whole cycle by up to this
# (start in the cycle, rise, hold, fall) in s, and the level reached.
DRIVE_BROW_RAISE = ((0.7, 0.25, 0.9, 0.35), 1.0)
DRIVE_EYES_CLOSED = ((2.9, 0.12, 1.0, 0.2), 1.0)
DRIVE_FROWN = ((4.7, 0.4, 1.0, 0.5), -0.8)
DRIVE_FROWN_SQUINT = 0.35  # eyes narrow this much while frowning fully


def motion_at(spec: SynthSpec, i: int) -> Motion:
    """Return the ground-truth motion of frame ``i``.

    "train" (the default): each head channel is a sum of sines with
    seed-dependent phases, shifted so that frame 0 is the neutral pose and
    scaled so it never exceeds the spec's limits. The mouth opens and closes
    at about MOUTH_RATE syllables a second, the eyes blink every 3 to 4 s
    (0.2 s each) and the brows drift slowly within +/- TRAIN_BROW_RANGE.

    "drive": other frequencies and phases; the head tilts mostly
    counter-clockwise (up to ``spec.rotate``), the mouth talks faster
    (DRIVE_MOUTH_RATE) in bursts with pauses, blinks come more often, and
    every DRIVE_CYCLE s the brows rise fully, the eyes stay closed for about a
    second, then the brows frown with narrowed eyes.

    Both styles stay within the spec's limits and start from the neutral
    frame (the first face a persona's retargeting sees is its neutral face).

    Args:
        spec: The clip.
        i: Frame index (0-based); time is ``i / spec.fps``.

    Returns:
        The motion; frame 0 is ``Motion(0, 0, 1, 0, 0, eyes=0, brows=0)``.
    """
    t = i / spec.fps
    rng = np.random.default_rng(spec.seed)
    # (4 head channels + 2 mouth, 3) phases in [0, 2 pi), fixed by the seed;
    # drawn first, so "train" head and mouth motion is what it always was.
    phases = rng.uniform(0.0, 2.0 * math.pi, size=(6, 3))
    # (1 brow + 4 drive head channels + 2 drive mouth, 3) more phases.
    extra = rng.uniform(0.0, 2.0 * math.pi, size=(7, 3))
    cycle_delay = float(rng.uniform(0.0, DRIVE_CYCLE_JITTER))
    if spec.style == "train":
        m = _train(spec, t, phases, extra)
    else:
        m = _drive(spec, t, extra, cycle_delay)
    return dataclasses.replace(
        m, mouth=clamp(m.mouth, 0.0, 1.0), eyes=clamp(m.eyes, 0.0, 1.0), brows=clamp(m.brows, -1.0, 1.0),
    )


def _train(spec: SynthSpec, t: float, phases: np.ndarray, extra: np.ndarray) -> Motion:
    """The "train" style at ``t`` s, expressions not yet clamped."""
    eyes = brows = mouth = 0.0
    dx = spec.shift * _wave(t, phases[0], MOTION_FREQS["dx"])
    dy = spec.shift * _wave(t, phases[1], MOTION_FREQS["dy"])
    scale = 1.0 + spec.zoom * _wave(t, phases[2], MOTION_FREQS["scale"])
    angle = spec.rotate * _wave(t, phases[3], MOTION_FREQS["angle"])
    if spec.mouth:
        # The envelope (in [0.6, 1]) makes some syllables wider than others.
        open_, slow = _syllables(t, MOUTH_RATE, float(phases[4, 0]), float(phases[5, 0]))
        mouth = open_ * (0.8 + 0.2 * slow)
    if spec.blink:
        eyes = _blinks(t, spec.seed, 0, BLINK_FIRST, BLINK_EVERY)
    if spec.brows:
        brows = TRAIN_BROW_RANGE * _wave(t, extra[0], TRAIN_BROW_FREQS)
    return Motion(dx=dx, dy=dy, scale=scale, angle=angle, mouth=mouth, eyes=eyes, brows=brows)


def _drive(spec: SynthSpec, t: float, extra: np.ndarray, cycle_delay: float) -> Motion:
    """The "drive" style at ``t`` s, expressions not yet clamped."""
    eyes = brows = mouth = 0.0
    dx = spec.shift * _wave(t, extra[1], DRIVE_MOTION_FREQS["dx"])
    dy = spec.shift * _wave(t, extra[2], DRIVE_MOTION_FREQS["dy"])
    scale = 1.0 + spec.zoom * _wave(t, extra[3], DRIVE_MOTION_FREQS["scale"])
    # 0 .. 1, one way, held at 1 for about a third of each tilt cycle.
    tilt = min(1.0, DRIVE_TILT_HOLD * math.sin(math.pi * DRIVE_TILT_FREQ * t) ** 2)
    angle = spec.rotate * (DRIVE_TILT * tilt + (1 - DRIVE_TILT) * _wave(t, extra[4], DRIVE_MOTION_FREQS["angle"]))
    if spec.mouth:
        # Talk in bursts: the envelope is 0 (a pause) about a third of the time.
        open_, _ = _syllables(t, DRIVE_MOUTH_RATE, float(extra[5, 0]), 0.0)
        talk = min(1.0, max(0.0, 0.3 + 0.9 * math.sin(2 * math.pi * DRIVE_TALK_FREQ * t + float(extra[6, 0]))))
        mouth = open_ * talk
    raise_, closed, frown = (
        level * _cycle_pulse(t - cycle_delay, DRIVE_CYCLE, *shape)
        for shape, level in (DRIVE_BROW_RAISE, DRIVE_EYES_CLOSED, DRIVE_FROWN)
    )
    if spec.blink:
        blink = _blinks(t, spec.seed, 1, DRIVE_BLINK_FIRST, DRIVE_BLINK_EVERY)
        eyes = max(blink, closed, DRIVE_FROWN_SQUINT * frown / DRIVE_FROWN[1])
    if spec.brows:
        brows = raise_ + frown
    return Motion(dx=dx, dy=dy, scale=scale, angle=angle, mouth=mouth, eyes=eyes, brows=brows)


def _wave(t: float, p: np.ndarray, freqs: tuple[float, float, float]) -> float:
    """A sum of three sines at ``t`` s with phases ``p``: 0 at t = 0, always in [-1, 1]."""
    # Each term sin(w t + p) - sin(p) is 0 at t = 0 and at most 1 + |sin p|
    # in magnitude; dividing by that keeps the sum in [-1, 1].
    total = 0.0
    for w, f, ph in zip(MOTION_WEIGHTS, freqs, p):
        ph = float(ph)
        total += w * (math.sin(2 * math.pi * f * t + ph) - math.sin(ph)) / (1 + abs(math.sin(ph)))
    return total


def _syllables(t: float, rate: float, p1: float, p2: float) -> tuple[float, float]:
    """Return the mouth opening of the syllable rhythm at ``t`` s, and the slow
    cosine an envelope is made of."""
    # sin^2 of a phase that is 0 at t = 0: closed at frame 0, open once per
    # syllable; the seed wobbles the rhythm.
    phase = math.pi * rate * t + MOUTH_WOBBLE * (math.sin(2 * math.pi * MOUTH_WOBBLE_FREQ * t + p1) - math.sin(p1))
    return math.sin(phase) ** 2, math.cos(2 * math.pi * MOUTH_ENVELOPE_FREQ * t + p2)


def _pulse(t: float, rise: float, hold: float, fall: float) -> float:
    """0 before t = 0, smoothly up to 1 over ``rise``, 1 for ``hold``, smoothly down over ``fall``."""
    if t <= 0.0 or t >= rise + hold + fall:
        return 0.0
    if t < rise:
        u = t / rise
    elif t <= rise + hold:
        return 1.0
    else:
        u = 1.0 - (t - rise - hold) / fall
    return u * u * (3.0 - 2.0 * u)


def _cycle_pulse(t: float, period: float, start: float, rise: float, hold: float, fall: float) -> float:
    """A pulse at ``start + k * period`` for k = 0, 1, ... (none before t = start)."""
    if t < 0.0:
        return 0.0
    k = math.floor(t / period)
    # A pulse may run past the end of its period: look at the one before too.
    return max(_pulse(t - kk * period - start, rise, hold, fall) for kk in (k - 1, k) if kk >= 0)


def _blinks(t: float, seed: int, stream: int, first: float, every: float) -> float:
    """Eye closing of blinks at ``first + k * every`` s, each moved by up to
    +/- BLINK_JITTER / 2 (picked by the seed), k = 0, 1, ...; 0 between."""
    k0 = math.floor((t - first) / every)
    closed = 0.0
    for k in (k0 - 1, k0, k0 + 1):
        if k < 0:
            continue
        jitter = float(np.random.default_rng([seed, 7 + stream, k]).uniform(-0.5, 0.5)) * BLINK_JITTER
        closed = max(closed, _pulse(t - (first + k * every + jitter), BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN))
    return closed

