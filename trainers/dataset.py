"""The dataset builder (the old generate_train_data.py + process.py + split.py).

VIDEO -> sampled frames -> landmarks -> one fixed crop -> (A sketch, B photo) pairs on
disk, with an index of the landmarks and the persona's canonical and neutral faces.
Format 2 also records each frame's 52 blendshape scores and 4x4 pose (what the
persona's expression model is fitted on at export).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from f2f_cam.atomic import atomic_dir
from f2f_cam.errors import UserError
from f2f_cam.landmarks import sha256_file
from f2f_cam.geometry import STABLE_POINTS, Crop, apply_affine, fit_similarity, square_around

log = logging.getLogger(__name__)

# Inner-lip midpoints (upper 13, lower 14) and the face's height (forehead 10, chin 152):
# mouth opening = gap / face height, the expression a "neutral" frame has least of.
_LIP_UPPER, _LIP_LOWER, _TOP, _CHIN = 13, 14, 10, 152


def face_crop(points: list[np.ndarray], frame_size: tuple[int, int], margin: float = 0.6) -> Crop:
    """One fixed square around where the face is over the whole video.

    points: per-frame (478, 2+) landmarks in frame pixels. The square covers the
    union of the per-frame boxes plus ``margin``, so the persona keeps its own head
    motion and background.
    """
    allpts = np.concatenate([np.asarray(p)[:, :2] for p in points])
    return square_around(allpts, *frame_size, margin=margin)


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap over face height (0 = closed)."""
    p = np.asarray(points)[:, :2]
    return float(np.linalg.norm(p[_LIP_LOWER] - p[_LIP_UPPER]) / np.linalg.norm(p[_CHIN] - p[_TOP]))


def reference_landmarks(points: list[np.ndarray], crop: Crop, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(canonical, neutral), each (478, 2) in persona image pixels.

    canonical: the mean face, after aligning every frame onto the first (so head motion
    does not blur it), placed at the mean pose. neutral: the real frame with the mouth
    most closed among the half of frames nearest the canonical shape.
    """
    img = [crop.to_image(p, image_size) for p in points]
    stable = np.array(STABLE_POINTS)
    ref = img[0]
    aligned = np.stack([apply_affine(fit_similarity(p[stable], ref[stable]), p) for p in img])
    mean_shape = aligned.mean(0)
    # Put the mean shape back at the average pose of the video.
    mean_pose = np.stack(img).mean(0)
    canonical = apply_affine(fit_similarity(mean_shape[stable], mean_pose[stable]), mean_shape)
    dist = np.linalg.norm(aligned - mean_shape, axis=2).mean(1)  # (F,) px from the mean shape
    near = np.flatnonzero(dist <= np.median(dist))
    neutral_idx = near[np.argmin([mouth_opening(img[i]) for i in near])]
    return canonical.astype(np.float32), img[neutral_idx].astype(np.float32)


# -- the dataset builder ----------------------------------------------------------

DATASET_JSON = "dataset.json"
# 2: each pair also has "blendshapes" (52 scores) and "pose" (4x4). A format-1 folder
# is refused by load_dataset (a persona trained on it would have no expression model);
# train_persona rebuilds it from the video (see trainers.recipe.ensure_dataset).
DATASET_FORMAT = 2


def fit_crop_in_frame(crop: Crop) -> Crop:
    """Shift the square inside the frame where it fits, and shrink it to the frame's
    short side where it does not, so the persona is trained on real pixels."""
    side = min(crop.size, crop.frame_width, crop.frame_height)
    cx, cy = crop.x + crop.size / 2, crop.y + crop.size / 2
    x = float(np.clip(cx - side / 2, 0, crop.frame_width - side))
    y = float(np.clip(cy - side / 2, 0, crop.frame_height - side))
    return Crop(x, y, float(side), crop.frame_width, crop.frame_height)


def _sample_indices(total: int, n: int) -> np.ndarray:
    """n frame numbers spread evenly over the whole video (not the first n)."""
    if total <= n:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, n)).astype(int))


def _count_frames(path: Path) -> int:
    """Frames in the video's data (not its index: a download cut short holds fewer)."""
    from f2f_cam.sources import VideoFileSource

    with VideoFileSource(path) as src:
        return src.count_packets()


def build_dataset(video: Path, out_dir: Path, *, frames: int = 400, size: int = 256,
                  val_fraction: float = 0.1, seed: int = 0, margin: float = 0.25,
                  progress: bool = True) -> dict:
    """VIDEO -> ``out_dir`` with A/ (sketches), B/ (photos), index and dataset.json.

    Samples ``frames`` frames over the whole video, keeps those with one face (the
    largest, when the others are much smaller: a poster, a passer-by), crops one fixed
    square around the face region for the whole video, renders the sketches with
    ``f2f_cam.sketch.render``, and splits train/val with ``seed``.
    Written into a temp folder and renamed, so a failed run leaves nothing behind.
    A video cut short gives the dataset of the frames that decode, and a warning.
    Returns the dataset.json dict.
    """
    from f2f_cam import sketch
    from f2f_cam.sources import VideoFileSource, ended_early

    video, out_dir = Path(video), Path(out_dir)
    if size not in (64, 128, 256, 512):
        raise UserError(f"invalid --size {size}; choose one of: 64, 128, 256, 512")
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if frames < 2:
        raise UserError(f"--frames must be at least 2, got {frames}")
    if out_dir.exists() and not (out_dir / DATASET_JSON).is_file():
        # Only an earlier dataset is ever replaced: never someone's file or folder.
        what = "a folder that is not an f2f-cam dataset" if out_dir.is_dir() else "a file"
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise UserError(f"{out_dir} is {what}; give a new folder for the dataset")
    with VideoFileSource(video) as probe:  # clear errors for missing / non-video files
        frame_size, expected = probe.size, probe.frame_count
    total = _count_frames(video)
    if total == 0:
        raise UserError(f"{video} has no video frames")
    wanted = set(_sample_indices(total, frames).tolist())

    kept, skipped, decoded = _find_faces(video, wanted, progress)
    short = ended_early(video, decoded, expected)
    if not kept and skipped["several faces"]:
        raise UserError(f"no sampled frame of {video} has one face that is clearly the person's "
                        f"({skipped['several faces']} of the {len(wanted)} show several faces of about the same "
                        "size); use a video of one person alone")
    if not kept:
        raise UserError(f"no face found in {video}; use a video where one face is clearly visible")
    n_val = max(1, int(round(len(kept) * val_fraction)))
    if len(kept) - n_val < 4:
        raise UserError(f"only {len(kept)} of {len(wanted)} sampled frames have one usable face "
                        f"({skipped['no face']} have none, {skipped['several faces']} several of about the same "
                        f"size); too few for a train/val split (need at least {4 + n_val}): "
                        + (f"{short}; use a complete copy" if short else "use a longer video or more --frames"))
    if short:
        log.warning("%s; the dataset is made of the %d that decoded", short, decoded)

    points = [k[2] for k in kept]
    crop = fit_crop_in_frame(face_crop(points, frame_size, margin=margin))
    canonical, neutral = reference_landmarks(points, crop, size)
    rng = np.random.default_rng(seed)
    val_set = set(rng.choice(len(kept), size=n_val, replace=False).tolist())

    # Pass 2 into a temp folder beside the destination, renamed when complete (only an
    # earlier dataset, checked above, is ever replaced).
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir, replace=True) as tmp:
        index = _write_pairs(video, tmp, kept, val_set, crop, size, progress)
        meta = {
            "format": DATASET_FORMAT,
            "video": str(video.resolve()), "video_sha256": sha256_file(video),
            "image_size": size, "sketch_version": sketch.SKETCH_VERSION, "seed": seed,
            "frames_total": total, "frames_expected": expected, "frames_decoded": decoded,
            "frames_sampled": len(wanted), "frames_kept": len(kept),
            "skipped": skipped, "train": len(kept) - n_val, "val": n_val,
            "crop": crop.as_dict(),
            "canonical_landmarks": np.round(canonical, 3).tolist(),
            "neutral_landmarks": np.round(neutral, 3).tolist(),
            "pairs": index,
        }
        (tmp / DATASET_JSON).write_text(json.dumps(meta), encoding="utf-8")
    return meta


def _find_faces(video: Path, wanted: set[int], progress: bool) -> tuple[list, dict, int]:
    """Pass 1: landmarks on the sampled frames (IMAGE mode: they are far apart in time).

    Returns ([(frame number, time, (478, 3) points, (52,) scores, (4, 4) pose)] of the
    frames with one face, or one clearly the largest; {"no face": n, "several faces": n}
    (two or more of about the same size: which one is the person?); the number of
    frames the video decoded to.
    """
    from tqdm import tqdm

    from f2f_cam.landmarks import LandmarkDetector
    from f2f_cam.sources import VideoFileSource

    kept: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = []
    skipped = {"no face": 0, "several faces": 0}
    with VideoFileSource(video) as src, LandmarkDetector(mode="image", max_faces=2, blendshapes=True) as det:
        bar = tqdm(total=len(wanted), desc="landmarks", unit="frame", disable=not progress)
        decoded = 0
        for i, (t, frame) in enumerate(src):
            decoded = i + 1
            if i not in wanted:
                continue
            faces = sorted(det.detect_all(frame), key=lambda f: f.area, reverse=True)
            bar.update(1)
            # A second face over half the area of the largest (two people in view) leaves
            # it open whose persona this is: a mix of both would be worse than none.
            if not faces or (len(faces) > 1 and faces[1].area > faces[0].area / 2):
                skipped["no face" if not faces else "several faces"] += 1
                continue
            kept.append((i, t, faces[0].points, faces[0].blendshapes, faces[0].pose))
        bar.close()
    return kept, skipped, decoded


def _write_pairs(video: Path, folder: Path, kept: list, val_set: set[int], crop: Crop, size: int,
                 progress: bool) -> list[dict]:
    """Pass 2: the kept frames' crops (B/) and sketches (A/) in ``folder``; their index."""
    import cv2
    from tqdm import tqdm

    from f2f_cam import sketch
    from f2f_cam.sources import VideoFileSource

    (folder / "A").mkdir()
    (folder / "B").mkdir()
    index = []
    by_frame = {entry[0]: k for k, entry in enumerate(kept)}
    m = crop.affine(size)
    with VideoFileSource(video) as src:
        bar = tqdm(total=len(kept), desc="pairs", unit="pair", disable=not progress)
        for i, (t, frame) in enumerate(src):
            k = by_frame.get(i)
            if k is None:
                continue
            pts = np.round(crop.to_image(kept[k][2], size), 2)  # as stored: A re-renders from the index
            photo = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            name = f"{i:06d}.png"
            _write_png(folder / "A" / name, sketch.render(pts, size))
            _write_png(folder / "B" / name, photo)
            index.append({"file": name, "frame": i, "time": round(float(t), 4),
                          "split": "val" if k in val_set else "train", "landmarks": pts.tolist(),
                          "blendshapes": np.round(kept[k][3].astype(np.float64), 5).tolist(),
                          "pose": np.round(kept[k][4].astype(np.float64), 5).tolist()})
            bar.update(1)
        bar.close()
    return index


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Encoded in memory, then written: a failed write raises (a full disk is then the
    one line of ``DiskFull``), where ``cv2.imwrite`` returns False and prints libpng's
    "Write Error"."""
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"PNG encoding of {path.name} failed")
    path.write_bytes(png.tobytes())


def load_dataset(folder: Path) -> dict:
    """Read and check a dataset folder: every indexed pair must have both images."""
    from f2f_cam import sketch

    folder = Path(folder)
    meta_path = folder / DATASET_JSON
    if not meta_path.is_file():
        raise UserError(f"{folder} is not a dataset folder (no {DATASET_JSON}); make one with `f2f-cam dataset`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        pairs = meta["pairs"]
        size = meta["image_size"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{meta_path} is corrupt ({e}); rebuild the dataset") from e
    if meta.get("format") != DATASET_FORMAT:
        raise UserError(f"dataset {folder} has format {meta.get('format')}, this f2f-cam reads format "
                        f"{DATASET_FORMAT} (it records the expression scores a persona's expression model "
                        f"is fitted on); rebuild it with `f2f-cam dataset VIDEO -o {folder}`")
    if meta.get("sketch_version") != sketch.SKETCH_VERSION:
        raise UserError(f"dataset {folder} was drawn with sketch version {meta.get('sketch_version')}, "
                        f"this f2f-cam draws version {sketch.SKETCH_VERSION}; rebuild it with `f2f-cam dataset`")
    a_files = {p.name for p in (folder / "A").glob("*.png")}
    b_files = {p.name for p in (folder / "B").glob("*.png")}
    listed = {p["file"] for p in pairs}
    if a_files != b_files or listed != a_files:
        missing = sorted((listed - a_files) | (listed - b_files) | (a_files ^ b_files))[:3]
        raise UserError(f"dataset {folder} has mismatched pairs (e.g. {', '.join(missing)}); "
                        "rebuild it with `f2f-cam dataset`")
    if not any(p["split"] == "val" for p in pairs) or not any(p["split"] == "train" for p in pairs):
        raise UserError(f"dataset {folder} needs both train and val pairs; rebuild it")
    for p in pairs:
        try:
            shapes = [np.shape(p.get(key)) for key in ("landmarks", "blendshapes", "pose")]
        except ValueError:  # ragged lists
            shapes = []
        if shapes != [(478, 2), (52,), (4, 4)]:
            raise UserError(f"dataset {folder}: landmarks, scores or pose of {p['file']} are malformed; rebuild it")
    meta["folder"] = str(folder)
    meta["image_size"] = size
    return meta
