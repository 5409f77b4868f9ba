"""Export a generator to a persona: frozen TorchScript + persona.json + thumbnail.

The old project needed two scripts for this (reduce_model.py, freeze_model.py); here
one function does it, and tests make their personas through this same path.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from f2f_cam import persona as pf
from f2f_cam import sketch
from f2f_cam.errors import UserError
from f2f_cam.generator import to_image, to_input
from f2f_cam.geometry import Crop


def freeze_generator(net: nn.Module, image_size: int, dtype: str = "float32") -> torch.jit.ScriptModule:
    """eval mode, CPU, traced and frozen (BatchNorm folded into the convolutions)."""
    net = copy.deepcopy(net).cpu().eval().to(getattr(torch, dtype))
    example = torch.zeros(1, 3, image_size, image_size, dtype=getattr(torch, dtype))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: see README
        traced = torch.jit.trace(net, example)
        return torch.jit.freeze(traced.eval())


def export_persona(
    net: nn.Module,
    out_dir: Path,
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
    force: bool = False,
) -> Path:
    """Write the persona folder ``out_dir`` (atomically: temp folder, then rename).

    net: generator taking (1, 3, S, S) in [-1, 1]; canonical/neutral: (478, 2) in
    persona image pixels. Returns ``out_dir``.
    """
    pf.check_name(name)
    if dtype not in pf.DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(pf.DTYPES)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise UserError(f"{out_dir} already exists; add --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        frozen = freeze_generator(net, image_size, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(frozen, str(tmp / pf.GENERATOR_FILE))
        # Thumbnail: the persona's own neutral face, as the runtime will draw it.
        neutral_sketch = sketch.render(neutral, image_size)
        with torch.inference_mode():
            face = to_image(frozen(to_input(neutral_sketch, getattr(torch, dtype))).float())[0]
        cv2.imwrite(str(tmp / pf.THUMBNAIL), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        info = {"architecture": type(net).__name__, **(generator_info or {})}
        meta = pf.build_meta(name=name, display_name=display_name or name, image_size=image_size,
                             crop=crop, canonical=canonical, neutral=neutral, dtype=dtype,
                             generator_info=info, training=training)
        (tmp / pf.PERSONA_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if model_card:
            (tmp / pf.MODEL_CARD).write_text(model_card, encoding="utf-8")
        pf.read_persona(tmp).load_generator()  # what we wrote must load
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


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
                      result: dict | None = None):
    """Checkpoint -> persona: installed in the store, or written to ``out_file`` (.f2f).

    Returns the installed ``Persona``, or the archive path when ``out_file`` is given.
    """
    from f2f_cam.persona import PersonaStore, write_archive
    from trainers.train import build_generator_from_checkpoint, load_checkpoint

    pf.check_name(name)
    store = PersonaStore()
    if out_file is None and name in store.names() and not force:
        raise UserError(f"persona '{name}' already exists; add --force to replace it")
    ckpt = load_checkpoint(ckpt_path)
    net = build_generator_from_checkpoint(ckpt)
    p = ckpt["persona"]
    crop = Crop(**{k: p["crop"][k] for k in ("x", "y", "size", "frame_width", "frame_height")})
    if out_file is not None:
        base = Path(out_file).resolve().parent
        if not base.is_dir():
            raise UserError(f"cannot write {out_file}: folder {base} does not exist")
    else:
        base = store.root.parent
        base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=base) as tmp:
        folder = export_persona(
            net, Path(tmp) / name, name=name, display_name=display_name or name,
            image_size=ckpt["config"]["size"], crop=crop,
            canonical=np.array(p["canonical"], np.float32), neutral=np.array(p["neutral"], np.float32),
            training=training_facts(ckpt, result), dtype=dtype,
            generator_info={"ngf": ckpt["config"]["ngf"], "norm": ckpt["config"].get("norm", "batch"),
                            "checkpoint_step": ckpt["step"]},
        )
        if out_file is not None:
            return write_archive(folder, Path(out_file))
        return store.install_folder(folder, force=force)
