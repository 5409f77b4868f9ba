"""Personas: the format (``persona.json`` + ``generator.pt`` + ``thumbnail.png``) and the store.

A persona is a folder; ``NAME.f2f`` is that folder as a zip. Loading validates every
field and the generator's shapes, and never unpickles anything (the generator is
TorchScript, loaded with ``torch.jit.load``; the expression model of format version 2,
``expression.npz``, is plain arrays loaded with ``allow_pickle=False``). Version-1
personas have no expression model: ``expression`` retargeting falls back to
``transfer`` for them. Every install (a freshly exported persona,
a folder, a ``.f2f`` archive) goes through ``PersonaStore.install``: the files are
checked once, in memory, then written as a temporary folder inside the store and
renamed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from f2f_cam import paths, persona_archive
from f2f_cam.persona_archive import torchscript_problem
from f2f_cam.atomic import atomic_dir, partial_path
from f2f_cam.errors import UserError, one_line
from f2f_cam.expression import ExpressionModel, ModelError
from f2f_cam.geometry import Crop
from f2f_cam.sketch import SKETCH_VERSION

log = logging.getLogger(__name__)

FORMAT = "f2f-cam persona"
# 2: an optional expression model (expression.npz); 3: an optional real-time student
# (student.pt). A persona is written with the lowest version that holds what it has, so
# one without a student still loads in an f2f-cam that reads version 2.
FORMAT_VERSION = 3
PERSONA_JSON = "persona.json"
THUMBNAIL = "thumbnail.png"
GENERATOR_FILE = "generator.pt"
EXPRESSION_FILE = "expression.npz"
STUDENT_FILE = "student.pt"
MODEL_CARD = "MODEL_CARD.md"
# Files a persona folder/archive may hold; anything else in an archive is refused.
ALLOWED_FILES = (PERSONA_JSON, GENERATOR_FILE, EXPRESSION_FILE, STUDENT_FILE, THUMBNAIL, MODEL_CARD)
MAX_EXPRESSION_BYTES = 16 << 20  # ~0.2 MB in practice
DTYPES = ("float32", "bfloat16", "float16")
IMAGE_SIZES = (64, 128, 256, 512)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_JSON_BYTES = 4 << 20
MAX_THUMBNAIL_BYTES = 8 << 20  # a 512 px PNG is < 1 MB
MAX_THUMBNAIL_SIDE = 2048  # px; personas are at most 512 px
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FRAME_SIDE = 1 << 16  # px: the training video's frame, in persona.json's crop


def check_name(name: str) -> str:
    """A persona name is a folder name: lowercase letters, digits, '-' and '_'."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(
            f"invalid persona name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def _landmarks(value, what: str, size: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)  # float64 first: 1e300 is no float32 (a warning)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} is not a list of numbers") from None
    if arr.shape != (478, 2):
        raise ValueError(f"{what} must be 478 [x, y] pairs, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} has non-finite values")
    if np.abs(arr).max() > 4 * size:
        raise ValueError(f"{what} lie far outside the {size}px image")
    return arr.astype(np.float32)


@dataclass(frozen=True)
class Persona:
    """A validated persona folder (its generator is loaded on demand)."""

    path: Path
    name: str
    display_name: str
    image_size: int
    sketch_version: int
    crop: Crop
    canonical: np.ndarray  # (478, 2) mean landmarks, persona image pixels
    neutral: np.ndarray  # (478, 2) neutral-face landmarks, persona image pixels
    generator_file: str
    dtype: str
    training: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # the whole persona.json
    bundled: bool = False
    expression: ExpressionModel | None = None  # format 2's expression model, when it has one

    @property
    def generator_path(self) -> Path:
        return self.path / self.generator_file

    @property
    def student_path(self) -> Path | None:
        """The real-time student's TorchScript file (format 3), when the persona has one:
        a cheaper generator distilled from the full one (``trainers.distill``)."""
        return self.path / STUDENT_FILE if self.meta.get("student") else None

    @property
    def thumbnail_path(self) -> Path:
        return self.path / THUMBNAIL

    def as_student(self) -> "Persona":
        """This persona with its real-time student as its generator (and no student):
        what runs where the full generator is too slow, and what ``bench --quality
        --student always`` measures."""
        if self.student_path is None:
            raise UserError(f"persona '{self.name}' has no real-time student; `f2f-cam train VIDEO --name "
                            f"{self.name} --student yes --force` trains one")
        return dataclasses.replace(self, generator_file=STUDENT_FILE,
                                   meta={k: v for k, v in self.meta.items() if k != "student"})

    def load_generator(self, device: str = "cpu"):
        """The frozen TorchScript generator, checked to map (1,3,S,S) -> (1,3,S,S)."""
        return load_generator_file(self.generator_path, self.image_size, device, self.dtype,
                                   what=f"persona '{self.name}'" + (
                                       " (its real-time student)" if self.generator_file == STUDENT_FILE else ""))


def load_generator_file(source: Path | bytes, size: int, device: str = "cpu", dtype: str = "float32",
                        what: str = "generator"):
    """Load a TorchScript generator (a file, or its bytes) and check its input/output contract."""
    import io

    name = GENERATOR_FILE if isinstance(source, bytes) else Path(source).name
    problem = torchscript_problem(source)
    if problem:  # before torch reads a byte of it
        raise UserError(f"{what}: {name} is {problem}; personas carry TorchScript only: "
                        "re-export the persona with `f2f-cam export`")

    import torch

    torch_dtype = getattr(torch, dtype)
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream in favour of torch.export; personas
            # format v1 is TorchScript (see README), so keep the CLI quiet about it.
            warnings.simplefilter("ignore", DeprecationWarning)
            f = io.BytesIO(source) if isinstance(source, bytes) else str(source)
            module = torch.jit.load(f, map_location=device)
        module.eval()
        x = torch.zeros(1, 3, size, size, device=device, dtype=torch_dtype)
        with torch.inference_mode():
            y = module(x)
    except Exception as e:  # a corrupt file fails in many ways inside torch
        raise UserError(f"{what}: {name} is not a working TorchScript generator ({one_line(e, 200)}); "
                        "re-export or re-import the persona") from e
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, 3, size, size):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserError(f"{what}: generator maps (1, 3, {size}, {size}) to {shape}, "
                        f"not (1, 3, {size}, {size}); re-export the persona")
    if not torch.isfinite(y).all():
        raise UserError(f"{what}: the generator gives NaN or infinite values (its weights are); "
                        "re-export the persona from a good checkpoint")
    return module


# -- reading and checking persona.json ------------------------------------------------

def read_persona(folder: Path, bundled: bool = False) -> Persona:
    """Read and validate a persona folder's ``persona.json`` (not the generator)."""
    folder = Path(folder)
    meta_path = folder / PERSONA_JSON
    where = f"persona at {folder}"
    if not meta_path.is_file():
        raise UserError(f"{where} has no {PERSONA_JSON}; re-import or re-export it")
    if meta_path.stat().st_size > MAX_JSON_BYTES:
        raise UserError(f"{where}: {PERSONA_JSON} is too large; the persona is corrupt")
    persona = persona_from_meta(folder, parse_meta(meta_path.read_bytes(), where), bundled, where)
    if not persona.generator_path.is_file():
        raise _corrupt(where, f"{persona.generator_file} is missing")
    if persona.student_path is not None and not persona.student_path.is_file():
        raise _corrupt(where, f"{STUDENT_FILE} is missing")
    model_file = folder / EXPRESSION_FILE
    return with_expression(persona, model_file.read_bytes() if model_file.is_file() else None, where)


def with_expression(persona: Persona, data: bytes | None, where: str) -> Persona:
    """The persona with its expression model read from ``data`` (expression.npz's bytes)
    and checked, when persona.json lists one; a "corrupt" UserError when it is missing,
    too large or not a model."""
    facts = persona.meta.get("expression")
    if facts is None:
        return persona
    if data is None:
        raise _corrupt(where, f"{EXPRESSION_FILE} is missing")
    if len(data) > MAX_EXPRESSION_BYTES:
        raise _corrupt(where, f"{EXPRESSION_FILE} is too large")
    try:
        model = ExpressionModel.from_bytes(data, facts)
    except ModelError as e:
        raise _corrupt(where, f"{EXPRESSION_FILE}: {one_line(e, 200)}") from e
    return dataclasses.replace(persona, expression=model)


def parse_meta(data: bytes | None, where: str) -> dict:
    """``persona.json``'s bytes -> its dict (not yet validated: see ``persona_from_meta``)."""
    if data is None:
        raise UserError(f"{where} has no {PERSONA_JSON}; re-import or re-export it")
    if len(data) > MAX_JSON_BYTES:
        raise UserError(f"{where}: {PERSONA_JSON} is too large; the persona is corrupt")
    try:
        meta = json.loads(data.decode("utf-8"))
    except ValueError as e:  # bad UTF-8 or bad JSON
        raise _corrupt(where, str(e)) from e
    except RecursionError as e:  # [[[[...]]]] nested deeper than Python's stack
        raise _corrupt(where, "it is nested too deeply to be a persona.json") from e
    if not isinstance(meta, dict):
        raise _corrupt(where, "top level is not an object")
    return meta


def dump_meta(meta: dict) -> bytes:
    """The bytes of ``persona.json``."""
    return json.dumps(meta, indent=1).encode("utf-8")


def persona_from_meta(folder: Path, meta: dict, bundled: bool = False, where: str | None = None) -> Persona:
    """Validate every field of a ``persona.json`` dict; the persona it describes at ``folder``."""
    try:
        return _persona_from_meta(folder, meta, bundled)
    except (ValueError, KeyError, TypeError, OverflowError) as e:  # OverflowError: 1e999 where an int goes
        msg = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise _corrupt(where or f"persona at {folder}", msg) from e


def _corrupt(where: str, msg: str) -> UserError:
    return UserError(f"{where} is corrupt: {msg}; re-import or re-export it")


def _persona_from_meta(folder: Path, meta: dict, bundled: bool) -> Persona:
    if meta.get("format") != FORMAT:
        raise ValueError(f"not an f2f-cam persona (format {meta.get('format')!r})")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(f"persona at {folder} was made by a newer f2f-cam: upgrade f2f-cam to use it "
                        f"(it has format version {version}, this one reads up to {FORMAT_VERSION})")
    name = meta["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"bad name {name!r}")
    size = meta["image_size"]
    if not isinstance(size, int) or size not in IMAGE_SIZES:
        raise ValueError(f"image_size {size!r} is not one of {IMAGE_SIZES}")
    sketch_version = meta["sketch_version"]
    if not isinstance(sketch_version, int) or isinstance(sketch_version, bool):
        raise ValueError(f"sketch_version must be a whole number, got {sketch_version!r}")
    if sketch_version != SKETCH_VERSION:
        raise UserError(
            f"persona '{name}' was trained on sketch version {sketch_version}, this f2f-cam draws "
            f"version {SKETCH_VERSION}: retrain it with `f2f-cam train`, or use a matching f2f-cam"
        )
    crop = _crop(meta["crop"])
    gen = meta["generator"]
    if not isinstance(gen, dict):
        raise ValueError("generator must be an object")
    gen_file = gen["file"]
    if gen_file != GENERATOR_FILE:
        raise ValueError(f"generator file must be {GENERATOR_FILE!r}, got {gen_file!r}")
    dtype = gen.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"generator dtype {dtype!r} is not one of {DTYPES}")
    training = meta.get("training", {})
    if not isinstance(training, dict):
        raise ValueError("training must be an object")
    for k in ("frames", "epochs", "steps"):  # counts that fit-expression and bench compute with
        if k in training and not (type(training[k]) is int and 0 <= training[k] <= 10 ** 9):
            raise ValueError(f"training.{k} must be a whole number 0-10^9, got {training[k]!r}")
    expression = meta.get("expression")
    if expression is not None and (version < 2 or not isinstance(expression, dict)
                                   or expression.get("file") != EXPRESSION_FILE):
        raise ValueError(f"expression must be an object with file {EXPRESSION_FILE!r} (format version 2)")
    student = meta.get("student")
    if student is not None and (version < 3 or not isinstance(student, dict)
                                or student.get("file") != STUDENT_FILE):
        raise ValueError(f"student must be an object with file {STUDENT_FILE!r} (format version 3)")
    display = meta.get("display_name") or name
    if not isinstance(display, str):
        raise ValueError(f"display_name must be a string, got {type(display).__name__}")
    return Persona(
        path=folder, name=name, display_name=display, image_size=size,
        sketch_version=sketch_version, crop=crop,
        canonical=_landmarks(meta["canonical_landmarks"], "canonical_landmarks", size),
        neutral=_landmarks(meta["neutral_landmarks"], "neutral_landmarks", size),
        generator_file=gen_file, dtype=dtype, training=training, meta=meta, bundled=bundled,
    )


def _crop(c) -> Crop:
    """persona.json's crop: a positive finite square in a frame of sane size."""
    if not isinstance(c, dict) or not all(type(c.get(k)) in (int, float) for k in  # not bool
                                          ("x", "y", "size", "frame_width", "frame_height")):
        raise ValueError("crop must be an object of numbers x, y, size, frame_width, frame_height")
    try:
        xs = [float(c[k]) for k in ("x", "y", "size")]
        w, h = (float(c[k]) for k in ("frame_width", "frame_height"))
    except OverflowError:  # a 400-digit integer
        raise ValueError("crop holds a number too large for a float") from None
    if not (all(math.isfinite(v) and abs(v) <= 4 * MAX_FRAME_SIDE for v in xs) and xs[2] > 0):
        raise ValueError("crop is not a positive finite square in the frame")
    if not all(v.is_integer() and 0 < v <= MAX_FRAME_SIDE for v in (w, h)):
        raise ValueError(f"crop's frame_width and frame_height must be whole numbers 1-{MAX_FRAME_SIDE}")
    return Crop(*xs, int(w), int(h))


def build_meta(*, name: str, display_name: str, image_size: int, crop: Crop,
               canonical: np.ndarray, neutral: np.ndarray, dtype: str = "float32",
               generator_info: dict | None = None, training: dict | None = None,
               expression: dict | None = None, student: dict | None = None) -> dict:
    """The ``persona.json`` dict, in the one place that knows its layout.

    ``expression``: the expression model's facts when the persona has one (its arrays
    go into ``EXPRESSION_FILE``); ``student``: the real-time student's facts when it has
    one (``STUDENT_FILE``; format version 3, else 2)."""
    import datetime

    meta = {
        "format": FORMAT,
        "format_version": 2,  # 3 with a student (set_student)
        "name": check_name(name),
        "display_name": display_name,
        "image_size": int(image_size),
        "sketch_version": SKETCH_VERSION,
        "crop": crop.as_dict(),
        "canonical_landmarks": np.round(np.asarray(canonical, np.float64)[:, :2], 3).tolist(),
        "neutral_landmarks": np.round(np.asarray(neutral, np.float64)[:, :2], 3).tolist(),
        "generator": {"file": GENERATOR_FILE, "dtype": dtype, **(generator_info or {})},
        "training": training or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if expression is not None:
        meta["expression"] = {"file": EXPRESSION_FILE, **expression}
    if student is not None:
        set_student(meta, student)
    return meta


def set_student(meta: dict, student: dict) -> dict:
    """``meta`` (``persona.json``'s dict) with a real-time student's facts: its file is
    ``STUDENT_FILE``, the format version 3."""
    meta["format_version"] = FORMAT_VERSION
    meta["student"] = {"file": STUDENT_FILE, **student}
    return meta


# -- a persona's files: checked once, then written as a folder or a zip -------------------

def check_files(files: dict[str, bytes], folder: Path, where: str, meta: dict | None = None) -> Persona:
    """Validate a persona held as ``{file name: bytes}``: every persona.json field
    (parsed here unless ``meta`` is given), the expression model if it lists one, and
    the generator, loaded and run once. Returns the persona as it will be at ``folder``."""
    persona = persona_from_meta(folder, meta or parse_meta(files.get(PERSONA_JSON), where), where=where)
    if persona.generator_file not in files:
        raise _corrupt(where, f"{persona.generator_file} is missing")
    if EXPRESSION_FILE in files and "expression" not in persona.meta:
        raise _corrupt(where, f"it holds {EXPRESSION_FILE} but {PERSONA_JSON} lists no expression model")
    if STUDENT_FILE in files and "student" not in persona.meta:
        raise _corrupt(where, f"it holds {STUDENT_FILE} but {PERSONA_JSON} lists no student")
    if "student" in persona.meta and STUDENT_FILE not in files:
        raise _corrupt(where, f"{STUDENT_FILE} is missing")
    if THUMBNAIL in files:
        _check_thumbnail(files[THUMBNAIL], where)
    persona = with_expression(persona, files.get(EXPRESSION_FILE), where)
    load_generator_file(files[persona.generator_file], persona.image_size, dtype=persona.dtype,
                        what=f"persona '{persona.name}'")
    if STUDENT_FILE in files:
        load_generator_file(files[STUDENT_FILE], persona.image_size, dtype=persona.dtype,
                            what=f"persona '{persona.name}' (its real-time student)")
    return persona


def _check_thumbnail(data: bytes, where: str) -> None:
    """A PNG of sane size, from its header alone: f2f-cam never decodes it, but a file
    manager or a tray would, and a 20000 x 20000 PNG of a few KB is a decompression bomb."""
    if len(data) > MAX_THUMBNAIL_BYTES:
        raise _corrupt(where, f"{THUMBNAIL} is {len(data) >> 20} MiB, more than {MAX_THUMBNAIL_BYTES >> 20} MiB")
    # The signature, then the IHDR chunk: length 13, b"IHDR", width and height (big-endian).
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise _corrupt(where, f"{THUMBNAIL} is not a PNG image")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not (0 < w <= MAX_THUMBNAIL_SIDE and 0 < h <= MAX_THUMBNAIL_SIDE):
        raise _corrupt(where, f"{THUMBNAIL} is {w}x{h} px, more than {MAX_THUMBNAIL_SIDE}x{MAX_THUMBNAIL_SIDE}")


def write_folder(files: dict[str, bytes], folder: Path, replace: bool = False) -> Path:
    """The files as the folder ``folder``, atomically (a temp folder beside it, renamed);
    ``replace``: an existing folder is swapped out only once the new one is complete."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder, replace=replace) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return folder


def read_files(folder: Path) -> dict[str, bytes]:
    """A persona folder's known files, as bytes."""
    folder = Path(folder)
    return {name: (folder / name).read_bytes() for name in ALLOWED_FILES if (folder / name).is_file()}


def write_archive(source: Path | dict[str, bytes], out_file: Path) -> Path:
    """Zip a persona (its folder, or its files as bytes) into ``out_file`` atomically."""
    return persona_archive.write_archive(source, out_file, ALLOWED_FILES)


def _read_archive(archive: Path) -> dict[str, bytes]:
    """The known persona files of an archive, refusing traversal, links and bombs."""
    return persona_archive.read_archive(archive, ALLOWED_FILES)


class PersonaStore:
    """The user's personas (a folder each) plus the ones bundled with f2f-cam.

    A user persona with the same name as a bundled one hides it.
    """

    def __init__(self, root: Path | None = None, bundled_root: Path | None = None):
        self.root = Path(root) if root else paths.personas_dir()
        self.bundled_root = Path(bundled_root) if bundled_root else paths.bundled_personas_dir()

    def _folders(self) -> dict[str, tuple[Path, bool]]:
        found: dict[str, tuple[Path, bool]] = {}
        for base, bundled in ((self.bundled_root, True), (self.root, False)):
            if base.is_dir():
                for d in sorted(base.iterdir()):
                    if d.is_dir() and NAME_RE.match(d.name) and (d / PERSONA_JSON).is_file():
                        found[d.name] = (d, bundled)
        return found

    def names(self) -> list[str]:
        return sorted(self._folders())

    def own_names(self) -> list[str]:
        """The user's own personas (not the bundled ones)."""
        return sorted(name for name, (_, bundled) in self._folders().items() if not bundled)

    def list(self) -> list[Persona | tuple[str, Path, str]]:
        """Every persona, validated; broken ones come back as (name, path, problem)."""
        out: list = []
        for name, (folder, bundled) in sorted(self._folders().items()):
            try:
                out.append(read_persona(folder, bundled))
            except UserError as e:
                out.append((name, folder, str(e)))
        return out

    def get(self, name: str) -> Persona:
        folders = self._folders()
        if name not in folders:
            choices = ", ".join(sorted(folders)) or "none installed"
            raise UserError(f"unknown persona '{name}'; choose one of: {choices} "
                            "(see `f2f-cam personas list`)")
        folder, bundled = folders[name]
        return read_persona(folder, bundled)

    def default(self) -> Persona | None:
        """The persona to use when none is named: the user's first, else a bundled one."""
        folders = self._folders()
        for want_bundled in (False, True):
            for name, (_, bundled) in sorted(folders.items()):
                if bundled == want_bundled:
                    return self.get(name)
        return None

    def check_free(self, name: str, force: bool = False) -> None:
        """Refuse to replace an installed persona without ``force``."""
        if not force and (self.root / name).exists():
            raise UserError(f"persona '{name}' already exists; add --force to replace it")

    def install(self, files: dict[str, bytes], force: bool = False, name: str | None = None,
                where: str = "persona") -> Persona:
        """Install a persona given as ``{file name: bytes}``: the one way into the store.

        persona.json is parsed once, every field and the generator are checked once
        (before anything is written), then the folder appears atomically, replacing an
        installed one of the same name only with ``force``. ``name`` renames it.
        """
        files = {n: files[n] for n in ALLOWED_FILES if n in files}
        meta = parse_meta(files.get(PERSONA_JSON), where)
        if name is not None and name != meta.get("name"):
            meta = dict(meta, name=check_name(name))
            files[PERSONA_JSON] = dump_meta(meta)
        persona = check_files(files, self.root / str(meta.get("name")), where, meta)
        self.check_free(persona.name, force)
        try:
            write_folder(files, persona.path, replace=force)
        except OSError as e:
            raise UserError(f"cannot write to the persona store {self.root}: {e.strerror or one_line(e)}") from e
        log.info("installed persona %s at %s", persona.name, persona.path)
        return persona

    def install_folder(self, src: Path, force: bool = False, name: str | None = None) -> Persona:
        """Copy a persona folder into the store atomically (validated first)."""
        return self.install(read_files(src), force, name, where=f"persona at {src}")

    def import_archive(self, archive: Path, force: bool = False, name: str | None = None) -> Persona:
        """Install a ``.f2f`` file: a safe unzip in memory, validate, write atomically.
        ``name``: install it under another name."""
        archive = Path(archive)
        if name is not None:
            check_name(name)  # before the archive is read
        if not archive.is_file():
            raise UserError(f"no such file: {archive}")
        return self.install(_read_archive(archive), force, name, where=f"persona in {archive}")

    def export_archive(self, name: str, out_file: Path) -> Path:
        return write_archive(self.get(name).path, out_file)

    def remove(self, name: str) -> Path:
        folders = self._folders()
        if name not in folders:
            raise UserError(f"unknown persona '{name}'; see `f2f-cam personas list`")
        folder, bundled = folders[name]
        if bundled:
            raise UserError(f"persona '{name}' is bundled with f2f-cam and cannot be removed")
        # Rename first so that a crash never leaves half a persona under its name; what a
        # kill mid-delete leaves has a temporary name, removed by the next write of the name.
        trash = partial_path(folder)
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return folder
