"""The daemon behind ``f2f-cam run``: webcam -> pipeline -> virtual camera, live-controlled.

Three threads overlap the work; at each hand-off the newest frame wins:

    capture   ``capture.Capture``: reads the camera, keeps only its newest frame,
              reopens a lost camera
    process   ``flow.run`` over the capture's frames, with live switches applied in
              between two frames
    output    ``sinks.paced.PacedOutput``: publishes the newest output at the camera's
              fps, repeating it when processing is slower, so apps never lose the device

The control socket and the tray call the ``Daemon``'s methods from their own threads.
Slow work (loading a persona) happens there; the processing thread only swaps stages
in between two frames, so a switch shows in the next output frame.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np

from f2f_cam import flow
from f2f_cam.config import DaemonConfig, PipelineConfig
from f2f_cam.errors import UserError
from f2f_cam.sinks.paced import Rate
from f2f_cam.system import split_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonStatus:
    """What ``f2f-cam ctl status`` shows and the tray reads; cheap to make."""

    pid: int
    running: bool
    uptime_s: float
    persona: str | None
    persona_display_name: str | None
    personas: list
    layout: str | None
    retarget: str | None
    calibrated: bool
    paused: bool
    mirror: bool
    preview: bool
    fps: float  # frames out per second, over the last ~2 s
    processed_fps: float
    latency_ms: float | None  # camera frame captured -> sent to the output (moving average)
    dropped: int  # camera frames overwritten before they were processed
    frames_out: int
    frames_processed: int
    frames_captured: int
    face: bool | None  # None: the layout does not track the face
    camera: str  # starting | ok | lost
    camera_problem: str
    camera_source: str
    camera_size: list | None
    output: dict | None
    output_problem: str  # why frames are not going out now, e.g. the virtual camera being reopened
    stage_ms: dict
    generator: str | None  # how the generator runs: "bf16 compiled", "bf16 eager (compiling)", ...
    error: str | None  # why the daemon stopped on its own, if it did

    def as_dict(self) -> dict:
        """The fields, and ``state`` (so clients such as the preview window need not
        work it out again)."""
        return {**dataclasses.asdict(self), "state": self.state}

    @property
    def state(self) -> str:
        """running | paused | no face | camera lost (the tray icon's badge)."""
        if self.camera == "lost":
            return "camera lost"
        if self.paused:
            return "paused"
        return "no face" if self.face is False else "running"


class Switches:
    """Live switches queued for the processing thread, answered once their first frame
    is out (so ``ctl layout camera`` returns when the output shows it)."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._applied: list = []  # [fn, done Event, result, error] lists

    def submit(self, fn: Callable, alive: Callable[[], bool], timeout: float = 10.0):
        """Run ``fn()`` in the processing thread between two frames; wait for it."""
        cmd = [fn, threading.Event(), None, None]
        self._queue.put(cmd)
        deadline = time.monotonic() + timeout
        while not cmd[1].wait(0.1):
            if not alive():  # the processing thread has finished
                self.drain("the daemon is stopping")
            elif time.monotonic() > deadline:
                raise UserError(f"the daemon did not apply the change within {timeout:g} s")
        if cmd[3] is not None:
            raise cmd[3]
        return cmd[2]

    def apply(self) -> bool:
        """Run the queued switches (call between frames). A failed one is answered at
        once; the rest once ``answer()`` is called. Returns whether any are waiting."""
        while True:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                return bool(self._applied)
            try:
                cmd[2] = cmd[0]()
                self._applied.append(cmd)
            except Exception as e:
                cmd[3] = e
                cmd[1].set()

    def answer(self) -> None:
        for cmd in self._applied:
            cmd[1].set()
        self._applied.clear()

    def drain(self, why: str) -> None:
        """Answer everything, the queued ones with ``why`` (the daemon is stopping)."""
        self.answer()
        while True:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                return
            cmd[3] = UserError(why)
            cmd[1].set()


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
        self.size = cfg.frame_size  # (w, h); the config checked it
        mirror = cfg.mirror if cfg.mirror is not None else is_camera(cfg.camera)
        self.pipeline_cfg = replace(pipeline_cfg, mirror=mirror)
        self._custom_source = open_source
        self._use_control = control
        self.pipe = self.output = self.capture = self.control = self.preview = None
        self.paused = False
        self.error: str | None = None  # why the daemon stopped on its own, if it did
        self._keep_output = True  # False: a file output is removed at the stop
        self._lock = None
        self._layout_before: str | None = None  # to go back after landmarks / passthrough
        self._switches = Switches()
        self._control_lock = threading.RLock()  # one switch at a time
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._teardown = threading.Lock()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._processed = 0
        self._proc_rate = Rate()
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "Daemon":
        """Take the lock, load the pipeline, open the output and the camera, start."""
        from f2f_cam.capture import Capture
        from f2f_cam.control import ControlServer, ensure_runtime_dir
        from f2f_cam.lock import InstanceLock
        from f2f_cam.pipeline import build_pipeline
        from f2f_cam.sinks import open_sink
        from f2f_cam.sinks.paced import PacedOutput
        from f2f_cam.sinks.window import PreviewTap
        from f2f_cam.sources import is_camera

        sink = None
        try:
            runtime = ensure_runtime_dir()
            self._lock = InstanceLock(runtime)
            self._lock.acquire()
            split_threads()  # before the generator loads: it keeps the count for its own thread
            self.pipe = build_pipeline(self.pipeline_cfg, self.size, detector_mode="video", compile="background")
            # A preview window's keys and overlay talk to this daemon over the control socket.
            control = runtime if self._use_control else None
            sink = open_sink(self.cfg.output, self.size, self.cfg.fps, backend=self.cfg.backend,
                             device=self.cfg.device, control=control)
            self.preview = PreviewTap(self.size, control=control)
            self.output = PacedOutput(sink, self.cfg.fps, clock_origin=self._t0, on_stop=self._output_stopped,
                                      tap=self.preview, retry_s=self.cfg.retry_seconds)
            from_file = self._custom_source is None and not is_camera(self.cfg.camera)
            self.capture = Capture(self._open_source, first=self._open_first(), retry_s=self.cfg.retry_seconds,
                                   on_fail=self._camera_file_failed if from_file else None)
            if self._use_control:
                self.control = ControlServer(self._handle, runtime)
        except BaseException:
            if sink is not None and hasattr(sink, "abort"):
                sink.abort()  # a file output that never got a frame: leave nothing behind
            elif sink is not None:
                sink.close()
            self.output = None
            self._close_resources()
            raise
        self._started_at = time.monotonic()
        self.capture.start()
        self.output.start()
        self._thread = threading.Thread(target=self._process, name="process", daemon=True)
        self._thread.start()
        log.info("f2f-cam daemon running: camera %s -> %s", self.cfg.camera, self.output.describe())
        return self

    def _open_source(self):
        if self._custom_source is not None:
            return self._custom_source()
        from f2f_cam.sources import open_source

        return open_source(self.cfg.camera, live=True)

    def _open_first(self):
        """Open the source once now: a missing file is the user's error right away; a
        webcam that is not there yet is retried by the capture thread."""
        from f2f_cam.capture import opencv_quiet
        from f2f_cam.sources import is_camera

        try:
            with opencv_quiet():
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

    def _camera_file_failed(self, why: str) -> None:
        """A video file played as the camera failed to decode: it is damaged and will
        not come back. Stop, say why, and keep no recording of the run (a user error
        leaves nothing written)."""
        self.error = self.error or why
        self._keep_output = False
        self.request_stop()

    def _output_stopped(self, error: str | None) -> None:
        self.error = self.error or error
        self.request_stop()

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
            if self.output is not None:
                self.output.stop()  # no frame goes out after the stop was asked for
                if not self._keep_output and hasattr(self.output.sink, "abort"):
                    self.output.sink.abort()  # the file is removed; closing it is then a no-op
            if self._thread is not None:
                self._thread.join(timeout=10)
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
            self._close_resources()
            self._stopped.set()
            log.info("f2f-cam daemon stopped: %s", self.summary())

    def _close_resources(self) -> None:
        # The output first: its thread ends, then the file is finished or the camera closed.
        for name in ("control", "output", "capture", "pipe"):
            obj = getattr(self, name)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # keep closing the rest
                    log.exception("closing the %s failed", name)
        if self._lock is not None:
            self._lock.release()
        self._switches.drain("the daemon is stopping")

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the processing thread -----------------------------------------------------------

    def _process(self) -> None:
        errors = [0]

        def failed(_e: Exception) -> None:  # a bug: keep the camera alive, say it once
            errors[0] += 1
            if errors[0] == 1 or errors[0] % 300 == 0:
                log.exception("processing a frame failed (%d so far)", errors[0])
            self._switches.answer()

        def written(_t: float) -> None:
            self._processed += 1
            if self._processed == 1:
                log.info("first frame out %.2f s after the daemon started (generator: %s)",
                         time.monotonic() - self._t0, self.status().generator)
            self._proc_rate.tick(time.monotonic())
            self._switches.answer()  # the output thread sends this frame at its next tick

        try:
            flow.run(self._frames(), self.pipe, self.output, on_frame=written, on_error=failed, overlap=True)
        finally:
            self._switches.drain("the daemon is stopping")

    def _frames(self) -> Iterator[tuple[float, np.ndarray | None]]:
        """The capture's frames as ``(t, frame)`` for the flow, t in seconds since the
        daemon started; with switches applied between two frames, the last frame again
        right after a switch, and one ``(t, None)`` when the camera is lost."""
        last = None  # (t, frame): re-processed right after a switch
        shown_lost = False
        while not self._stop.is_set():
            waiting = self._switches.apply()
            item = self.capture.read(timeout=0.02 if waiting else 0.05)
            if item is None:
                if waiting and last is not None and self.capture.state == "ok":
                    yield last  # show the switch now, not at the next camera frame
                elif self.capture.state == "lost" and not self.paused and not shown_lost:
                    shown_lost = True
                    yield time.monotonic() - self._t0, None
                else:
                    self._switches.answer()  # no frame to show it in (camera lost, not started)
                continue
            shown_lost = False
            last = (item[1] - self._t0, item[2])
            if self.paused:
                self._switches.answer()
                continue  # the output keeps repeating the frozen frame
            yield last

    # -- what ctl and the tray call ------------------------------------------------------

    def status(self) -> DaemonStatus:
        """Everything ``f2f-cam ctl status`` shows; cheap, and never waits on a frame."""
        pipe, cap, out, now = self.pipe, self.capture, self.output, time.monotonic()
        persona = pipe.persona if pipe is not None else None
        end = self._stopped_at or now
        describe = out.describe() if out is not None else None
        return DaemonStatus(
            pid=os.getpid(), running=self.running,
            uptime_s=round(end - self._started_at, 1) if self._started_at else 0.0,
            persona=persona.name if persona else None,
            persona_display_name=persona.display_name if persona else None,
            personas=self.persona_names(),
            layout=pipe.layout if pipe else None, retarget=pipe.retarget_mode if pipe else None,
            calibrated=bool(pipe and pipe.calibrated), paused=self.paused, mirror=bool(pipe and pipe.mirror),
            preview=bool(self.preview and self.preview.on),
            fps=round(out.rate.per_second(now), 1) if out else 0.0,
            processed_fps=round(self._proc_rate.per_second(now), 1),
            latency_ms=round(out.latency_ms, 1) if out and out.latency_ms is not None else None,
            dropped=cap.dropped if cap else 0, frames_out=out.frames_out if out else 0,
            frames_processed=self._processed, frames_captured=cap.captured if cap else 0,
            face=(pipe.face_found if pipe.tracks_face else None) if pipe else None,
            camera=cap.state if cap else "starting", camera_problem=cap.problem if cap else "",
            camera_source=str(self.cfg.camera), camera_size=list(cap.size) if cap and cap.size else None,
            output={**describe, "fps": float(self.cfg.fps)} if describe else None,
            output_problem=out.problem if out else "",
            stage_ms={k: round(v, 2) for k, v in dict(pipe.stats.stage_ms).items()} if pipe else {},
            generator=f"{pipe.generator.precision} {pipe.generator.engine}" if pipe and pipe.generator else None,
            error=self.error,
        )

    def summary(self) -> dict:
        s = self.status()
        secs = s.uptime_s or 1e-9
        return {"seconds": s.uptime_s, "frames_out": s.frames_out, "fps": round(s.frames_out / secs, 1),
                "frames_processed": s.frames_processed, "processed_fps": round(s.frames_processed / secs, 1),
                "dropped": s.dropped, "latency_ms": s.latency_ms, "output": s.output, "error": s.error}

    def persona_names(self) -> list[str]:
        from f2f_cam.persona import PersonaStore

        try:
            return PersonaStore().names()
        except OSError:
            return []

    def _submit(self, fn: Callable):
        if not self.running:
            raise UserError("the daemon is not running")
        return self._switches.submit(fn, alive=lambda: self._thread is not None and self._thread.is_alive())

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
        from f2f_cam.registry import RETARGET_MODES

        mode = RETARGET_MODES.check(str(mode))
        with self._control_lock:
            stages = self.pipe.prepare(retarget=mode)  # a detector with expression scores loads here
            self._submit(lambda: self.pipe.apply(stages, retarget=mode))

    def set_mirror(self, on: bool) -> None:
        with self._control_lock:
            self._submit(lambda: self.pipe.set_mirror(on))

    def set_paused(self, on: bool) -> None:
        def apply():
            self.paused = bool(on)

        with self._control_lock:
            self._submit(apply)

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
        """Show or hide the preview window (a process of its own, see ``sinks.window``)."""
        self.preview.set(on)

    def quit(self) -> None:
        self.request_stop()

    def _handle(self, cmd: str, arg) -> dict:
        """The control protocol: one request -> the reply's fields (see ``commands``)."""
        from f2f_cam.commands import dispatch

        return dispatch(self, cmd, arg)
