"""Persona archives (.f2f): a zip of the persona's files, read and written safely.

Reading accepts only bare known file names (no ``../``, absolute paths, folders or
links), checks sizes and the compression ratio from the zip directory before anything
is decompressed, and reads no more than each entry claims. Writing is atomic. Which
names are known is the persona format's business (``persona.ALLOWED_FILES``).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

from f2f_cam.atomic import atomic_path
from f2f_cam.errors import UserError, one_line

MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB unpacked: an ngf=64 fp32 generator at 512 px is ~220 MB
# Unpacked over packed, per entry: weights and PNGs pack ~1.1x, persona.json ~4x, a zip bomb 1000x.
MAX_RATIO = 100


def write_archive(source: Path | dict[str, bytes], out_file: Path, allowed: tuple[str, ...]) -> Path:
    """Zip a persona (its folder, or its files as bytes) into ``out_file`` atomically."""
    out_file = Path(out_file)
    if out_file.is_dir():
        raise UserError(f"{out_file} is a folder; give a file name like NAME.f2f")
    parent = out_file.parent if str(out_file.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {out_file}: folder {parent} does not exist")
    files = source if isinstance(source, dict) else None
    try:
        with atomic_path(out_file) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in allowed:
                if files is not None and name in files:
                    zf.writestr(name, files[name])
                elif files is None and (Path(source) / name).is_file():
                    zf.write(Path(source) / name, name)
    except OSError as e:
        raise UserError(f"cannot write {out_file}: {e.strerror or one_line(e)}") from e
    return out_file


def read_archive(archive: Path, allowed: tuple[str, ...]) -> dict[str, bytes]:
    """Unzip only the known persona files, refusing traversal, links and bombs."""
    if archive.stat().st_size > MAX_ARCHIVE_BYTES:  # its directory alone could be huge
        raise UserError(f"{archive} is larger than the {MAX_ARCHIVE_BYTES >> 20} MiB limit; refusing to import it")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:  # "zip file version 23.0"
        raise UserError(f"{archive} is not a persona archive (.f2f zip): {one_line(e, 200)}") from e
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        _check_entries(archive, infos, len(zf.infolist()), allowed)
        files = {}
        for info in infos:
            try:
                with zf.open(info) as src:
                    # The header's size could lie; read one byte more than it claims.
                    data = src.read(min(info.file_size, MAX_ARCHIVE_BYTES) + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:  # OSError: a bad offset
                raise UserError(f"{archive} is damaged ({one_line(e, 200)}); export it again") from e
            except (RuntimeError, NotImplementedError) as e:  # encrypted, or an unknown compression
                raise UserError(f"{archive}: {info.filename} cannot be read ({one_line(e, 200)}); "
                                "export it again with f2f-cam") from e
            if len(data) > info.file_size or len(data) > MAX_ARCHIVE_BYTES:
                raise UserError(f"{archive}: {info.filename} is larger than it claims; refusing to import it")
            files[info.filename] = data
    return files


def _check_entries(archive: Path, infos: list[zipfile.ZipInfo], n_entries: int, allowed: tuple[str, ...]) -> None:
    """Every entry a bare known file name, no links, and a sane unpacked size."""
    if n_entries > 2 * len(allowed):
        raise UserError(f"{archive} has {n_entries} entries; a persona has at most {len(allowed)}")
    seen = set()
    for info in infos:
        if info.filename not in allowed:
            # Catches '../x', '/etc/x', 'a/b', backslashes: only bare known names pass.
            raise UserError(f"{archive} contains an unexpected entry {info.filename!r}; refusing to import it")
        if info.filename in seen:  # which copy counts would depend on the unzip tool
            raise UserError(f"{archive} holds {info.filename} twice; refusing to import it")
        seen.add(info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UserError(f"{archive} contains a symbolic link ({info.filename}); refusing to import it")
        if info.file_size > max(1 << 20, MAX_RATIO * info.compress_size):
            raise UserError(f"{archive}: {info.filename} unpacks {info.file_size // max(info.compress_size, 1)}x "
                            f"its packed size (a zip bomb?), more than {MAX_RATIO}x; refusing to import it")
    total = sum(info.file_size for info in infos)
    if total > MAX_ARCHIVE_BYTES:
        raise UserError(f"{archive} unpacks to {total >> 20} MiB, more than the "
                        f"{MAX_ARCHIVE_BYTES >> 20} MiB limit; refusing to import it")


def torchscript_problem(source: Path | bytes) -> str | None:
    """Why ``source`` is not a TorchScript archive, or None; from the zip's directory
    alone, so that a pickle posing as generator.pt is refused before anything reads it.

    (``torch.jit.load`` would refuse one too: its unpickler is TorchScript's, in C++, and
    resolves a pickle's globals as TorchScript types, never calling Python; tested.)"""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, ValueError):
        if not isinstance(source, bytes):
            with open(source, "rb") as f:
                source = f.read(1)
        # Pickle protocol 2 and up starts with PROTO (0x80), torch.save's legacy format too;
        # anything else that is no zip (a damaged file) is torch.jit.load's to refuse.
        return "a pickle, not TorchScript" if source[:1] == b"\x80" else None
    except OSError:
        return None  # unreadable: torch.jit.load says why
    roots = {n.split("/", 1)[0] for n in names}
    root = roots.pop() if len(roots) == 1 else ""
    if f"{root}/constants.pkl" in names and any(n.startswith(f"{root}/code/") for n in names):
        return None
    if f"{root}/data.pkl" in names:
        return "a pickle (torch.save), not TorchScript"
    return "not TorchScript (a zip without TorchScript's code/ and constants.pkl)"
