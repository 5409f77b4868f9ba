"""The daemon behind ``f2f-cam run``: webcam -> pipeline -> virtual camera, live-controlled.

Three threads overlap the work; at each hand-off the newest frame wins:

    capture   opens the source, keeps only its newest frame, reopens a lost camera
    process   applies control commands between frames, runs the pipeline (or makes
              the "camera lost" frame)
    output    publishes the newest output at the camera's fps, repeating it when
              processing is slower: the virtual camera never stops, so apps never
              lose the device

The control socket and the tray call the ``Daemon``'s methods from their own threads.
Slow work (loading a persona) happens there; the processing thread only swaps stages
in between two frames, so a switch shows in the next output frame.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from f2f_cam import paths
from f2f_cam.config import DaemonConfig, PipelineConfig, parse_size
from f2f_cam.errors import AlreadyRunning, UserError

log = logging.getLogger(__name__)

LOCK_NAME = "daemon.lock"
STALL_SECONDS = 2.0  # a camera that delivers nothing for this long is lost
LOST_TEXT = "camera lost - retrying"
COMMANDS = ("status", "persona", "layout", "retarget", "mirror", "pause", "resume", "calibrate",
            "preview", "landmarks", "passthrough", "quit")


def on_off(value, what: str) -> bool:
    """A switch argument: true/false, on/off, 1/0, yes/no."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise UserError(f"{what} takes on or off, not {value!r}")


# -- one daemon per user ---------------------------------------------------------------

class InstanceLock:
    """An exclusive lock on ``daemon.lock`` in the runtime folder. The OS drops it when
    the process dies, so a crash never leaves a stale lock."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        f = open(self.path, "a+", encoding="utf-8")
        try:
            _lock_file(f)
        except OSError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            raise AlreadyRunning(f"an f2f-cam daemon is already running{f' (pid {pid})' if pid else ''}; "
                            "see it with `f2f-cam ctl status`, stop it with `f2f-cam ctl quit`") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock (a daemon runs); changes nothing."""
        if self._file is not None or not self.path.exists():
            return False
        with open(self.path, "a+", encoding="utf-8") as f:
            try:
                _lock_file(f)
            except OSError:
                return True
        return False  # closing the file dropped the lock we just took

    def release(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()  # closing drops the lock; the file stays (unlinking it would race)


def _lock_file(f) -> None:
    if os.name == "nt":
        import msvcrt

        f.seek(0)  # every process locks the same byte, whatever the file's length
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# -- capture ---------------------------------------------------------------------------

class Capture:
    """Owns the source in its own thread: keeps only the newest frame, and when the
    source fails (raises, or delivers nothing for ``stall_s``) closes it and reopens it
    every ``retry_s`` until it works again.

    ``open_source()`` returns an object with ``read(timeout) -> (t, frame) | None`` and
    ``close()`` (``sources.CameraSource``, ``sources.RealTimeSource``).
    """

    def __init__(self, open_source: Callable, first=None, retry_s: float = 1.0, stall_s: float = STALL_SECONDS):
        self._open = open_source
        self._source = first
        self.retry_s = retry_s
        self.stall_s = stall_s
        self.state = "starting"  # starting | ok | lost
        self.problem = ""  # why it is lost, for status and the log
        self.captured = 0
        self.dropped = 0  # frames overwritten before the processing thread took them
        self.size: tuple[int, int] | None = getattr(first, "size", None)
        self._cond = threading.Condition()
        self._latest: tuple[int, float, np.ndarray] | None = None  # (seq, monotonic s, frame)
        self._taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "Capture":
        self._thread.start()
        return self

    def read(self, timeout: float) -> tuple[int, float, np.ndarray] | None:
        """The newest frame not taken before, waiting up to ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None and self._latest[0] != self._taken,
                                       timeout):
                return None
            self._taken = self._latest[0]
            return self._latest

    def _put(self, frame: np.ndarray) -> None:
        with self._cond:
            self.captured += 1
            if self._latest is not None and self._latest[0] != self._taken:
                self.dropped += 1  # the newest wins: the old one was never processed
            self._latest = (self.captured, time.monotonic(), frame)
            self._cond.notify_all()

    def _lost(self, why: str) -> None:
        if self.state == "ok":
            log.warning("camera lost (%s); retrying every %g s", why, self.retry_s)
        elif self.state == "starting":
            log.warning("%s; retrying every %g s", why, self.retry_s)
        self.state, self.problem = "lost", why

    def _run(self) -> None:
        while not self._stop.is_set():
            src, self._source = self._source, None
            if src is None:
                try:
                    src = self._open()
                except Exception as e:  # UserError, OSError, cv2 errors: all mean "not there yet"
                    self._lost(_one_line(e))
                    self._stop.wait(self.retry_s)
                    continue
            self.size = getattr(src, "size", self.size)
            try:
                while not self._stop.is_set():
                    try:
                        item = src.read(timeout=self.stall_s)
                    except Exception as e:
                        self._lost(f"read failed: {_one_line(e)}")
                        break
                    if item is None:
                        self._lost(f"no frame for {self.stall_s:g} s")
                        break
                    if self.state != "ok":
                        if self.state == "lost":
                            log.warning("camera is back")
                        self.state, self.problem = "ok", ""
                    self._put(item[1])
            finally:
                _close_quietly(src)
            self._stop.wait(self.retry_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.stall_s + 2)
        if self._source is not None:  # opened but never started
            _close_quietly(self._source)
            self._source = None


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV logs a dozen lines each time a missing camera fails to open, and the
    daemon retries every second: keep them for --verbose."""
    import cv2

    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _close_quietly(src) -> None:
    try:
        src.close()
    except Exception as e:  # a camera that vanished can fail to close; nothing to save
        log.debug("closing the source failed: %s", e)


# -- sinks -----------------------------------------------------------------------------

class _PacedSink:
    """A file or window sink plus a pacer: the same interface as ``VirtualCamSink``."""

    def __init__(self, sink, kind: str, size: tuple[int, int], fps: float, where: str):
        from f2f_cam.virtualcam import Pacer

        self.sink, self.kind, self.size, self.fps, self.where = sink, kind, size, fps, where
        self._pacer = Pacer(fps)
        self._t0: float | None = None  # monotonic s of a file's first frame

    @property
    def closed(self) -> bool:
        return bool(getattr(self.sink, "closed", False))

    def describe(self) -> dict:
        return {"kind": self.kind, "backend": self.kind, "device": self.where,
                "size": list(self.size), "fps": self.fps}

    def write(self, frame: np.ndarray) -> None:
        if self.kind != "file":
            self.sink.write(frame)
            return
        # A recording keeps real time: when a write came late (a busy CPU), the frame is
        # written again for the periods it missed, so the file lasts as long as the run.
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = int((now - self._t0) * self.fps) + 1  # frames the file should hold by now
        if due - self.sink.frames > self.fps:  # more than a second behind: give up on those
            self._t0 = now - self.sink.frames / self.fps
            due = self.sink.frames + 1
        for _ in range(max(1, due - self.sink.frames)):
            self.sink.write(frame)

    def sleep_until_next_frame(self) -> None:
        self._pacer.sleep_until_next_frame()

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        if hasattr(self.sink, "abort"):
            self.sink.abort()


def open_sink(cfg: DaemonConfig, size: tuple[int, int], fps: float):
    """The output named by ``cfg.output``: virtualcam, window, or a video file."""
    if cfg.output == "virtualcam":
        from f2f_cam.virtualcam import VirtualCamSink

        return VirtualCamSink(size, fps, backend=cfg.backend, device=cfg.device)
    if cfg.output == "window":
        from f2f_cam.preview import PreviewWindow

        return _PacedSink(PreviewWindow(size, "Face2Face Cam", folder=paths.runtime_dir()), "window", size, fps,
                          "preview window")
    path = Path(cfg.output)
    if not path.suffix:
        raise UserError(f"unknown output '{cfg.output}'; use virtualcam, window or a file such as out.mp4")
    if size[0] % 2 or size[1] % 2:
        raise UserError(f"a video file needs an even size, not {size[0]}x{size[1]}")
    from f2f_cam.sinks import VideoFileSink

    return _PacedSink(VideoFileSink(path, size, fps), "file", size, fps, str(path))


def lost_frame(last: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """The last output darkened, with a short note: (H, W, 3) uint8."""
    import cv2

    w, h = size
    out = (last // 4) if last is not None else np.zeros((h, w, 3), np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, w / 900)
    thick = max(1, round(scale * 2))
    (tw, th), _ = cv2.getTextSize(LOST_TEXT, font, scale, thick)
    org = ((w - tw) // 2, (h + th) // 2)
    cv2.putText(out, LOST_TEXT, org, font, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
    cv2.putText(out, LOST_TEXT, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


# -- the daemon ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Published:
    frame: np.ndarray  # (H, W, 3) uint8, never written to after publishing
    t_capture: float | None  # monotonic s the camera frame arrived (None: no camera frame)
    seq: int


class _Command:
    def __init__(self, fn: Callable):
        self.fn, self.done, self.result, self.error = fn, threading.Event(), None, None


def _answer(commands: list[_Command]) -> None:
    for cmd in commands:
        cmd.done.set()
    commands.clear()


class _Rate:
    """Events per second over the last ~2 seconds."""

    def __init__(self, n: int = 64):
        self._t: collections.deque = collections.deque(maxlen=n)

    def tick(self, t: float) -> None:
        self._t.append(t)

    def per_second(self, now: float) -> float:
        ts = [t for t in list(self._t) if now - t <= 2.0]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-6)


class Daemon:
    """Camera in, virtual camera out, with live switching. ``start()``, then ``wait()``
    or ``stop()``; the methods below are what ``f2f-cam ctl`` and the tray call.

    ``open_source`` replaces opening ``cfg.camera`` (tests pass a camera that fails);
    ``control=False`` runs without the control socket.
    """

    def __init__(self, cfg: DaemonConfig, pipeline_cfg: PipelineConfig, *,
                 open_source: Callable | None = None, control: bool = True):
        from f2f_cam.sources import is_camera

        self.cfg = cfg
        self.size = parse_size(cfg.size)
        if not 1 <= cfg.fps <= 240:
            raise UserError(f"--fps must be between 1 and 240, not {cfg.fps:g}")
        mirror = cfg.mirror if cfg.mirror is not None else is_camera(cfg.camera)
        self.pipeline_cfg = replace(pipeline_cfg, mirror=mirror)
        self._custom_source = open_source
        self._use_control = control
        self.pipe = None
        self.sink = None
        self.capture: Capture | None = None
        self.control = None
        self.paused = False
        self.preview = False
        self.error: str | None = None  # why the daemon stopped on its own, if it did
        self._lock: InstanceLock | None = None
        self._layout_before: str | None = None  # to go back after landmarks / passthrough
        self._commands: queue.Queue = queue.Queue()
        self._control_lock = threading.RLock()  # one switch at a time
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._teardown = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._out: _Published | None = None
        self._seq = 0
        self._t0 = time.monotonic()
        self._last_t = -1.0
        self._frames_out = 0
        self._processed = 0
        self._latency_ms: float | None = None
        self._out_rate, self._proc_rate = _Rate(), _Rate()
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "Daemon":
        """Take the lock, load the pipeline, open the output and the camera, start."""
        from f2f_cam.control import ControlServer, ensure_runtime_dir
        from f2f_cam.pipeline import build_pipeline
        from f2f_cam.video import resolve_persona

        try:
            self._lock = InstanceLock(ensure_runtime_dir())
            self._lock.acquire()
            persona = resolve_persona(self.pipeline_cfg.persona)
            self.pipe = build_pipeline(self.pipeline_cfg, persona, self.size, detector_mode="video")
            self.sink = open_sink(self.cfg, self.size, self.cfg.fps)
            self.capture = Capture(self._open_source, first=self._open_first(), retry_s=self.cfg.retry_seconds)
            if self._use_control:
                self.control = ControlServer(self._handle)
        except BaseException:
            if self.sink is not None and hasattr(self.sink, "abort"):
                self.sink.abort()  # a file output that never got a frame: leave nothing behind
            self._close_resources()
            raise
        self._started_at = time.monotonic()
        self.capture.start()
        for target, name in ((self._process_loop, "process"), (self._output_loop, "output")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("f2f-cam daemon running: camera %s -> %s", self.cfg.camera, self.sink.describe())
        return self

    def _open_source(self):
        if self._custom_source is not None:
            return self._custom_source()
        from f2f_cam.sources import open_live_source

        with _opencv_quiet():
            return open_live_source(self.cfg.camera)

    def _open_first(self):
        """Open the source once now: a missing file is the user's error right away; a
        webcam that is not there yet is retried by the capture thread."""
        from f2f_cam.sources import is_camera

        try:
            return self._open_source()
        except UserError:
            if self._custom_source is None and not is_camera(self.cfg.camera):
                raise
            return None  # the capture thread says so, and retries

    @property
    def running(self) -> bool:
        return self._started_at is not None and not self._stop.is_set()

    def request_stop(self) -> None:
        """Ask every thread to finish (returns at once; ``stop()`` waits for them)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (``ctl quit``, the tray, a signal)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            # Short waits: the main thread stays responsive to signals.
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._stop.wait(0.2)
        return True

    def stop(self) -> None:
        """Stop the threads and close everything; safe to call twice, from any thread
        but the daemon's own."""
        self.request_stop()
        with self._teardown:
            if self._stopped.is_set():
                return
            for t in self._threads:
                t.join(timeout=10)
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
            self._close_resources()
            self._stopped.set()
            log.info("f2f-cam daemon stopped: %s", self.summary())

    def _close_resources(self) -> None:
        for name in ("control", "capture", "sink", "pipe"):
            obj = getattr(self, name)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # keep closing the rest
                    log.exception("closing the %s failed", name)
        if self._lock is not None:
            self._lock.release()
        self._drain_commands("the daemon is stopping")

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the processing thread -----------------------------------------------------------

    def _process_loop(self) -> None:
        last_input = None  # (seq, t_capture, frame): re-processed right after a switch
        applied: list[_Command] = []  # switches made, answered once their frame is out
        shown_lost = False
        errors = 0
        while not self._stop.is_set():
            applied += self._apply_commands()
            item = self.capture.read(timeout=0.02 if applied else 0.05)
            again = item is None and bool(applied) and last_input is not None and self.capture.state == "ok"
            if again:
                item = last_input  # show the switch now, not at the next camera frame
            if item is None:
                if self.capture.state == "lost" and not self.paused and not shown_lost:
                    last = self._out.frame if self._out is not None else None
                    self._publish(lost_frame(last, self.size), None)
                    shown_lost = True
                _answer(applied)  # no frame to show it in (camera lost, not started)
                continue
            last_input = item
            shown_lost = False
            if self.paused:
                _answer(applied)
                continue  # the output keeps repeating the frozen frame
            _, t_capture, frame = item
            # Strictly increasing times: MediaPipe's VIDEO mode needs them, and a
            # reopened camera starts its own clock again.
            t = max(t_capture - self._t0, self._last_t + 1e-3)
            self._last_t = t
            try:
                out = self.pipe(frame, t)
            except Exception:  # a bug: keep the camera alive, say it once
                errors += 1
                if errors == 1 or errors % 300 == 0:
                    log.exception("processing a frame failed (%d so far)", errors)
                _answer(applied)
                continue
            self._processed += 1
            self._proc_rate.tick(time.monotonic())
            self._publish(out, None if again else t_capture)  # an old frame again: no latency figure
            # The reply goes out now: the output thread sends this frame at its next tick.
            _answer(applied)
        _answer(applied)
        self._drain_commands("the daemon is stopping")

    def _publish(self, frame: np.ndarray, t_capture: float | None) -> None:
        self._seq += 1
        self._out = _Published(frame, t_capture, self._seq)  # one assignment: atomic

    def _apply_commands(self) -> list[_Command]:
        """Run the queued switches; those that worked are answered by the caller once
        their first frame is published, those that failed at once."""
        applied = []
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return applied
            try:
                cmd.result = cmd.fn()
                applied.append(cmd)
            except Exception as e:
                cmd.error = e
                cmd.done.set()

    def _drain_commands(self, why: str) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            cmd.error = UserError(why)
            cmd.done.set()

    def _submit(self, fn: Callable, timeout: float = 10.0):
        """Run ``fn()`` in the processing thread between two frames; wait for it."""
        if not self.running:
            raise UserError("the daemon is not running")
        cmd = _Command(fn)
        self._commands.put(cmd)
        deadline = time.monotonic() + timeout
        while not cmd.done.wait(0.1):
            if not self._threads[0].is_alive():  # the processing thread has finished
                self._drain_commands("the daemon is stopping")
            elif time.monotonic() > deadline:
                raise UserError(f"the daemon did not apply the change within {timeout:g} s")
        if cmd.error is not None:
            raise cmd.error
        return cmd.result

    # -- the output thread ---------------------------------------------------------------

    def _output_loop(self) -> None:
        blank = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        last_seq = 0
        preview = None
        try:
            while not self._stop.is_set():
                out = self._out
                frame = out.frame if out is not None else blank
                self.sink.write(frame)
                now = time.monotonic()
                self._frames_out += 1
                self._out_rate.tick(now)
                if out is not None and out.seq != last_seq:
                    last_seq = out.seq
                    if out.t_capture is not None:
                        ms = (now - out.t_capture) * 1e3
                        old = self._latency_ms
                        self._latency_ms = ms if old is None else old + 0.1 * (ms - old)
                try:
                    preview = self._update_preview(preview, frame)
                except Exception:  # the preview is a convenience: never take the output down
                    log.exception("the preview window failed; closing it")
                    self.preview, preview = False, None
                if getattr(self.sink, "closed", False):  # the preview window output was closed
                    log.info("output window closed; stopping")
                    self.request_stop()
                    break
                self.sink.sleep_until_next_frame()
        except Exception as e:  # the output is gone (disk full, device removed): stop, say why
            self.error = f"the output failed: {_one_line(e)}"
            log.exception("the output failed; stopping")
            self.request_stop()
        finally:
            self._stopped_at = time.monotonic()
            if preview is not None:
                preview.close()

    def _update_preview(self, window, frame: np.ndarray):
        if self.preview and window is None:
            from f2f_cam.preview import PreviewWindow

            try:
                window = PreviewWindow(self.size, folder=paths.runtime_dir())
            except (UserError, OSError) as e:
                log.warning("no preview window: %s", e)
                self.preview = False
                return None
        if window is not None:
            if self.preview:
                window.write(frame)
            if not self.preview or window.closed:
                window.close()
                self.preview = False
                return None
        return window

    # -- what ctl and the tray call ------------------------------------------------------

    def status(self) -> dict:
        """Everything ``f2f-cam ctl status`` shows; cheap, and never waits on a frame."""
        pipe, cap, now = self.pipe, self.capture, time.monotonic()
        persona = pipe.persona if pipe is not None else None
        needs = pipe.compositor.needs() if pipe is not None else set()
        end = self._stopped_at or now
        return {
            "pid": os.getpid(),
            "running": self.running,
            "uptime_s": round(end - self._started_at, 1) if self._started_at else 0.0,
            "persona": persona.name if persona else None,
            "persona_display_name": persona.display_name if persona else None,
            "personas": self.persona_names(),
            "layout": pipe.layout if pipe else None,
            "retarget": pipe.retarget_mode if pipe else None,
            "calibrated": bool(pipe and pipe.calibrated),
            "paused": self.paused,
            "mirror": bool(pipe and pipe.mirror),
            "preview": self.preview,
            "fps": round(self._out_rate.per_second(now), 1),
            "processed_fps": round(self._proc_rate.per_second(now), 1),
            "latency_ms": round(self._latency_ms, 1) if self._latency_ms is not None else None,
            "dropped": cap.dropped if cap else 0,
            "frames_out": self._frames_out,
            "frames_processed": self._processed,
            "frames_captured": cap.captured if cap else 0,
            "face": (pipe.face_found if needs & {"sketch", "face"} else None) if pipe else None,
            "camera": cap.state if cap else "starting",
            "camera_problem": cap.problem if cap else "",
            "camera_source": str(self.cfg.camera),
            "camera_size": list(cap.size) if cap and cap.size else None,
            "output": self.sink.describe() if self.sink else None,
            "stage_ms": {k: round(v, 2) for k, v in dict(pipe.stats.stage_ms).items()} if pipe else {},
            "error": self.error,
        }

    def summary(self) -> dict:
        s = self.status()
        secs = s["uptime_s"] or 1e-9
        return {"seconds": s["uptime_s"], "frames_out": s["frames_out"],
                "fps": round(s["frames_out"] / secs, 1), "frames_processed": s["frames_processed"],
                "processed_fps": round(s["frames_processed"] / secs, 1), "dropped": s["dropped"],
                "latency_ms": s["latency_ms"], "output": s["output"], "error": s["error"]}

    def persona_names(self) -> list[str]:
        from f2f_cam.persona import PersonaStore

        try:
            return PersonaStore().names()
        except OSError:
            return []

    def set_persona(self, name: str) -> None:
        from f2f_cam.persona import PersonaStore

        with self._control_lock:
            persona = PersonaStore().get(str(name))
            stages = self.pipe.prepare(persona=persona)  # loads the generator here, not in the loop
            self._submit(lambda: self.pipe.apply(stages))
            log.info("persona: %s", persona.name)

    def set_layout(self, layout: str, *, remember: bool = True) -> None:
        with self._control_lock:
            stages = self.pipe.prepare(layout=str(layout))
            self._submit(lambda: self.pipe.apply(stages))
            if remember:
                self._layout_before = None
            log.info("layout: %s", layout)

    def _override_layout(self, layout: str, on: bool) -> None:
        """Landmarks and passthrough: a temporary layout, and back to the one before."""
        with self._control_lock:
            current = self.pipe.layout
            if on and current != layout:
                before = self._layout_before or current
                self.set_layout(layout, remember=False)
                self._layout_before = before
            elif not on and current == layout:
                back = self._layout_before or self.pipeline_cfg.layout
                self.set_layout(back if back != layout else "persona")

    def show_landmarks(self, on: bool) -> None:
        self._override_layout("landmarks", on)

    def set_passthrough(self, on: bool) -> None:
        self._override_layout("camera", on)

    def set_retarget(self, mode: str) -> None:
        with self._control_lock:
            self._submit(lambda: self.pipe.set_retarget(str(mode)))

    def set_mirror(self, on: bool) -> None:
        with self._control_lock:
            self._submit(lambda: self.pipe.set_mirror(on))

    def set_paused(self, on: bool) -> None:
        def apply():
            self.paused = bool(on)

        with self._control_lock:
            self._submit(apply)

    def pause(self) -> None:
        self.set_paused(True)

    def resume(self) -> None:
        self.set_paused(False)

    def calibrate(self) -> str:
        """Take the face in view as the neutral face; ``align`` becomes ``transfer``
        (the mode calibration is for). Returns the retarget mode now in use."""
        def apply():
            self.pipe.calibrate()
            if self.pipe.retarget_mode == "align":
                self.pipe.set_retarget("transfer")
            return self.pipe.retarget_mode

        with self._control_lock:
            return self._submit(apply)

    def set_preview(self, on: bool) -> None:
        """Show or hide the preview window (a process of its own, see ``preview``)."""
        from f2f_cam.preview import display_problem

        problem = display_problem()
        if on and problem:
            raise UserError(problem)
        self.preview = bool(on)

    def open_personas_folder(self) -> Path:
        folder = paths.personas_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if sys.platform == "win32":
            os.startfile(folder)  # noqa: S606 (the user's own folder)
        else:
            opener = "open" if sys.platform == "darwin" else "xdg-open"
            if not shutil.which(opener):
                raise UserError(f"cannot open {folder}: `{opener}` is not installed")
            subprocess.Popen([opener, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return folder

    def quit(self) -> None:
        self.request_stop()

    def _handle(self, cmd: str, arg) -> dict:
        """The control protocol: one request -> the reply's fields (see ``control``)."""
        return handle_command(self, cmd, arg)


def handle_command(daemon: Daemon, cmd: str, arg) -> dict:
    """Dispatch a control request to the daemon; the reply carries the new status."""
    def need(what: str) -> str:
        if not isinstance(arg, str) or not arg:
            raise UserError(f"'{cmd}' needs {what}")
        return arg

    message = None
    if cmd == "status":
        pass
    elif cmd == "persona":
        daemon.set_persona(need("a persona name"))
    elif cmd == "layout":
        daemon.set_layout(need("a layout name"))
    elif cmd == "retarget":
        daemon.set_retarget(need("a mode: raw, align or transfer"))
    elif cmd == "mirror":
        daemon.set_mirror(on_off(arg, "mirror"))
    elif cmd == "pause":
        daemon.pause()
    elif cmd == "resume":
        daemon.resume()
    elif cmd == "calibrate":
        mode = daemon.calibrate()
        message = f"neutral face calibrated; retarget {mode}"
    elif cmd == "preview":
        daemon.set_preview(on_off(arg, "preview"))
    elif cmd == "landmarks":
        daemon.show_landmarks(on_off(arg, "landmarks"))
    elif cmd == "passthrough":
        daemon.set_passthrough(on_off(arg, "passthrough"))
    elif cmd == "quit":
        daemon.quit()
        message = "quitting"
    else:
        raise UserError(f"unknown command '{cmd}'; choose one of: {', '.join(COMMANDS)}")
    reply = {"status": daemon.status()}
    if message:
        reply["message"] = message
    return reply


# -- the one place that wires it all: logging, lock, daemon, tray or headless ------------

def serve(cfg: DaemonConfig, pipeline_cfg: PipelineConfig, *, seconds: float | None = None) -> dict:
    """``f2f-cam run``: start the daemon, then run the tray on this (main) thread, or
    wait headless, until ``ctl quit``, the tray's Quit, a signal, or ``seconds``."""
    file_log = _log_to_file()
    try:
        daemon = Daemon(cfg, pipeline_cfg).start()
        restore = _stop_on_signals(daemon)
        timer = None
        if seconds is not None:
            timer = threading.Timer(seconds, daemon.request_stop)
            timer.daemon = True
            timer.start()
        try:
            tray = None
            if cfg.tray:
                from f2f_cam.tray import make_tray

                tray = make_tray(daemon)
            if tray is not None:
                tray.run()  # returns once the daemon is asked to stop
            else:
                daemon.wait()
        finally:
            restore()
            if timer is not None:
                timer.cancel()
            daemon.stop()
        if daemon.error:
            raise UserError(daemon.error)
        return daemon.summary()
    finally:
        _remove_file_log(file_log)


def _stop_on_signals(daemon: Daemon) -> Callable[[], None]:
    """SIGINT/SIGTERM ask the daemon to stop cleanly (the virtual camera is closed,
    the file finished); a second one is handled as before. Returns a function that
    puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {}

    def on_signal(sig, _frame):
        daemon.request_stop()
        # A second one acts at once, in case stopping itself hangs.
        signal.signal(sig, saved.get(sig, signal.SIG_DFL))

    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, on_signal)

    def restore():
        for sig, handler in saved.items():
            signal.signal(sig, handler)

    return restore


def _log_to_file():
    """The daemon runs for hours, often with no terminal: INFO and up also go to
    ``daemon.log`` in the user log folder (rotated at 1 MB)."""
    from logging.handlers import RotatingFileHandler

    try:
        folder = paths.log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(folder / "daemon.log", maxBytes=1 << 20, backupCount=2, encoding="utf-8")
    except OSError as e:
        log.warning("no log file: %s", e)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root, pkg = logging.getLogger(), logging.getLogger("f2f_cam")
    # The terminal keeps its level (WARNING unless --verbose) while the file gets INFO.
    for h in root.handlers:
        if h.level == logging.NOTSET:
            h.setLevel(root.level)
    saved_level = pkg.level
    if pkg.getEffectiveLevel() > logging.INFO:
        pkg.setLevel(logging.INFO)
    pkg.addHandler(handler)
    return handler, saved_level


def _remove_file_log(state) -> None:
    if state is None:
        return
    handler, level = state
    pkg = logging.getLogger("f2f_cam")
    pkg.removeHandler(handler)
    pkg.setLevel(level)
    handler.close()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__
