"""Personas: the format (``persona.json`` + ``generator.pt`` + ``thumbnail.png``) and the store.

A persona is a folder; ``NAME.f2f`` is that folder as a zip. Loading validates every
field and the generator's shapes, and never unpickles anything (the generator is
TorchScript, loaded with ``torch.jit.load``). Import installs atomically: it unpacks
into a temporary folder inside the store, validates, then renames.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from f2f_cam import paths
from f2f_cam.errors import UserError
from f2f_cam.geometry import Crop
from f2f_cam.sketch import SKETCH_VERSION

log = logging.getLogger(__name__)

FORMAT = "f2f-cam persona"
FORMAT_VERSION = 1
PERSONA_JSON = "persona.json"
THUMBNAIL = "thumbnail.png"
GENERATOR_FILE = "generator.pt"
MODEL_CARD = "MODEL_CARD.md"
# Files a persona folder/archive may hold; anything else in an archive is refused.
ALLOWED_FILES = (PERSONA_JSON, GENERATOR_FILE, THUMBNAIL, MODEL_CARD)
DTYPES = ("float32", "bfloat16", "float16")
IMAGE_SIZES = (64, 128, 256, 512)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB unpacked: an ngf=64 fp32 generator at 512 px is ~220 MB
MAX_JSON_BYTES = 4 << 20


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
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a list of numbers") from None
    if arr.shape != (478, 2):
        raise ValueError(f"{what} must be 478 [x, y] pairs, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} has non-finite values")
    if np.abs(arr).max() > 4 * size:
        raise ValueError(f"{what} lie far outside the {size}px image")
    return arr


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

    @property
    def generator_path(self) -> Path:
        return self.path / self.generator_file

    @property
    def thumbnail_path(self) -> Path:
        return self.path / THUMBNAIL

    def load_generator(self, device: str = "cpu"):
        """The frozen TorchScript generator, checked to map (1,3,S,S) -> (1,3,S,S)."""
        return load_generator_file(self.generator_path, self.image_size, device, self.dtype,
                                   what=f"persona '{self.name}'")


def load_generator_file(path: Path, size: int, device: str = "cpu", dtype: str = "float32",
                        what: str = "generator"):
    """Load a TorchScript generator and check its input/output contract."""
    import torch

    torch_dtype = getattr(torch, dtype)
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream in favour of torch.export; personas
            # format v1 is TorchScript (see README), so keep the CLI quiet about it.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
        module.eval()
        x = torch.zeros(1, 3, size, size, device=device, dtype=torch_dtype)
        with torch.inference_mode():
            y = module(x)
    except Exception as e:  # a corrupt file fails in many ways inside torch
        raise UserError(f"{what}: {path.name} is not a working TorchScript generator ({_short(e)}); "
                        "re-export or re-import the persona") from e
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, 3, size, size):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserError(f"{what}: generator maps (1, 3, {size}, {size}) to {shape}, "
                        f"not (1, 3, {size}, {size}); re-export the persona")
    return module


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def read_persona(folder: Path, bundled: bool = False) -> Persona:
    """Read and validate a persona folder's ``persona.json`` (not the generator)."""
    folder = Path(folder)
    meta_path = folder / PERSONA_JSON
    where = f"persona at {folder}"
    if not meta_path.is_file():
        raise UserError(f"{where} has no {PERSONA_JSON}; re-import or re-export it")
    if meta_path.stat().st_size > MAX_JSON_BYTES:
        raise UserError(f"{where}: {PERSONA_JSON} is too large; the persona is corrupt")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("top level is not an object")
        return _persona_from_meta(folder, meta, bundled)
    except (ValueError, KeyError, TypeError) as e:
        msg = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise UserError(f"{where} is corrupt: {msg}; re-import or re-export it") from e


def _persona_from_meta(folder: Path, meta: dict, bundled: bool) -> Persona:
    if meta.get("format") != FORMAT:
        raise ValueError(f"not an f2f-cam persona (format {meta.get('format')!r})")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(f"persona at {folder} has format version {version}, this f2f-cam reads "
                        f"up to {FORMAT_VERSION}: upgrade f2f-cam")
    name = meta["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"bad name {name!r}")
    size = meta["image_size"]
    if size not in IMAGE_SIZES:
        raise ValueError(f"image_size {size!r} is not one of {IMAGE_SIZES}")
    sketch_version = meta["sketch_version"]
    if sketch_version != SKETCH_VERSION:
        raise UserError(
            f"persona '{name}' was trained on sketch version {sketch_version}, this f2f-cam draws "
            f"version {SKETCH_VERSION}: retrain it with `f2f-cam train`, or use a matching f2f-cam"
        )
    c = meta["crop"]
    crop = Crop(float(c["x"]), float(c["y"]), float(c["size"]), int(c["frame_width"]), int(c["frame_height"]))
    if not (crop.size > 0 and math.isfinite(crop.x) and math.isfinite(crop.y) and math.isfinite(crop.size)):
        raise ValueError("crop is not a positive finite square")
    gen = meta["generator"]
    gen_file = gen["file"]
    if gen_file != GENERATOR_FILE:
        raise ValueError(f"generator file must be {GENERATOR_FILE!r}, got {gen_file!r}")
    dtype = gen.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"generator dtype {dtype!r} is not one of {DTYPES}")
    if not (folder / gen_file).is_file():
        raise ValueError(f"{gen_file} is missing")
    training = meta.get("training", {})
    if not isinstance(training, dict):
        raise ValueError("training must be an object")
    display = meta.get("display_name") or name
    return Persona(
        path=folder, name=name, display_name=str(display), image_size=size,
        sketch_version=sketch_version, crop=crop,
        canonical=_landmarks(meta["canonical_landmarks"], "canonical_landmarks", size),
        neutral=_landmarks(meta["neutral_landmarks"], "neutral_landmarks", size),
        generator_file=gen_file, dtype=dtype, training=training, meta=meta, bundled=bundled,
    )


def build_meta(*, name: str, display_name: str, image_size: int, crop: Crop,
               canonical: np.ndarray, neutral: np.ndarray, dtype: str = "float32",
               generator_info: dict | None = None, training: dict | None = None) -> dict:
    """The ``persona.json`` dict, in the one place that knows its layout."""
    import datetime

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
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


def write_archive(folder: Path, out_file: Path) -> Path:
    """Zip a persona folder into ``out_file`` atomically (temp file + rename)."""
    out_file = Path(out_file)
    if out_file.is_dir():
        raise UserError(f"{out_file} is a folder; give a file name like NAME.f2f")
    parent = out_file.parent if str(out_file.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {out_file}: folder {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".partial", dir=parent)
    except OSError as e:
        raise UserError(f"cannot write {out_file}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in ALLOWED_FILES:
                if (folder / name).is_file():
                    zf.write(folder / name, name)
        os.replace(tmp, out_file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_file


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

    def install_folder(self, src: Path, force: bool = False, name: str | None = None) -> Persona:
        """Copy a persona folder into the store atomically (validated first)."""
        staging = self._staging()
        try:
            for f in ALLOWED_FILES:
                if (Path(src) / f).is_file():
                    shutil.copy2(Path(src) / f, staging / f)
            return self._commit(staging, force, name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def import_archive(self, archive: Path, force: bool = False) -> Persona:
        """Install a ``.f2f`` file: safe unzip into a temp folder, validate, rename."""
        archive = Path(archive)
        if not archive.is_file():
            raise UserError(f"no such file: {archive}")
        staging = self._staging()
        try:
            _safe_extract(archive, staging)
            return self._commit(staging, force, None)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def export_archive(self, name: str, out_file: Path) -> Path:
        return write_archive(self.get(name).path, out_file)

    def remove(self, name: str) -> Path:
        folders = self._folders()
        if name not in folders:
            raise UserError(f"unknown persona '{name}'; see `f2f-cam personas list`")
        folder, bundled = folders[name]
        if bundled:
            raise UserError(f"persona '{name}' is bundled with f2f-cam and cannot be removed")
        # Rename first so that a crash never leaves half a persona under its name.
        trash = self.root / f".trash-{name}-{os.getpid()}"
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return folder

    # -- internals ---------------------------------------------------------------

    def _staging(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Same filesystem as the store, so the final rename is atomic.
            return Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        except OSError as e:
            raise UserError(f"cannot write to the persona store {self.root}: {e.strerror}") from e

    def _commit(self, staging: Path, force: bool, name: str | None) -> Persona:
        persona = read_persona(staging)
        if name and name != persona.name:
            meta = dict(persona.meta, name=check_name(name))
            (staging / PERSONA_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            persona = read_persona(staging)
        persona.load_generator()  # refuse a persona whose generator does not work
        final = self.root / persona.name
        if final.exists():
            if not force:
                raise UserError(f"persona '{persona.name}' already exists; add --force to replace it")
            old = self.root / f".replaced-{persona.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        log.info("installed persona %s at %s", persona.name, final)
        return read_persona(final)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Unzip only the known persona files, refusing traversal, links and bombs."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{archive} is not a persona archive (.f2f zip): {_short(e)}") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > 2 * len(ALLOWED_FILES):
            raise UserError(f"{archive} has {len(infos)} entries; a persona has at most {len(ALLOWED_FILES)}")
        total = 0
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            if name not in ALLOWED_FILES:
                # Catches '../x', '/etc/x', 'a/b', backslashes: only bare known names pass.
                raise UserError(f"{archive} contains an unexpected entry {name!r}; refusing to import it")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UserError(f"{archive} contains a symbolic link ({name}); refusing to import it")
            total += info.file_size
        if total > MAX_ARCHIVE_BYTES:
            raise UserError(f"{archive} unpacks to {total >> 20} MiB, more than the "
                            f"{MAX_ARCHIVE_BYTES >> 20} MiB limit; refusing to import it")
        for info in infos:
            if info.is_dir():
                continue
            written = 0
            try:
                with zf.open(info) as src, open(dest / info.filename, "wb") as out:
                    while block := src.read(1 << 20):
                        written += len(block)
                        # The header's size could lie; count what really comes out.
                        if written > info.file_size or written > MAX_ARCHIVE_BYTES:
                            raise UserError(f"{archive}: {info.filename} is larger than it claims; "
                                            "refusing to import it")
                        out.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise UserError(f"{archive} is damaged ({_short(e)}); export it again") from e
