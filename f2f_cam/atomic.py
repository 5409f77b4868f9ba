"""Atomic writes: a temporary file or folder beside the target, renamed when complete.

Every file f2f-cam writes for the user (videos, personas, checkpoints, datasets,
pictures) goes through here, so a crash, Ctrl-C or full disk never leaves half a
file under the real name, and an old file stays intact until the new one is whole.
The temporary name is ``.NAME.<random>.partial`` plus the target's suffix (writers
such as OpenCV and PyAV pick the format from it), in the target's own folder (the
same filesystem, so the rename is atomic).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

PARTIAL = ".partial"


def partial_path(target: Path) -> Path:
    """A fresh temporary name beside ``target`` that keeps its suffix."""
    target = Path(target)
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{PARTIAL}{target.suffix}")


def is_partial(path: Path) -> bool:
    """Whether ``path`` is one of our temporary names (left by a crash)."""
    name = Path(path).name
    return name.startswith(".") and PARTIAL in name


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path; on a clean exit it replaces ``target``, else it is removed.

    ``with atomic_path(out) as tmp: cv2.imwrite(str(tmp), image)``
    """
    target = Path(target)
    tmp = partial_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(target: Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(target)


def write_text(target: Path, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new empty folder beside ``target``; on a clean exit it becomes ``target``.

    With ``replace=True`` an existing ``target`` is moved aside first and removed only
    once the new folder is in place (if the rename fails, the old one is put back).
    On an error the new folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = partial_path(target)
    tmp.mkdir(parents=False)
    try:
        yield tmp
        if target.exists() and replace:
            old = partial_path(target)
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            _remove(old)
        else:
            os.replace(tmp, target)  # fails if target is a non-empty folder: never merged
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: the name marks it as ours (is_partial)
