"""Export a generator to a persona: frozen TorchScript + persona.json + thumbnail.

The old project needed two scripts for this (reduce_model.py, freeze_model.py); here
``persona_files`` makes the files in memory, and one checked write puts them where
they go: the store (``PersonaStore.install``), a folder, or a ``.f2f`` archive. Tests
make their personas through this same path.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from f2f_cam import persona as pf
from f2f_cam import sketch
from f2f_cam import expression
from f2f_cam.errors import UserError
from f2f_cam.generator import to_image, to_input
from f2f_cam.geometry import STABLE_POINTS, Crop, apply_affine, fit_similarity
from f2f_cam.persona import PersonaStore
from trainers.checkpoint import build_generator_from_checkpoint, load_checkpoint
from trainers.dataset import load_dataset
from trainers.distill import STUDENT_FILE, load_student
from trainers.networks import fold_resize

log = logging.getLogger(__name__)

CROP_FIELDS = ("x", "y", "size", "frame_width", "frame_height")


def freeze_generator(net: nn.Module, image_size: int, dtype: str = "float32") -> torch.jit.ScriptModule:
    """eval mode, CPU, traced and frozen (BatchNorm folded into the convolutions; tied
    resize-convolutions into the plain transposed ones they equal)."""
    net = fold_resize(copy.deepcopy(net)).cpu().eval().to(getattr(torch, dtype))
    example = torch.zeros(1, 3, image_size, image_size, dtype=getattr(torch, dtype))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: see README
        traced = torch.jit.trace(net, example)
        return torch.jit.freeze(traced.eval())


def persona_files(
    net: nn.Module,
    *,
    name: str,
    image_size: int,
    crop: Crop,
    canonical: np.ndarray,
    neutral: np.ndarray,
    display_name: str | None = None,
    training: dict | None = None,
    generator_info: dict | None = None,
    dtype: str = "float32",
    model_card: str | None = None,
    expression_model: expression.ExpressionModel | None = None,
    student: tuple[nn.Module, dict] | None = None,
) -> tuple[dict[str, bytes], dict]:
    """A persona's files as bytes (frozen generator, thumbnail, persona.json, the
    expression model, model card), and its persona.json dict. Nothing is written: see
    ``export_persona`` and ``PersonaStore.install``.

    net: generator taking (1, 3, S, S) in [-1, 1]; canonical/neutral: (478, 2) in
    persona image pixels; expression_model: see ``fit_expression`` (None: the persona
    has none, and ``expression`` retargeting falls back to ``transfer``); student: a
    real-time student and its facts (``trainers.distill``), frozen the same way.
    """
    pf.check_name(name)
    if dtype not in pf.DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(pf.DTYPES)}")
    frozen = freeze_generator(net, image_size, dtype)
    generator = _script_bytes(frozen)
    # Thumbnail: the persona's own neutral face, as the runtime will draw it.
    with torch.inference_mode():
        face = to_image(frozen(to_input(sketch.render(neutral, image_size), getattr(torch, dtype))).float())[0]
    ok, thumbnail = cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of the thumbnail failed")
    info = {"architecture": type(net).__name__, **(generator_info or {})}
    meta = pf.build_meta(name=name, display_name=display_name or name, image_size=image_size,
                         crop=crop, canonical=canonical, neutral=neutral, dtype=dtype,
                         generator_info=info, training=training,
                         expression=None if expression_model is None else expression_model.facts,
                         student=None if student is None else
                         {"architecture": type(student[0]).__name__, **student[1]})
    files = {pf.GENERATOR_FILE: generator, pf.THUMBNAIL: thumbnail.tobytes(),
             pf.PERSONA_JSON: pf.dump_meta(meta)}
    if student is not None:
        files[pf.STUDENT_FILE] = _script_bytes(freeze_generator(student[0], image_size, dtype))
    if expression_model is not None:
        files[pf.EXPRESSION_FILE] = expression_model.to_bytes()
    if model_card:
        files[pf.MODEL_CARD] = model_card.encode("utf-8")
    return files, meta


def _script_bytes(module: torch.jit.ScriptModule) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: see README
        torch.jit.save(module, out)
    return out.getvalue()


def export_persona(net: nn.Module, out_dir: Path, *, force: bool = False, **persona) -> Path:
    """Write the persona folder ``out_dir`` (outside the store), checked, then atomically.

    ``persona``: ``persona_files``'s keyword arguments (name, image_size, crop, canonical,
    neutral, ..., expression_model). Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise UserError(f"{out_dir} already exists; add --force to replace it")
    files, meta = persona_files(net, **persona)
    pf.check_files(files, out_dir, f"persona at {out_dir}", meta)  # what we wrote must load
    return pf.write_folder(files, out_dir, replace=force)


def fit_expression(meta: dict, **fit_options) -> expression.ExpressionModel:
    """The persona's expression model, fitted on every pair of a dataset (``load_dataset``'s
    dict), in frame order; its neutral frame is the one nearest the dataset's neutral face."""
    pairs = sorted(meta["pairs"], key=lambda p: p["frame"])
    landmarks = np.array([p["landmarks"] for p in pairs], np.float64)
    neutral = np.asarray(meta["neutral_landmarks"], np.float64)
    neutral_index = int(np.argmin(np.abs(landmarks - neutral).sum(axis=(1, 2))))
    return expression.fit(landmarks, np.array([p["blendshapes"] for p in pairs]),
                          np.array([p["pose"] for p in pairs]), np.asarray(meta["canonical_landmarks"]),
                          neutral_index, **fit_options)


def reconstruct_frames(meta: dict, model: expression.ExpressionModel | None = None) -> np.ndarray:
    """(N, 478, 2) float32: every pair's landmarks as the expression model redraws them
    from the pair's own scores and head pose (the kind of landmarks the runtime draws the
    sketch from in ``expression`` mode), in ``meta["pairs"]`` order.

    The irises are put where the frame's own look (``expression.gaze``) puts them, within
    the model's range, as ``ExpressionModel.drive`` does with a user's; the shape is then
    moved onto the frame's landmarks by the similarity over the stable points, so that it
    differs from them by the model's expression and shape alone, not by where the head
    is. ``model``: the dataset's (``fit_expression``) when None; ``ValueError`` from the
    fit when the dataset cannot make one (fewer than 10 frames).
    """
    model = fit_expression(meta) if model is None else model
    pairs = meta["pairs"]
    mean = expression.mean_pose(np.array([p["pose"] for p in pairs], np.float64))
    ranges, stable = model.gaze_range, np.array(STABLE_POINTS)
    out = []
    for p in pairs:
        real = np.asarray(p["landmarks"], np.float64)[:, :2]
        pose = expression.head_pose(np.asarray(p["pose"], np.float64), mean)
        shape = model.predict(np.asarray(p["blendshapes"]), pose)
        if ranges is not None:
            shape = expression.look(shape, np.clip(expression.gaze(real), ranges[:, 0], ranges[:, 1]))
        out.append(apply_affine(fit_similarity(shape[stable], real[stable]), shape))
    return np.stack(out).astype(np.float32)


def checkpoint_expression(ckpt: dict, net: nn.Module | None = None) -> expression.ExpressionModel | None:
    """The expression model of the dataset a checkpoint was trained on; None (with a
    warning: the persona will fall back to ``transfer``) when that folder is gone,
    is another video's, or is an older format without expression scores.

    net: the persona's generator (fp32, eval mode); given, its face-shape bias is
    measured on the held-out photos and drawn away (``trainers.shape_bias``)."""
    folder = ckpt["dataset"]["folder"]
    try:
        meta = load_dataset(Path(folder))
        if meta["video_sha256"] != ckpt["dataset"]["video_sha256"]:
            raise UserError(f"dataset {folder} is now of another video")
        model = fit_expression(meta)
    except (UserError, ValueError) as e:
        log.warning("no expression model for this persona (%s); `expression` retargeting will "
                    "fall back to `transfer`", e)
        return None
    return model if net is None else correct_shape_bias(model, net, meta)


def correct_shape_bias(model: expression.ExpressionModel, net: nn.Module, meta: dict) -> expression.ExpressionModel:
    """``shape_bias.correct`` on a dataset's held-out pairs with this generator (fp32, eval)."""
    from f2f_cam.landmarks import LandmarkDetector
    from trainers import shape_bias

    size = int(meta["image_size"])
    val = [p for p in meta["pairs"] if p["split"] == "val"]

    def draw(points: np.ndarray) -> np.ndarray:  # what the runtime shows for these landmarks
        with torch.inference_mode():
            return to_image(net(to_input(sketch.render(points, size))))[0]

    photos = [cv2.imread(str(Path(meta["folder"]) / "B" / p["file"])) for p in val]
    photos = [None if b is None else cv2.cvtColor(b, cv2.COLOR_BGR2RGB) for b in photos]  # unreadable: left out
    mean_matrix = expression.mean_pose(np.array([p["pose"] for p in meta["pairs"]]))
    with LandmarkDetector(mode="image") as detector:
        return shape_bias.correct(model, draw, photos, np.array([p["blendshapes"] for p in val]),
                                  np.array([p["pose"] for p in val]), mean_matrix, detector)


def training_facts(ckpt: dict, result: dict | None = None) -> dict:
    """The ``training`` block of persona.json, from a checkpoint (and a train() result)."""
    hist = ckpt.get("history") or []
    last = hist[-1] if hist else {}
    facts = {
        "video_sha256": ckpt["dataset"]["video_sha256"],
        "video": Path(ckpt["dataset"]["video"]).name,
        "frames": ckpt["dataset"]["frames"], "train_pairs": ckpt["dataset"]["train"],
        "val_pairs": ckpt["dataset"]["val"],
        "epochs": ckpt["epoch"], "steps": ckpt["step"],
        "seconds": round(float(ckpt["seconds"]), 1), "minutes": round(float(ckpt["seconds"]) / 60, 1),
        "device": ckpt.get("device", "cpu"), "precision": ckpt.get("precision", "fp32"),
        "world_size": ckpt.get("world_size", 1),
        "batch_size": ckpt["config"]["batch_size"], "ngf": ckpt["config"]["ngf"],
        "ndf": ckpt["config"]["ndf"], "gan_mode": ckpt["config"]["gan_mode"],
    }
    for key in ("val_l1", "val_psnr", "val_ssim"):
        value = (result or {}).get(key, last.get(key))
        if value is not None:
            facts[key] = round(float(value), 4)
    return facts


def export_checkpoint(ckpt_path: Path, name: str, *, display_name: str | None = None,
                      out_file: Path | None = None, force: bool = False, dtype: str = "float32",
                      result: dict | None = None, store: PersonaStore | None = None):
    """Checkpoint -> persona: installed in the store, or written to ``out_file`` (.f2f).

    The generator is rebuilt from the checkpoint's own ``model_args``, frozen, checked
    once and written once; the expression model is fitted on the checkpoint's dataset;
    a real-time student distilled from this checkpoint (``checkpoints/student.pt`` of
    the same step) goes in too. Returns the installed ``Persona``, or the archive path when
    ``out_file`` is given.
    """
    pf.check_name(name)
    store = store or PersonaStore()
    if out_file is None and name in store.names() and not force:
        raise UserError(f"persona '{name}' already exists; add --force to replace it")
    ckpt = load_checkpoint(ckpt_path)
    p = ckpt["persona"]
    net = build_generator_from_checkpoint(ckpt).eval()
    student = load_student(Path(ckpt_path).parent / STUDENT_FILE, ckpt["step"])
    files, meta = persona_files(
        net, name=name, display_name=display_name or name,
        image_size=ckpt["config"]["size"], crop=Crop(**{k: p["crop"][k] for k in CROP_FIELDS}),
        canonical=np.array(p["canonical"], np.float32), neutral=np.array(p["neutral"], np.float32),
        training=training_facts(ckpt, result), dtype=dtype,
        generator_info={"ngf": ckpt["config"]["ngf"], "norm": ckpt["config"].get("norm", "batch"),
                        "checkpoint_step": ckpt["step"]},
        expression_model=checkpoint_expression(ckpt, net), student=student,
    )
    if out_file is None:
        return store.install(files, force=force, where=f"persona '{name}' from {ckpt_path}")
    pf.check_files(files, Path(out_file), f"persona '{name}' for {out_file}", meta)
    return pf.write_archive(files, Path(out_file))


def add_expression(persona: pf.Persona, video: Path, *, progress: bool = True) -> dict[str, bytes]:
    """A format-1 persona's files with an expression model fitted on its training ``video``.

    The video must be the one the persona was trained on (its SHA-256 is in persona.json):
    the same frames are sampled again (``training.frames`` of them, as the dataset
    builder does), their landmarks put through the persona's own crop, and the model is
    fitted on them with the persona's canonical face. Nothing is written: install the
    files (``PersonaStore.install``) or zip them.
    """
    from f2f_cam.landmarks import sha256_file
    from trainers.dataset import _count_frames, _find_faces, _sample_indices

    video = Path(video)
    if not video.is_file():
        raise UserError(f"no such file: {video}")
    recorded = persona.training.get("video_sha256")
    if recorded is None or sha256_file(video) != recorded:
        raise UserError(f"{video} is not the video persona '{persona.name}' was trained on (its SHA-256 "
                        f"differs from persona.json's); give that video ({persona.training.get('video', '?')}), "
                        "or train the persona again with `f2f-cam train`")
    wanted = set(_sample_indices(_count_frames(video), int(persona.training.get("frames", 400))).tolist())
    kept, _, _ = _find_faces(video, wanted, progress)
    if len(kept) < 10:
        raise UserError(f"only {len(kept)} frames of {video} have one face: too few to fit an expression model")
    landmarks = np.stack([persona.crop.to_image(k[2], persona.image_size) for k in kept])
    neutral_index = int(np.argmin(np.abs(landmarks - persona.neutral).sum(axis=(1, 2))))
    model = expression.fit(landmarks, np.stack([k[3] for k in kept]), np.stack([k[4] for k in kept]),
                           persona.canonical, neutral_index)
    meta = dict(persona.meta, format_version=pf.FORMAT_VERSION,
                expression={"file": pf.EXPRESSION_FILE, **model.facts})
    files = pf.read_files(persona.path)
    files[pf.PERSONA_JSON] = pf.dump_meta(meta)
    files[pf.EXPRESSION_FILE] = model.to_bytes()
    pf.check_files(files, persona.path, f"persona '{persona.name}'")  # what we made must load
    return files
