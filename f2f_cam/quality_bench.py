"""``f2f-cam bench --quality``: how good a persona looks when someone drives it.

Every driver runs through the real pipeline (``flow.run`` into a measuring sink, the
persona layout at 512x512), once per retarget mode, and MediaPipe's own landmarker
with blendshapes measures driver and output alike (``f2f_cam.quality``). The figures:

face_rate        output frames with a face found, in [0, 1]
expr_r           mean of the four below (those defined); each a Pearson r in [-1, 1] between
expr_r_jaw ...   driver and output blendshape series, null when a series is constant
identity_keep    share of frames whose face-shape ratios are nearer the persona's (its
                 reference frames with the nearest head turn and expression) than the
                 driver's, over frames where the driver differs (null: none does)
sharpness_ratio  Laplacian variance of the output face (128 px crop) over the reference's
flicker_ratio    mean frame-to-frame change of the output face crop over the driver's
pose_ssim_min    least SSIM between the output for a generated driver moved (scale 0.6-1.4,
                 shift +-20 % of the frame) and for the same driver centred at scale 1

Default drivers are generated (``trainers.synth``: the astronaut as she is, and with
another face shape), so it runs with no files. Self-reenactment (PSNR, SSIM, L1, the
sharpness ratio and where the irises land, on the held-out validation pairs) needs the
persona's dataset.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError
from f2f_cam.quality import (
    EXPRESSIONS, Track, face_crop, flicker, gaze_offset, identity_keep, image_ssim, iris_offset, masked_psnr, measure, pearson,
    ratio, ratios_alike, region_psnr, sharpness,
)
from f2f_cam.registry import RETARGET_MODES

log = logging.getLogger(__name__)

OUT_SIZE = (512, 512)  # the persona layout the output is measured at
DEFAULT_FRAMES = 105  # per driver: 7 s of a generated driver at 15 fps, one cycle of its expressions
FIGURES = ("face_rate", "expr_r", *(f"expr_r_{k}" for k in EXPRESSIONS), "identity_keep",
           "sharpness_ratio", "flicker_ratio", "gaze_offset", "pose_ssim_min")
# The pose grid: scales x shifts (fractions of the frame width and height: to the top left
# and the bottom right corner), each against the centred driver at scale 1.
POSE_SCALES = (0.6, 1.0, 1.4)
POSE_SHIFTS = ((0.0, 0.0), (-0.2, -0.2), (0.2, 0.2))
POSE_FRAMES = 4  # frames per grid point (the expression changes over them)
POSE_GAP = 2  # black frames between grid points: the tracker and smoother start afresh


@dataclass(frozen=True)
class Clip:
    """A driver: a video file, read up to ``frames`` frames (from the start)."""

    name: str
    path: Path
    frames: int
    generated: bool = False  # made by trainers.synth (in a temporary folder)

    def __iter__(self):
        return read_frames(self.path, self.frames)


@dataclass(frozen=True)
class Reference:
    """The persona's own face: its ratios (per head turn) and the sharpness a real face has."""

    source: str
    ratios: np.ndarray  # (5,) median face-shape ratios
    sharpness: float  # mean Laplacian variance of its 128 px face crops
    frames: int  # frames with a face
    note: str | None = None  # when it is a stand-in for the persona's real video
    track: Track | None = None  # every reference frame measured (ratios and head turns)

    def ratios_like(self, output: Track) -> np.ndarray:
        """(T, 5) the persona's ratios with each output frame's head turn and expression
        (its frames most alike, ``ratios_alike``); its median ratios without a track."""
        if self.track is None:
            return np.tile(self.ratios, (len(output.samples), 1))
        return ratios_alike(self.track.ratios(), self.track.likeness(), output.likeness())


def read_frames(path: Path, limit: int, spread: bool = False):
    """``(t, frame)`` of a video: the first ``limit``, or ``limit`` spread over it."""
    from f2f_cam.sources import VideoFileSource

    with VideoFileSource(path) as src:
        step = max(1, src.frame_count // limit) if spread and src.frame_count else 1
        kept = 0
        for i, (t, frame) in enumerate(src):
            if kept >= limit:
                return
            if i % step == 0:
                kept += 1
                yield t, frame


def check_video(path: Path, what: str) -> Path:
    """``path`` if it is a readable video with frames, else the one-line UserError."""
    path = Path(path)
    if next(read_frames(path, 1), None) is None:
        raise UserError(f"{what} {path} has no video frames")
    return path


def generated_drivers(folder: Path, frames: int) -> list[Clip]:
    """Two generated drivers in ``folder``: the astronaut, and the astronaut with a wider
    face, eyes further apart and a longer nose (a face shape unlike hers)."""
    synth = _synth()
    seconds = frames / 15.0
    clips = []
    for name, seed, shape in (("synth", 1, synth.FaceShape()),
                              ("synth-shape", 2, synth.FaceShape(width=0.12, eyes=0.15, nose=0.15))):
        path = folder / f"{name}.mp4"
        synth.write_video(path, synth.SynthSpec(seconds=seconds, fps=15.0, style="drive", seed=seed, shape=shape))
        clips.append(Clip(f"{name} (generated)", path, frames, generated=True))
    return clips


def _synth():
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        raise UserError("give --driver VIDEO (the generated drivers need scikit-image: "
                        "pip install 'f2f-cam[synth]')")
    from trainers import synth  # only inside the command: the runtime needs no trainers

    return synth


def find_dataset(persona) -> Path | None:
    """The persona's dataset folder, if it is at hand: the path its training facts
    record, else its run folder's ``DATA_DIR/runs/NAME/dataset``, else another run's
    (a persona trained with ``train --dataset RUNS/OTHER/dataset``); only one built from
    the persona's own video (same SHA-256) at its image size, with as many held-out
    pairs as it was validated on, counts."""
    import json

    from f2f_cam import paths

    recorded = persona.training.get("dataset")
    runs = paths.data_dir() / "runs"
    own = runs / persona.name / "dataset"
    others = sorted(p.parent for p in runs.glob("*/dataset/dataset.json") if p.parent != own) if runs.is_dir() else []
    sha, val = persona.training.get("video_sha256"), persona.training.get("val_pairs")
    for folder in ([Path(recorded)] if isinstance(recorded, str) else []) + [own] + others:
        try:
            meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (meta.get("image_size") == persona.image_size and (sha is None or meta.get("video_sha256") == sha)
                and (val is None or meta.get("val") == val)):
            return folder
    return None


def reference_for(persona, path: Path | None, dataset: Path | None, frames: int, precision: str) -> Reference:
    """The reference: ``path``; else the dataset's video if it is at hand, else the
    dataset's photos, else the persona's idle frame (each stand-in with a note)."""
    import json

    from f2f_cam.sources import read_image

    if path is None and dataset is not None:
        video = Path(json.loads((dataset / "dataset.json").read_text(encoding="utf-8")).get("video", ""))
        if video.is_file():
            path = video
        else:
            photos = sorted((dataset / "B").glob("*.png"))
            photos = photos[::max(1, len(photos) // frames)][:frames]
            return _reference(((None, read_image(p)) for p in photos), f"dataset {dataset}",
                              f"the training video is not at hand: the dataset's {persona.image_size} px "
                              "photos stand in for it")
    if path is not None:
        return _reference(read_frames(path, frames, spread=True), str(path))
    with _pipeline(persona, "raw", precision) as pipe:
        idle = pipe.idle()[1]
    return _reference([(None, idle)], f"persona '{persona.name}' idle frame",
                      "no reference video and no dataset: the persona's idle frame (its neutral face "
                      f"through its generator, {persona.image_size} px) stands in; give --reference VIDEO")


def _reference(frames, source: str, note: str | None = None) -> Reference:
    track = measure(frames, mode="image")
    if not track.found.any():
        raise UserError(f"no face found in the reference {source}; give --reference VIDEO of the persona's face")
    return Reference(source, np.nanmedian(track.ratios(), axis=0), track.sharpness(), int(track.found.sum()), note,
                     track)


def _pipeline(persona, mode: str, precision: str):
    from f2f_cam.pipeline import build_pipeline

    # The network asked for, never a hand-over timed on this machine (``Persona.as_student``).
    cfg = PipelineConfig(persona=persona.name, layout="persona", retarget=mode, precision=precision,
                         student="never")
    return build_pipeline(cfg, OUT_SIZE, persona=persona)


def drive(persona, mode: str, frames, sink, precision: str, tick=None):
    """Run ``frames`` (``(t, frame)``) through the persona's pipeline into ``sink``."""
    from f2f_cam import flow

    with _pipeline(persona, mode, precision) as pipe:
        flow.run(frames, pipe, sink, on_frame=tick)
    return sink


def driver_figures(driver: Track, output: Track, ref: Reference) -> dict:
    """The per-driver figures of one mode (see the module docstring)."""
    d, o = driver.expressions(), output.expressions()
    rs = {f"expr_r_{k}": pearson(d[:, i], o[:, i]) for i, k in enumerate(EXPRESSIONS)}
    defined = [r for r in rs.values() if r is not None]
    return {
        "face_rate": output.face_rate,
        "expr_r": float(np.mean(defined)) if defined else None, **rs,
        "identity_keep": identity_keep(output.ratios(), driver.ratios(), ref.ratios_like(output)),
        "sharpness_ratio": ratio(output.sharpness(), ref.sharpness),
        "flicker_ratio": ratio(flicker(output.crops()), flicker(driver.crops())),
        "gaze_offset": gaze_offset(driver.gazes(), output.gazes()),
    }


def pose_frames() -> tuple[list, list[tuple[float, tuple[float, float]]]]:
    """The pose grid as one frame sequence: ``(frames, poses)``; segment k is poses[k]
    (scale, (dx, dy)), the first the centred driver at scale 1."""
    import dataclasses

    synth = _synth()
    # A smaller face (0.8) so that at 1.4 times and shifted by 20 % it stays in the frame.
    spec = synth.SynthSpec(style="drive", seed=3, fps=15.0, seconds=POSE_FRAMES / 15.0, face_scale=0.8)
    poses = [(1.0, (0.0, 0.0))] + [(s, d) for s in POSE_SCALES for d in POSE_SHIFTS if (s, d) != (1.0, (0.0, 0.0))]
    black = np.zeros((spec.height, spec.width, 3), np.uint8)
    frames, i = [], 0
    for scale, (dx, dy) in poses:
        for j in range(POSE_FRAMES):
            m = dataclasses.replace(synth.motion_at(spec, j), dx=dx * spec.width, dy=dy * spec.height,
                                    scale=scale, angle=0.0)
            frames.append((i / spec.fps, synth.render_frame(spec, m)))
            i += 1
        for _ in range(POSE_GAP):
            frames.append((i / spec.fps, black))
            i += 1
    return frames, poses


class _Collect:
    """A sink that keeps every frame."""

    def __init__(self):
        self.frames: list[np.ndarray] = []

    def write(self, frame, t=None) -> None:
        self.frames.append(frame)


def pose_ssim_min(persona, mode: str, frames: list, precision: str, tick=None) -> float:
    """Least mean SSIM of a moved grid point's outputs against the centred one's."""
    out = drive(persona, mode, frames, _Collect(), precision, tick).frames
    seg = POSE_FRAMES + POSE_GAP
    segments = [out[k:k + POSE_FRAMES] for k in range(0, len(out), seg)]
    return min(image_ssim(s, segments[0]) for s in segments[1:])


def self_reenactment(persona, dataset: Path | None, precision: str) -> dict:
    """The generator on the persona's held-out validation pairs: PSNR (dB), SSIM, L1 (on
    [0, 1] images, as training validates; also inside the face's outline, outside it,
    and over the eyes alone: ``psnr_face``, ``psnr_rest``, ``psnr_eyes``), the sharpness
    ratio (generated over real face crops, both at the persona's image size, the face
    box from the pair's landmarks), and ``iris_offset``: the median, over the frames
    with a face found, of how far the generated irises sit from the pair's own
    (``quality.iris_offset``, in eye widths), beside ``iris_offset_real``, the same
    landmarker on the real photos (its own error: the floor); and ``checkerboard``, the
    checkerboard of the transposed convolutions that the generated frames have and the
    real ones do not (``trainers.step.grid_l1`` on [0, 1] images: the mean offset of the
    2- and 4-px sub-pixel phases, held over 16 and 32 px).
    ``{"available": False, "note": ...}`` when the dataset is not at hand."""
    if dataset is None:
        return {"available": False,
                "note": f"no dataset of persona '{persona.name}' at hand (looked for the one recorded in "
                        "persona.json and DATA_DIR/runs/NAME/dataset): no self-reenactment figures"}
    import torch

    from f2f_cam.generator import Generator, to_image
    from f2f_cam.landmarks import LandmarkDetector
    from trainers.data import EYE_OUTLINES, PairedDataset, parts_mask
    from trainers.dataset import load_dataset
    from trainers.metrics import image_metrics
    from trainers.step import grid_l1

    try:
        meta = load_dataset(dataset)
    except UserError as e:  # e.g. an older dataset format: say why, measure the rest
        return {"available": False, "note": f"self-reenactment skipped: {e}"}
    val = PairedDataset(meta, "val")
    gen = Generator(persona, precision=precision, student="never")
    sums = {"psnr": 0.0, "ssim": 0.0, "l1": 0.0, "psnr_face": 0.0, "psnr_rest": 0.0, "psnr_eyes": 0.0, "checkerboard": 0.0}
    fake_sharp, real_sharp = [], []
    iris: dict[str, list[float]] = {"iris_offset": [], "iris_offset_real": []}

    with LandmarkDetector(mode="image") as detector:
        for start in range(0, len(val), 8):
            items = [val[j] for j in range(start, min(start + 8, len(val)))]
            a, b = torch.stack([x[0] for x in items]), torch.stack([x[1] for x in items])
            fake = gen.forward(a)
            for k, v in image_metrics(fake, b).items():
                sums[k] += v.sum().item()
            sums["checkerboard"] += sum(grid_l1(f[None], r[None]).item() / 2 for f, r in zip(fake.float(), b))
            for j, (f, r) in enumerate(zip((fake.float().clamp(-1, 1) + 1) / 2, (b + 1) / 2), start):
                f, r = f.permute(1, 2, 0).numpy(), r.permute(1, 2, 0).numpy()
                face, rest = region_psnr(f, r, val.points[j])
                sums["psnr_face"] += face
                sums["psnr_rest"] += rest
                sums["psnr_eyes"] += masked_psnr(f, r, parts_mask(val.points[j], val.size, EYE_OUTLINES) > 0)
            for j, image in enumerate(to_image(fake), start):
                fake_sharp.append(sharpness(face_crop(image, val.points[j])))
                real_sharp.append(sharpness(face_crop(val.photos[j], val.points[j])))
                for key, picture in (("iris_offset", image), ("iris_offset_real", val.photos[j])):
                    found = detector(picture)
                    if found is not None:
                        iris[key].append(iris_offset(found.points, val.points[j]))
    n = len(val)
    return {"available": True, "dataset": str(dataset), "frames": n,
            **{k: round(v / n, 4) for k, v in sums.items()},
            "sharpness_ratio": round(ratio(float(np.mean(fake_sharp)), float(np.mean(real_sharp))) or 0.0, 4),
            **{k: round(float(np.median(v)), 4) if v else None for k, v in iris.items()}}


def bench_quality(persona, drivers=(), reference: Path | None = None, modes=(), frames: int = DEFAULT_FRAMES,
                  precision: str = "auto", progress: bool = True) -> dict:
    """The quality figures of ``persona``, per retarget mode (default: every registered
    one), driven by ``drivers`` (video files; default: generated ones), up to ``frames``
    frames each. Bad input (an unknown mode, a driver or reference that is not a video
    or has no face) is a ``UserError`` before anything is run."""
    from tqdm import tqdm

    from f2f_cam.quality import FaceMeter

    modes = tuple(RETARGET_MODES.check(m) for m in modes) or RETARGET_MODES.names()
    if frames < 3:
        raise UserError(f"--frames {frames}: need at least 3 frames per driver")
    reference = None if reference is None else check_video(reference, "the reference")
    clips = [Clip(Path(p).name, check_video(Path(p), "the driver"), frames) for p in drivers]
    with tempfile.TemporaryDirectory(prefix="f2f-quality-") as tmp:
        clips = clips or generated_drivers(Path(tmp), frames)
        tracks = [measure(c) for c in clips]
        for c, track in zip(clips, tracks):
            if not track.found.any():
                raise UserError(f"no face found in the driver {c.path}; use a video where a face is clearly visible")
        dataset = find_dataset(persona)
        ref = reference_for(persona, reference, dataset, frames, precision)
        poses, _ = pose_frames()
        per_driver: list[dict] = [{} for _ in clips]
        pose: dict[str, float] = {}
        total = len(modes) * (sum(len(t.samples) for t in tracks) + len(poses))
        with tqdm(total=total, unit="frame", desc="quality", disable=not progress, dynamic_ncols=True) as bar:
            def tick(_t: float) -> None:
                bar.update(1)

            for mode in modes:
                bar.set_postfix(mode=mode)
                for k, (c, track) in enumerate(zip(clips, tracks)):
                    with FaceMeter() as meter:
                        drive(persona, mode, c, meter, precision, tick)
                        per_driver[k][mode] = driver_figures(track, meter.track(), ref)
                pose[mode] = pose_ssim_min(persona, mode, poses, precision, tick)
    self_figures = self_reenactment(persona, dataset, precision)
    summary = {mode: _rounded({**{f: _mean(d[mode][f] for d in per_driver) for f in FIGURES[:-1]},
                               "pose_ssim_min": pose[mode]}) for mode in modes}
    return {
        "persona": persona.name, "image_size": persona.image_size, "frames": frames, "modes": summary,
        "drivers": [{"name": c.name, "source": "generated" if c.generated else str(c.path),
                     "frames": len(t.samples), "face_rate": t.face_rate,
                     "modes": {m: _rounded(d[m]) for m in modes}} for c, t, d in zip(clips, tracks, per_driver)],
        "reference": {"source": ref.source, "frames": ref.frames, "sharpness": round(ref.sharpness, 2),
                      "note": ref.note},
        "self": self_figures,
    }


def format_quality(r: dict) -> str:
    """The figures as a table, one column per mode, with the drivers, reference and
    self-reenactment beside it."""
    modes = list(r["modes"])
    drivers = ", ".join(f"{d['name']} ({d['frames']} frames)" for d in r["drivers"])
    lines = [f"persona {r['persona']} ({r['image_size']} px), output 512x512; drivers: {drivers}",
             f"reference: {r['reference']['source']} ({r['reference']['frames']} frames with a face)"]
    if r["reference"]["note"]:
        lines.append(f"  note: {r['reference']['note']}")
    lines.append(f"  {'figure':<16}" + "".join(f"{m:>12}" for m in modes))
    for f in FIGURES:
        cells = (r["modes"][m][f] for m in modes)
        lines.append(f"  {f:<16}" + "".join(f"{'-' if v is None else f'{v:.3f}':>12}" for v in cells))
    s = r["self"]
    if s["available"]:
        lines.append(f"self-reenactment ({s['frames']} held-out pairs): PSNR {s['psnr']:.2f} dB, "
                     f"SSIM {s['ssim']:.3f}, L1 {s['l1']:.4f}, sharpness ratio {s['sharpness_ratio']:.3f}; "
                     f"PSNR inside the face's outline {s['psnr_face']:.2f} dB, outside it {s['psnr_rest']:.2f} dB, "
                     f"over the eyes {s['psnr_eyes']:.2f} dB; checkerboard {s['checkerboard']:.4f}; "
                     f"irises {_eyes(s['iris_offset'])} of an eye's width from the real ones' "
                     f"(the landmarker on the real photos: {_eyes(s['iris_offset_real'])})")
    else:
        lines.append(f"self-reenactment: {s['note']}")
    lines.append("  (-: undefined, e.g. a constant series, or no frame where the driver's face shape differs)")
    return "\n".join(lines)


def _eyes(offset: float | None) -> str:
    return "- (no face found)" if offset is None else f"{offset:.3f}"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _rounded(figures: dict) -> dict:
    return {k: None if v is None else round(v, 4) for k, v in figures.items()}
