"""Atomic writes: a temporary file or folder beside the target, renamed when complete.

Every file f2f-cam writes for the user (videos, personas, checkpoints, datasets,
pictures) goes through here, so a crash, Ctrl-C or full disk never leaves half a
file under the real name, and an old file stays intact until the new one is whole.
The temporary name is ``.NAME.<pid>-<random>.partial`` plus the target's suffix (writers
such as OpenCV and PyAV pick the format from it), in the target's own folder (the
same filesystem, so the rename is atomic). Loaders skip such names (``is_partial``);
one a killed writer left (SIGKILL, a power cut: no ``except`` ran) is removed by the
next write of the same target, once no process has that pid. A full disk is the one
line of ``DiskFull``, naming the target.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Iterator

from f2f_cam.errors import DiskFull, is_disk_full

log = logging.getLogger(__name__)

PARTIAL = ".partial"


def partial_path(target: Path) -> Path:
    """A fresh temporary name beside ``target`` that keeps its suffix. Every writer gets
    its name here, so this is also where what killed writers of ``target`` left goes."""
    target = Path(target)
    _sweep(target)
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}{target.suffix}")


def _sweep(target: Path) -> None:
    """Remove the temporary files and folders of ``target`` whose writer is gone.

    (A writer in another PID namespace on a shared folder would look gone too; nothing
    here writes one target from two machines or containers at once.)"""
    if os.name != "posix":
        return  # os.kill(pid, 0) is no probe on Windows: it would end the process
    ours = re.compile(rf"{re.escape('.' + target.name)}\.(\d+)-[0-9a-f]{{8}}{re.escape(PARTIAL)}")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        m = ours.match(name)
        if m and int(m[1]) != os.getpid() and not _alive(int(m[1])):
            log.info("removing %s, left by a writer that was killed", name)
            _remove(target.parent / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


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
    except BaseException as e:
        _remove(tmp)
        if is_disk_full(e):
            raise DiskFull(target) from e
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

    With ``replace=True`` an existing ``target`` is swapped with the new folder in one
    step (``_swap``) and removed only once the new one is in place. On an error the new
    folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = partial_path(target)
    tmp.mkdir(parents=False)
    try:
        yield tmp
        if target.exists() and replace:
            _remove(_swap(tmp, target))
        else:
            os.replace(tmp, target)  # fails if target is a non-empty folder: never merged
    except BaseException as e:
        _remove(tmp)
        if is_disk_full(e):
            raise DiskFull(target) from e
        raise


def _swap(new: Path, target: Path) -> Path:
    """Put the folder ``new`` at ``target``; returns where the old ``target`` is now.

    One exchange where the OS has it (a kill at any moment leaves the old or the new
    folder at ``target``); elsewhere two renames, with a moment between them where
    ``target`` is missing (its old folder is then a partial name beside it)."""
    if _exchange(new, target):
        return new
    old = partial_path(target)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    return old


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _renameat2():
    """glibc's ``renameat2`` (2.28+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one step; False where that cannot be done
    (not Linux, an old glibc or kernel, a filesystem without RENAME_EXCHANGE)."""
    fn = _renameat2()
    if fn is None:
        return False
    import ctypes

    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: the name marks it as ours (is_partial)
