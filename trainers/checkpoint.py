"""Checkpoints that describe themselves, as in nanoGPT.

A checkpoint holds the networks' weights and their constructor arguments
(``model_args``), the optimizers, counters, every rank's RNG state, the config dict,
the sketch version, the dataset it was trained on and the persona geometry, so it
rebuilds its own networks, resumes exactly, and exports without any other file.
Loaded with ``torch.load(weights_only=True)``: nothing is unpickled but tensors and
plain containers.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from f2f_cam import sketch
from f2f_cam.atomic import atomic_path
from f2f_cam.errors import UserError, one_line
from trainers.config import ARCH_FIELDS, TrainConfig, model_args
from trainers.distributed import Dist, gather_tensors
from trainers.networks import define_D, define_G

CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a kill at any moment, or a full disk, leaves the previous good checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _KeepWriteError(f)
        try:
            torch.save(state, out)
        except RuntimeError:
            if out.error is None:
                raise
            raise out.error from None  # a full disk is an OSError again (atomic_path says so in a line)
        f.flush()
        os.fsync(f.fileno())  # the data on disk before the rename makes it the checkpoint


class _KeepWriteError:
    """The file ``torch.save`` writes through, keeping the OSError of a failed write:
    torch turns it into an opaque RuntimeError ("unexpected pos 704 vs 598")."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def load_checkpoint(path: Path) -> dict:
    """Load with ``weights_only=True`` (no arbitrary unpickling) and check it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such checkpoint: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage, a foreign pickle: many exception types
        raise UserError(f"checkpoint {path} is corrupt or truncated ({one_line(e, 120)}); "
                        "use an earlier one or train again") from e
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION \
            or not isinstance(ckpt.get("G"), dict):
        raise UserError(f"{path} is not an f2f-cam checkpoint")
    if ckpt.get("sketch_version") != sketch.SKETCH_VERSION:
        raise UserError(f"checkpoint {path} was trained on sketch version {ckpt.get('sketch_version')}, "
                        f"this f2f-cam draws version {sketch.SKETCH_VERSION}; train again")
    # A diverged run saves NaN weights: exported, they draw nothing; resumed, they stay NaN.
    for net in ("G", "G_ema", "D"):
        weights = ckpt.get(net) if isinstance(ckpt.get(net), dict) else {}
        bad = next((k for k, t in weights.items() if isinstance(t, torch.Tensor)
                    and t.is_floating_point() and not torch.isfinite(t).all()), None)
        if bad is not None:
            raise UserError(f"checkpoint {path} has NaN or infinite weights ({net} {bad}): training "
                            "diverged; use an earlier checkpoint or train again")
    return ckpt


def check_resumable(ckpt: dict, cfg: TrainConfig, dataset_sha: str, path: Path) -> None:
    """Refuse to resume a run made with other networks, another loss or another video."""
    # A field an older checkpoint lacks had its default then (e.g. num_D, lambda_feat);
    # lambda_face came in with a default of 1, and a checkpoint without it has no face D;
    # resize_up with a default of 2, and one without it has only transposed convolutions.
    defaults = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, "lambda_face": 0.0, "resize_up": 0}
    old = {k: ckpt["config"].get(k, defaults[k]) for k in ARCH_FIELDS}
    diff = [f"{k}={old[k]!r} (now {getattr(cfg, k)!r})" for k in ARCH_FIELDS if old[k] != getattr(cfg, k)]
    if diff:
        raise UserError(f"checkpoint {path} was made with another config: {', '.join(diff)}; "
                        "use the same options, or start without --resume in a new folder")
    if ckpt["dataset"]["video_sha256"] != dataset_sha:
        raise UserError(f"checkpoint {path} was trained on another video; start a new run")


# -- networks from their constructor arguments ----------------------------------------

def build_networks(args: dict) -> tuple[nn.Module, nn.Module]:
    """(G, D), freshly initialised, from ``model_args`` (see ``trainers.config.model_args``)."""
    return _define(define_G, args["G"]), _define(define_D, args["D"])


def _define(factory, args: dict) -> nn.Module:
    """``factory(kind, **the rest)``: define_G / define_D fail loudly on an unknown kind."""
    rest = dict(args)
    return factory(rest.pop("kind"), **rest)


def checkpoint_model_args(ckpt: dict) -> dict:
    """The checkpoint's ``model_args``; older checkpoints lack them: from their config dict."""
    if "model_args" in ckpt:
        return ckpt["model_args"]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return model_args(TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in fields}))


def build_generator_from_checkpoint(ckpt: dict) -> nn.Module:
    """A checkpoint rebuilds its own generator (eval mode) from the arguments saved with it:
    the weights' moving average where the run kept one (``--ema``), else the last weights."""
    G = _define(define_G, checkpoint_model_args(ckpt)["G"])
    G.load_state_dict(ckpt.get("G_ema", ckpt["G"]))
    return G.eval()


# -- what a checkpoint records besides the weights --------------------------------------

def rng_states(device: torch.device, dd: Dist) -> dict:
    """Every rank's RNG state, in rank order, so dropout continues exactly on each one.
    A collective under DDP: every rank calls it."""
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return {"rng_cpu": gather_tensors(torch.get_rng_state(), dd),
            "rng_cuda": gather_tensors(cuda[0], dd) if cuda else []}


def restore_rng(ckpt: dict, device: torch.device, dd: Dist) -> None:
    """This rank's RNG state from a checkpoint (rank modulo the ranks it was saved by)."""
    torch.set_rng_state(ckpt["rng_cpu"][dd.rank % len(ckpt["rng_cpu"])])
    if device.type == "cuda" and ckpt.get("rng_cuda"):
        torch.cuda.set_rng_state(ckpt["rng_cuda"][dd.rank % len(ckpt["rng_cuda"])])


def dataset_facts(meta: dict) -> dict:
    """The checkpoint's ``dataset`` and ``persona`` blocks, from ``load_dataset``'s dict:
    what export needs to make a persona without the dataset folder."""
    return {
        "dataset": {"folder": meta["folder"], "video_sha256": meta["video_sha256"], "video": meta["video"],
                    "frames": meta["frames_kept"], "train": meta["train"], "val": meta["val"]},
        "persona": {"crop": meta["crop"], "canonical": meta["canonical_landmarks"],
                    "neutral": meta["neutral_landmarks"]},
    }
