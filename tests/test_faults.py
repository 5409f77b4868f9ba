"""Faults and disk state: what survives a signal, a full disk, a crash at any point of an
update, a virtual camera failing mid-stream, and a control socket under abuse.

The rule each test holds the code to: the last good state survives whole (a checkpoint,
a persona, a dataset, a video, a small state file), nothing half-written appears under
a real name, a user error is one line, and the daemon keeps the camera up.

Commands run as real processes, forked from a server that imported torch, OpenCV and
MediaPipe once (seconds per command saved). To kill one at a known phase, the child can
cut one write in half (``_install_cut``): the first half is written, then it says so
and sleeps (the test's signal lands there), or it raises ENOSPC as a full disk does.
A real full disk is a small tmpfs (root only; skipped elsewhere).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import pyvirtualcam

from f2f_cam import atomic
from f2f_cam.atomic import is_partial
from f2f_cam.cli import main
from f2f_cam.control import ControlClient
from f2f_cam.persona import PersonaStore, _read_archive, dump_meta, read_files, read_persona, write_archive
from trainers import synth

from forkcli import Lines, server_script
from test_control import raw
from test_daemon import FPS, daemons, wait_frames  # noqa: F401 (the fixture)
from test_virtualcam import Recorder, recorder  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, /proc and tmpfs as on Linux")

HERE = Path(__file__).resolve().parent
TINY = ["--size", "64", "--ngf", "8", "--ndf", "8", "--quiet"]
MiB = 1 << 20


# -- the fork server -----------------------------------------------------------------------

SERVER = server_script("""import torch, torch._dynamo, cv2, av, mediapipe, matplotlib
torch.set_num_threads(1)  # 2 shared cores: OpenMP threads spinning against other work are 5-10x slower
matplotlib.use("Agg")
import matplotlib.pyplot
import f2f_cam.cli, f2f_cam.landmarks, f2f_cam.pipeline, f2f_cam.video, trainers.recipe, trainers.export
import test_faults""", "test_faults._child")


class Forker:
    """Runs commands (``f2f-cam ARGS``, or a function of this file) in processes forked
    from one server; one at a time."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(HERE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=HERE.parent,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
        self._lines = Lines(self.proc.stdout)
        self.child: Child | None = None

    def _line(self, timeout: float) -> dict:
        return self._lines.read(timeout)

    def start(self, tmp: Path, argv: list | None = None, *, call: str | None = None, cut: dict | None = None,
              **kwargs) -> "Child":
        """Fork a child running ``f2f-cam argv`` (or ``call(**kwargs)``), with the test's
        environment; ``cut``: ``_install_cut``'s arguments."""
        assert self.child is None, "one child at a time"
        tmp.mkdir(parents=True, exist_ok=True)
        n = len(list(tmp.glob("*.out")))
        c = Child(self, tmp / f"{n}.out", tmp / f"{n}.err", tmp / f"{n}.phase")
        req = {"env": dict(os.environ), "out": str(c.out), "err": str(c.err), "argv": [str(a) for a in argv or []],
               "call": call, "kwargs": kwargs, "cut": dict(cut, phase=str(c.phase)) if cut else None}
        self.proc.stdin.write(json.dumps(req).encode() + b"\n")
        self.proc.stdin.flush()
        c.pid = self._line(30)["pid"]
        self.child = c
        return c

    def run(self, tmp: Path, argv: list | None = None, **kw) -> "Child":
        c = self.start(tmp, argv, **kw)
        c.wait()
        return c

    def close(self):
        if self.child is not None:
            self.child.kill()
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Child:
    def __init__(self, forker: Forker, out: Path, err: Path, phase: Path):
        self.forker, self.out, self.err, self.phase = forker, out, err, phase
        self.pid = 0
        self.rc: int | None = None

    def wait_for(self, what, timeout: float = 60.0, poll: float = 0.005) -> None:
        """Until ``what()`` is true (the child must still be running)."""
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"timed out; stderr:\n{self.stderr}")
            if self._exited():
                raise AssertionError(f"the child ended (rc {self.rc}) first; stderr:\n{self.stderr}")
            time.sleep(poll)

    def wait_phase(self, timeout: float = 60.0) -> None:
        self.wait_for(self.phase.exists, timeout)

    def _exited(self) -> bool:
        try:
            os.kill(self.pid, 0)
            return Path(f"/proc/{self.pid}/stat").read_text().split(") ", 1)[1][0] == "Z"  # a zombie
        except (ProcessLookupError, FileNotFoundError):
            return True

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 120.0) -> int:
        try:
            self.rc = self.forker._line(timeout)["exit"]
        except TimeoutError:
            self.kill()
            raise
        self.forker.child = None
        return self.rc

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.forker.child is self:
            self.rc = self.forker._line(30)["exit"]
            self.forker.child = None

    @property
    def stdout(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    @property
    def stderr(self) -> str:
        return self.err.read_text() if self.err.exists() else ""

    def one_line_error(self, *expected) -> str:
        """Failed as a user error: non-zero, one stderr line, no traceback."""
        lines = self.stderr.strip().splitlines()
        assert self.rc not in (0, None) and len(lines) == 1 and lines[0].startswith("f2f-cam: error: "), \
            (self.rc, self.stderr)
        for text in expected:
            assert text in lines[0], lines[0]
        return lines[0]


def _child(req: dict) -> None:
    """In the forked child: the test's environment and output files, then the command."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        if req["cut"]:
            _install_cut(**req["cut"])
        if req["call"]:
            globals()[req["call"]](**req["kwargs"])
            code = 0
        else:
            code = main(req["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _install_cut(match: str, phase: str, nth: int = 1, action: str = "pause") -> None:
    """Cut the first write into the ``nth`` file opened for writing whose path holds
    ``match``: half of it is written, then ``action``: "pause" (``phase`` appears, then
    a 1 s sleep: the test's signal lands inside the write) or "enospc" (the OSError a
    full disk raises)."""
    real_open = io.open
    count = [0]

    def cut() -> None:
        if action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with real_open(phase, "w") as f:
            f.write("inside the write\n")
        time.sleep(1.0)

    def hooked_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and match in os.fspath(file):
            count[0] += 1
            if count[0] == nth:
                return _CutWrite(f, cut)
        return f

    io.open = builtins.open = hooked_open


class _CutWrite:
    def __init__(self, f, cut):
        self._f, self._cut = f, cut

    def write(self, data):
        if self._cut is None:
            return self._f.write(data)
        cut, self._cut = self._cut, None
        n = self._f.write(data[:len(data) // 2])
        self._f.flush()
        cut()
        return n + self._f.write(data[len(data) // 2:])

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture(scope="module")
def forker():
    f = Forker()
    yield f
    f.close()


# -- shared state: a clip, its dataset, a checkpoint, two versions of a persona ------------------

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "clip.mp4"
    synth.write_video(path, synth.SynthSpec(width=160, height=120, fps=10.0, seconds=1.0, shift=10.0, seed=1))
    return path


@pytest.fixture(scope="module")
def dataset(clip, tmp_path_factory) -> Path:
    from trainers.dataset import build_dataset

    out = tmp_path_factory.mktemp("faults") / "ds"
    build_dataset(clip, out, frames=10, size=64, val_fraction=0.2, progress=False)  # 8 train, 2 val pairs
    return out


@contextlib.contextmanager
def one_torch_thread():
    """On 2 shared cores, torch's second OpenMP thread spinning against other work makes
    these tiny networks 5-10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory) -> Path:
    """A run's last.pt after one epoch (8 pairs, batch 2: 4 steps)."""
    from trainers.config import TrainConfig
    from trainers.dataset import load_dataset
    from trainers.train import train

    run = tmp_path_factory.mktemp("faults") / "run"
    with one_torch_thread():
        train(TrainConfig(size=64, ngf=8, ndf=8, batch_size=2, epochs=1, save_every=0, device="cpu"),
              load_dataset(dataset), run, progress=False)
    return run / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def personas(checkpoint, tmp_path_factory) -> dict:
    """{"old": files, "new": files, "old.f2f": path, "new.f2f": path}: persona 'fx' twice,
    told apart by its display name."""
    from trainers.export import export_checkpoint

    folder = tmp_path_factory.mktemp("faults")
    with one_torch_thread():
        old = _read_archive(export_checkpoint(checkpoint, "fx", display_name="Old", out_file=folder / "old.f2f"))
    new = dict(old, **{"persona.json": dump_meta(dict(json.loads(old["persona.json"]), display_name="New"))})
    return {"old": old, "new": new, "old.f2f": folder / "old.f2f", "new.f2f": write_archive(new, folder / "new.f2f")}


def partials(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if is_partial(p)]


def tree(folder: Path) -> dict[str, bytes]:
    """A folder's files by relative path (what "intact" is compared on)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def installed(store: PersonaStore, name: str = "fx") -> dict[str, bytes]:
    """The installed persona's files, after checking that it loads."""
    read_persona(store.root / name).load_generator()
    return read_files(store.root / name)


# -- 1. signals: dataset, train, export, import ------------------------------------------------

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 130, signal.SIGKILL: -signal.SIGKILL}


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_while_a_dataset_is_rebuilt_keeps_the_old_one(sig, forker, clip, dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    before = tree(ds)
    argv = ["dataset", clip, "-o", ds, "--frames", "10", "--size", "64", "--seed", "1", "--quiet"]
    c = forker.start(tmp_path / "p", argv, cut={"match": "/.ds.", "nth": 3})  # the 3rd file of the new one
    c.wait_phase()
    c.signal(sig)
    assert c.wait() == INTERRUPTED[sig], c.stderr
    assert tree(ds) == before  # the old dataset, whole
    from trainers.dataset import load_dataset

    load_dataset(ds)
    if sig != signal.SIGKILL:  # interrupted: it cleaned up after itself
        assert "f2f-cam: interrupted" in c.stderr and not partials(tmp_path), c.stderr
        return
    assert partials(tmp_path)  # killed: its temporary folder stays, under a name nothing loads...
    assert forker.run(tmp_path / "p", argv).rc == 0
    assert not partials(tmp_path)  # ...until the next write of the same dataset removes it
    assert tree(ds) != before


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("command", ["export", "import"])
def test_a_signal_while_a_persona_is_installed_keeps_the_old_one(command, sig, forker, checkpoint, personas,
                                                                 tmp_path):
    store = PersonaStore()
    store.install(personas["old"])
    argv = (["export", checkpoint, "--name", "fx", "--force"] if command == "export"
            else ["personas", "import", personas["new.f2f"], "--force"])
    c = forker.start(tmp_path / "p", argv, cut={"match": "/personas/.fx."})
    c.wait_phase()
    c.signal(sig)
    assert c.wait() == INTERRUPTED[sig], c.stderr
    assert installed(store) == personas["old"] and store.names() == ["fx"]
    if sig != signal.SIGKILL:
        assert "f2f-cam: interrupted" in c.stderr and not partials(store.root), c.stderr
        return
    assert partials(store.root)  # ignored by the store (names() above), removed by the next install:
    assert forker.run(tmp_path / "p", ["personas", "import", personas["new.f2f"], "--force"]).rc == 0
    assert installed(store) == personas["new"] and not partials(store.root)


def _train_argv(dataset: Path, workdir: Path, name: str) -> list:
    # 8 pairs in batches of 2: 4 steps an epoch, 12 in all, a checkpoint after each.
    return ["train", "--dataset", dataset, "--name", name, *TINY, "--batch-size", "2", "--epochs", "3",
            "--save-every", "1", "--workdir", workdir]


def test_ctrl_c_mid_epoch_then_resume(forker, dataset, tmp_path):
    from trainers.checkpoint import load_checkpoint

    argv = _train_argv(dataset, tmp_path / "run", "tint")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    c = forker.start(tmp_path / "p", argv)
    c.wait_for(ckpt.exists)
    time.sleep(random.Random(13).uniform(0.05, 0.5))  # somewhere in the first two epochs
    c.signal(signal.SIGINT)
    assert c.wait() == 130 and "Resume with:" in c.stderr, c.stderr
    state = load_checkpoint(ckpt)
    assert 0 < state["step"] < 12 and not partials(tmp_path / "run")
    _resume_installs(forker, argv, tmp_path, "tint")


def test_sigterm_during_a_checkpoint_write_saves_and_resumes(forker, dataset, tmp_path):
    """A batch scheduler's or ``kill``'s SIGTERM is Ctrl-C: the write in progress ends,
    the step's checkpoint is saved, and the run says how to resume."""
    from trainers.checkpoint import load_checkpoint

    argv = _train_argv(dataset, tmp_path / "run", "tterm")
    c = forker.start(tmp_path / "p", argv, cut={"match": ".last.pt.", "nth": 3})
    c.wait_phase()
    c.signal(signal.SIGTERM)
    assert c.wait() == 130 and "Resume with:" in c.stderr, c.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] >= 3
    assert not partials(tmp_path / "run")
    _resume_installs(forker, argv, tmp_path, "tterm")


def test_sigkill_during_the_install_after_training_then_resume(forker, dataset, tmp_path):
    from trainers.checkpoint import load_checkpoint

    store = PersonaStore()
    argv = _train_argv(dataset, tmp_path / "run", "tkill")
    c = forker.start(tmp_path / "p", argv, cut={"match": "/personas/.tkill."})
    c.wait_phase()
    c.signal(signal.SIGKILL)
    assert c.wait() == -signal.SIGKILL
    assert store.names() == [] and partials(store.root)  # half a persona, under a name the store skips
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 3  # training was done
    _resume_installs(forker, argv, tmp_path, "tkill")
    assert not partials(store.root)  # the next install of the name removed the dead one's folder


def _resume_installs(forker, argv, tmp_path, name):
    resumed = forker.run(tmp_path / "p", [*argv, "--resume"])
    assert resumed.rc == 0 and f"persona '{name}' installed" in resumed.stdout, resumed.stderr
    read_persona(PersonaStore().root / name).load_generator()
    assert not partials(tmp_path / "run")


# -- 2. a full disk ----------------------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    """(folder, fill): a folder on a fresh 24 MiB tmpfs; ``fill(leave)`` leaves only
    ``leave`` bytes free there (a filler file takes the rest). Root only: mounting needs
    CAP_SYS_ADMIN."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a tmpfs; the injected ENOSPC runs everywhere")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")

    def fill(leave: int) -> None:
        st = os.statvfs(mnt)
        (mnt / ".filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))

    yield mnt, fill
    subprocess.run(["umount", "-l", str(mnt)], check=False)


FULL = ["tmpfs", "injected"]


@pytest.fixture
def disk(request, tmp_path):
    """(folder, full(match, leave) -> cut): where the test writes, and what makes the
    next write there fail: the tmpfs filled up to ``leave`` bytes (no cut), or an
    injected ENOSPC at the child's first write into a path holding ``match``."""
    if request.param == "tmpfs":
        mnt, fill = request.getfixturevalue("tmpfs")

        def full(match: str, leave: int = 0) -> None:
            fill(leave)
        return mnt, full
    folder = tmp_path / "disk"
    folder.mkdir()
    return folder, lambda match, leave=0: {"match": match, "action": "enospc"}


NO_SPACE = "no space left on device writing {}: free some space and try again"


@pytest.mark.parametrize("disk", FULL, indirect=True)
def test_full_disk_while_saving_a_checkpoint(disk, forker, dataset, checkpoint, tmp_path):
    folder, full = disk
    ckpt = folder / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(checkpoint, ckpt)  # epoch 1 done; the resumed run saves after its first step
    before = ckpt.read_bytes()
    cut = full(".last.pt.", leave=MiB)  # a checkpoint is ~6 MB
    argv = ["train", "--dataset", dataset, "--name", "ck", *TINY, "--batch-size", "2", "--epochs", "2",
            "--save-every", "1", "--workdir", folder / "run", "--resume"]
    forker.run(tmp_path / "p", argv, cut=cut).one_line_error(NO_SPACE.format(ckpt))
    assert ckpt.read_bytes() == before and not partials(folder)


@pytest.mark.parametrize("disk", FULL, indirect=True)
def test_full_disk_while_installing_a_persona(disk, forker, personas, tmp_path, monkeypatch):
    folder, full = disk
    monkeypatch.setenv("F2F_CAM_DATA_DIR", str(folder / "data"))
    store = PersonaStore()
    store.install(personas["old"])
    cut = full("/personas/.fx.", leave=MiB // 2)  # a persona is ~2 MB
    c = forker.run(tmp_path / "p", ["personas", "import", personas["new.f2f"], "--force"], cut=cut)
    c.one_line_error(NO_SPACE.format(store.root / "fx"))
    assert installed(store) == personas["old"] and not partials(folder)


@pytest.mark.parametrize("disk", FULL, indirect=True)
def test_full_disk_while_exporting_an_archive(disk, forker, checkpoint, personas, tmp_path):
    folder, full = disk
    out = folder / "fx.f2f"
    shutil.copy(personas["old.f2f"], out)
    cut = full(".fx.f2f.", leave=MiB // 2)
    c = forker.run(tmp_path / "p", ["export", checkpoint, "--name", "fx", "-o", out], cut=cut)
    c.one_line_error(NO_SPACE.format(out))
    assert _read_archive(out) == personas["old"] and not partials(folder)


@pytest.mark.parametrize("disk", FULL, indirect=True)
def test_full_disk_while_building_a_dataset(disk, forker, clip, dataset, tmp_path):
    folder, full = disk
    ds = folder / "ds"
    shutil.copytree(dataset, ds)
    before = tree(ds)
    cut = full("/.ds.", leave=64 << 10)  # a dataset of 10 pairs is ~230 KB
    c = forker.run(tmp_path / "p", ["dataset", clip, "-o", ds, "--frames", "10", "--size", "64", "--seed", "1",
                                    "--quiet"], cut=cut)
    c.one_line_error(NO_SPACE.format(ds))
    assert tree(ds) == before and not partials(folder)


def test_full_disk_while_writing_a_video(tmpfs, forker, clip, tmp_path):
    # PyAV writes through FFmpeg, past Python's open(): only the real full disk.
    mnt, fill = tmpfs
    out = mnt / "out.mp4"
    shutil.copy(clip, out)
    fill(0)
    c = forker.run(tmp_path / "p", ["video", clip, "-o", out, "--layout", "camera", "--quiet"])
    c.one_line_error(NO_SPACE.format(out))
    assert out.read_bytes() == clip.read_bytes() and not partials(mnt)


def test_full_disk_while_writing_the_demo_picture(tmpfs, clip):
    from f2f_cam.demo import write_strip
    from f2f_cam.errors import DiskFull

    mnt, fill = tmpfs
    fill(0)
    with pytest.raises(DiskFull, match=re.escape(NO_SPACE.format(mnt / "strip.png"))):
        write_strip(clip, mnt / "strip.png", width=320)
    assert not partials(mnt)


# -- 3. a crash at any point of an update ------------------------------------------------------
#
# The user state f2f-cam writes, all through f2f_cam.atomic: the persona store (install),
# checkpoints, .f2f archives, and small files (metrics.csv, quality.json, samples) through
# atomic.write_text / write_bytes. It writes neither config.toml (the user's) nor
# calibration (held by the running daemon only).

def _state(kind: str, version: int, files: dict[str, bytes]):
    """Version ``version`` of each kind of state (a persona's from ``files``)."""
    if kind in ("persona", "archive"):
        return dict(files, **{"persona.json": dump_meta(dict(json.loads(files["persona.json"]),
                                                             display_name=f"v{version}"))})
    if kind == "checkpoint":
        import torch

        return {"version": version, "weights": torch.full((50_000,), float(version))}
    return f"version {version}\n" * (1000 + version)


def _update(kind: str, target: str, version: int, archive: str, kill_at: int = 0) -> None:
    """In a child: write ``version`` of ``target`` through the real code path (the
    persona's files from ``archive``); with ``kill_at``, SIGKILL itself just before the
    ``kill_at``-th filesystem change."""
    state = _state(kind, version, _read_archive(Path(archive)))
    if kill_at:
        _kill_at(kill_at)
    target = Path(target)
    if kind == "persona":
        PersonaStore(target.parent).install(state, force=True)
    elif kind == "archive":
        write_archive(state, target)
    elif kind == "checkpoint":
        from trainers.checkpoint import save_checkpoint

        save_checkpoint(target, state)
    else:
        atomic.write_text(target, state)


MUTATING = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.link",
            "os.symlink", "os.chmod"}


def _kill_at(n: int) -> None:
    """SIGKILL this process just before its ``n``-th filesystem change from now (an
    audit hook sees every mkdir, rename, remove and open for writing made from Python;
    ``atomic``'s RENAME_EXCHANGE, through ctypes, is one step it cannot split)."""
    count = [0]

    def hook(event, args):
        writes = event == "open" and (set(str(args[1] or "")) & set("wax+")
                                      or (args[2] or 0) & (os.O_WRONLY | os.O_RDWR))
        if event in MUTATING or writes:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


def _version_of(kind: str, target: Path, files: dict[str, bytes]) -> int:
    """The version ``target`` holds, checked to be that version whole (AssertionError if not)."""
    if kind == "persona":
        store = PersonaStore(target.parent)
        assert store.names() == [target.name], store.names()  # there, and nothing else is
        version = int(store.get(target.name).display_name[1:])  # persona.json and expression.npz load
        assert read_files(target) == _state(kind, version, files)
        return version
    if kind == "archive":
        got = _read_archive(target)
        version = int(json.loads(got["persona.json"])["display_name"][1:])
        assert got == _state(kind, version, files)
        return version
    if kind == "checkpoint":
        import torch

        state = torch.load(target, weights_only=True)
        assert torch.equal(state["weights"], _state(kind, state["version"], files)["weights"])
        return state["version"]
    text = target.read_text()
    version = int(text.split()[1])
    assert text == _state(kind, version, files)
    return version


KINDS = {"persona": "store/fx", "archive": "fx.f2f", "checkpoint": "checkpoints/last.pt", "text": "metrics.csv"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_kill_at_every_step_of_an_update_leaves_old_or_new(kind, forker, personas, tmp_path):
    """SIGKILL just before each filesystem change of one update, in turn (an audit hook
    counts them): the target is always the whole old or the whole new version, what a
    kill leaves is skipped by loaders, and the next write clears it."""
    if kind == "persona" and atomic._renameat2() is None:
        pytest.skip("no RENAME_EXCHANGE on this OS: a folder is replaced in two renames")
    target = tmp_path / KINDS[kind]
    target.parent.mkdir(parents=True, exist_ok=True)
    files = str(personas["old.f2f"])
    forker.run(tmp_path / "p", call="_update", kind=kind, target=str(target), version=1, archive=files)
    version, n = 1, 0
    while True:
        n += 1
        c = forker.run(tmp_path / "p", call="_update", kind=kind, target=str(target), version=version + 1,
                       archive=files, kill_at=n)
        assert c.rc in (0, -signal.SIGKILL), c.stderr
        now = _version_of(kind, target, personas["old"])
        assert now in (version, version + 1), (n, now)
        version = now
        if c.rc == 0:
            break
    assert n >= 3  # it did count the update's steps
    forker.run(tmp_path / "p", call="_update", kind=kind, target=str(target), version=version + 1, archive=files)
    assert _version_of(kind, target, personas["old"]) == version + 1 and not partials(tmp_path)


def _remove(root: str, kill_at: int) -> None:
    _kill_at(kill_at)
    PersonaStore(Path(root)).remove("fx")


def test_a_kill_at_every_step_of_a_remove_leaves_it_whole_or_gone(forker, personas, tmp_path):
    store = PersonaStore(tmp_path / "store")
    n, left = 0, []
    while True:
        n += 1
        if store.names() == []:
            store.install(personas["old"])  # and what the last kill left goes
            assert not partials(store.root)
        c = forker.run(tmp_path / "p", call="_remove", root=str(store.root), kill_at=n)
        assert c.rc in (0, -signal.SIGKILL), c.stderr
        assert store.names() in ([], ["fx"])
        if store.names():
            assert read_files(store.root / "fx") == personas["old"]
        left += partials(store.root)  # a kill mid-delete: the rest, under a temporary name
        if c.rc == 0:
            break
    assert n >= 3 and left


def _write_forever(root: str, archive: str, start: int, once: bool = False) -> None:
    """Persona, archive, checkpoint and a small file, rewritten in turn from version
    ``start`` until killed; each round begins with another kind."""
    kinds = list(KINDS)[start % len(KINDS):] + list(KINDS)[:start % len(KINDS)]
    for version in range(start * 1000, start * 1000 + (1 if once else 1000)):
        for kind in kinds:
            _update(kind, str(Path(root) / KINDS[kind]), version, archive)


def test_kills_at_random_moments_never_leave_a_partial_state(forker, personas, tmp_path):
    for rel in KINDS.values():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    archive = str(personas["old.f2f"])
    forker.run(tmp_path / "p", call="_write_forever", root=str(tmp_path), archive=archive, start=0, once=True)
    rng = random.Random(20)
    seen = {kind: set() for kind in KINDS}
    for r in range(1, 21):
        c = forker.start(tmp_path / "p", call="_write_forever", root=str(tmp_path), archive=archive, start=r)
        time.sleep(rng.uniform(0.02, 0.3))
        c.signal(signal.SIGKILL)
        assert c.wait() == -signal.SIGKILL, c.stderr
        for kind, rel in KINDS.items():
            seen[kind].add(_version_of(kind, tmp_path / rel, personas["old"]))  # whole, whatever the moment
    assert all(len(v) > 1 for v in seen.values()), seen  # the writer got through updates of each kind
    # What kills inside a write left (temporary names that loaders skip), the next writes remove.
    forker.run(tmp_path / "p", call="_write_forever", root=str(tmp_path), archive=archive, start=99, once=True)
    assert not partials(tmp_path)


# -- 4. the virtual camera failing mid-stream --------------------------------------------------

class FailingCam(Recorder):
    """A virtual camera that goes away: ``send`` raises once ``fail_after`` frames are
    out, and opening it fails until ``down_until`` (monotonic s)."""

    fail_after: int | None = None
    down_until = 0.0
    opened: list = []

    def __init__(self, **kw):
        if time.monotonic() < FailingCam.down_until:
            raise RuntimeError("/dev/video10: no such device")
        super().__init__(**kw)
        self.fail_after = FailingCam.fail_after
        FailingCam.opened.append(self)

    def send(self, frame):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise OSError(errno.ENODEV, "VIDIOC_QBUF: No such device")
        super().send(frame)


@pytest.fixture
def failing_cam():
    FailingCam.opened, FailingCam.fail_after, FailingCam.down_until = [], None, 0.0
    pyvirtualcam.register_backend("failing", FailingCam)
    yield FailingCam
    pyvirtualcam.camera.BACKENDS.pop("failing", None)


def test_the_virtual_camera_failing_is_reopened(failing_cam, daemons, clip, caplog):
    caplog.set_level(logging.WARNING, logger="f2f_cam.sinks.paced")
    FailingCam.fail_after = 20
    d = daemons(clip, layout="camera", persona=None, backend="failing", retry_seconds=0.2)
    first = FailingCam.opened[0]
    wait_frames(first, 20)
    FailingCam.fail_after = None  # the camera opened next works (it opens 0.2 s after the failure)
    problems = _poll(d, until=lambda st: len(FailingCam.opened) >= 2 and st["output_problem"] == "", seconds=5)
    assert any("No such device; reopening every 0.2 s" in p for p in problems), problems
    assert d.running and d.status().error is None
    # Now it stays away for a while: reopening fails, and status says so all along.
    FailingCam.down_until = time.monotonic() + 1.0
    FailingCam.opened[-1].fail_after = len(FailingCam.opened[-1].sent)
    problems = _poll(d, until=lambda st: time.monotonic() > FailingCam.down_until and st["output_problem"] == "",
                     seconds=5)
    assert any("no virtual camera could be opened" in p and "no such device" in p for p in problems), problems
    back = FailingCam.opened[-1]
    wait_frames(back, 10)  # frames flow again, into a camera opened anew
    assert d.running and d.status().output["backend"] == "failing"
    failed = [r for r in caplog.records if "the output failed" in r.getMessage()]
    assert len(failed) == 2, [r.getMessage() for r in caplog.records]  # one line per outage, not per try
    assert main(["ctl", "status"]) == 0


def _poll(d, until, seconds: float) -> list[str]:
    """The status' output_problem values seen until ``until(status)``."""
    seen = []
    deadline = time.monotonic() + seconds
    while True:
        st = d.status().as_dict()
        assert st["running"], st["error"]
        seen.append(st["output_problem"])
        if until(st):
            return seen
        assert time.monotonic() < deadline, seen[-5:]
        time.sleep(0.02)


# -- 5. a real daemon's control socket under abuse --------------------------------------------

def test_random_bytes_huge_and_half_requests_and_a_crowd_at_once(clip, recorder, daemons):
    d = daemons(clip, layout="camera", persona=None)
    rec = Recorder.last
    wait_frames(rec, 5)
    rng = np.random.default_rng(5)
    payloads = ([rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(1, 8192, 12)]
                + [b'{"cmd": "status"'] * 8  # half a request, then silence
                + [b'{"cmd": "status", "arg": "' + b"x" * (300 << 10) + b'"}\n'] * 4  # over 64 KiB
                + [b'{"cmd": "status"}\n' * 50] * 8)  # a burst on one connection
    replies = []

    def abuse(payload):
        try:
            with raw(d.control) as s:
                s.sendall(payload)
                s.settimeout(4)
                while s.recv(65536):
                    pass
            replies.append(True)
        except OSError:  # refused, reset, cut off: all fine, as long as the daemon lives
            replies.append(False)

    n0, t0 = len(rec.sent), time.monotonic()
    crowd = [threading.Thread(target=abuse, args=(p,)) for p in payloads]
    for t in crowd:
        t.start()
    for t in crowd:
        t.join(timeout=10)
    rate = (len(rec.sent) - n0) / (time.monotonic() - t0)
    assert abs(rate - FPS) < 4, f"{rate:.1f} fps while {len(crowd)} clients misbehaved"
    assert len(replies) == len(crowd)
    st = ControlClient(timeout=5).request("status")["status"]  # and then it still answers
    assert st["running"] and not st["paused"] and st["layout"] == "camera"
    n1 = len(rec.sent)
    wait_frames(rec, n1 + 10)  # frames keep flowing
