"""The runtime pipeline, wired in one place, one direction only:

Source -> LandmarkDetector -> Smoother -> Retargeter -> sketch.render -> Generator -> Compositor -> Sink
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from f2f_cam import sketch
from f2f_cam.compositor import Compositor
from f2f_cam.config import PipelineConfig
from f2f_cam.errors import UserError
from f2f_cam.persona import Persona

log = logging.getLogger(__name__)

KEEP = object()  # Pipeline.prepare(persona=KEEP): the persona in use


@dataclass
class Stats:
    """Per-stage timing (ms, exponential moving average) and frame counters."""

    frames: int = 0
    faces: int = 0
    stage_ms: dict = field(default_factory=lambda: defaultdict(float))
    _alpha: float = 0.1

    def record(self, stage: str, ms: float) -> None:
        old = self.stage_ms.get(stage)
        self.stage_ms[stage] = ms if old is None or self.frames <= 1 else old + self._alpha * (ms - old)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "faces": self.faces,
                "stage_ms": {k: round(v, 2) for k, v in self.stage_ms.items()}}


class _Timer:
    def __init__(self, stats: Stats, stage: str):
        self.stats, self.stage = stats, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.stats.record(self.stage, (time.perf_counter() - self.t0) * 1e3)


class Pipeline:
    """One camera frame in, one output frame out. Holds the no-face policy: without a
    face, show the last generated frame; before the first face, the persona's idle
    frame (its neutral landmarks through its generator)."""

    def __init__(self, *, detector, smoother, retargeter, generator, compositor: Compositor,
                 persona: Persona | None, mirror: bool = False, retarget_mode: str = "align",
                 device: str = "cpu"):
        self.detector = detector
        self.smoother = smoother
        self.retargeter = retargeter
        self.generator = generator
        self.compositor = compositor
        self.persona = persona
        self.mirror = mirror
        self.stats = Stats()
        self.last_sketch: np.ndarray | None = None
        self.last_face: np.ndarray | None = None
        self.face_found = False
        self.retarget_mode = retargeter.mode if retargeter is not None else retarget_mode
        self.device = device  # where a generator loaded by a live switch runs
        self.last_points: np.ndarray | None = None  # (478, 3) smoothed camera-frame points
        self._neutral_points: np.ndarray | None = None  # the user's calibrated neutral face

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def idle(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The persona at rest: (neutral sketch, generated neutral face)."""
        if self.persona is None:
            return None, None
        idle_sketch = sketch.render(self.persona.neutral, self.persona.image_size)
        idle_face = self.generator(idle_sketch) if self.generator is not None else None
        return idle_sketch, idle_face

    def __call__(self, frame: np.ndarray, t: float) -> np.ndarray:
        """frame: RGB uint8 (H, W, 3); t: seconds. Returns the composed output frame."""
        st = self.stats
        st.frames += 1
        if self.mirror:
            frame = frame[:, ::-1]
        needs = self.compositor.needs()
        face = None
        if needs & {"sketch", "face"}:
            with _Timer(st, "landmarks"):
                face = self.detector(frame, int(round(t * 1000)))
        self.face_found = face is not None
        if face is not None:
            st.faces += 1
            h, w = frame.shape[:2]
            with _Timer(st, "smooth+retarget"):
                points = self.smoother(face.points, t) if self.smoother else face.points
                self.last_points = points
                if self.persona is not None:
                    points = self.retargeter(points, (w, h))
            with _Timer(st, "sketch"):
                # Without a persona there is no training crop: draw on the whole frame.
                size = self.persona.image_size if self.persona is not None else (w, h)
                self.last_sketch = sketch.render(points, size)
            if "face" in needs and self.generator is not None:
                with _Timer(st, "generator"):
                    self.last_face = self.generator(self.last_sketch)
        elif self.smoother:
            self.smoother.reset()  # the next face starts fresh, not from a stale pose
        if (self.last_sketch is None or self.last_face is None) and needs & {"sketch", "face"}:
            idle_sketch, idle_face = self.idle()
            self.last_sketch = self.last_sketch if self.last_sketch is not None else idle_sketch
            self.last_face = self.last_face if self.last_face is not None else idle_face
        with _Timer(st, "compose"):
            return self.compositor(frame, self.last_sketch, self.last_face)

    # -- live switching (the daemon) --------------------------------------------------
    # A switch has two halves: ``prepare`` loads what is missing (a landmark model, a
    # generator: the slow part) in the caller's thread without touching the running
    # stages; ``apply`` swaps it in between two frames, in the thread that calls the
    # pipeline. So a switch never stalls the processing loop.

    @property
    def layout(self) -> str:
        return self.compositor.layout

    def prepare(self, *, layout: str | None = None, persona=KEEP) -> dict:
        """The stages for ``layout`` and ``persona`` (default: the current ones), loading
        only what is not loaded yet. Raises ``UserError`` when the layout needs a persona
        and there is none."""
        from f2f_cam.compositor import check_layout

        layout = check_layout(layout or self.layout)
        persona = self.persona if persona is KEEP else persona
        compositor = Compositor(layout, (self.compositor.width, self.compositor.height))
        needs = compositor.needs()
        if "face" in needs and persona is None:
            raise UserError(f"layout '{layout}' needs a persona and none is selected; choose one "
                            "(`f2f-cam personas list`) or use layout landmarks or camera")
        detector = self.detector
        if needs & {"sketch", "face"} and detector is None:
            from f2f_cam.landmarks import LandmarkDetector

            detector = LandmarkDetector(mode="video")
        generator = self.generator if persona is self.persona else None
        if "face" in needs and generator is None:
            from f2f_cam.generator import Generator

            generator = Generator(persona, device=self.device)
        return {"compositor": compositor, "persona": persona, "detector": detector, "generator": generator}

    def apply(self, stages: dict) -> None:
        """Install what ``prepare`` returned (call between frames)."""
        persona = stages["persona"]
        if persona is not self.persona:
            self.persona = persona
            self.retargeter = self._retargeter(self.retarget_mode)
            # The new persona starts from its own idle frame, not the old one's face.
            self.last_sketch = self.last_face = None
            if self.smoother:
                self.smoother.reset()
        self.detector = stages["detector"]
        self.generator = stages["generator"]
        self.compositor = stages["compositor"]

    def set_retarget(self, mode: str) -> None:
        """Switch retargeting (raw | align | transfer); a calibrated neutral face is kept."""
        from f2f_cam.retarget import check_mode

        self.retarget_mode = check_mode(mode)
        self.retargeter = self._retargeter(mode)

    def set_mirror(self, on: bool) -> None:
        if bool(on) != self.mirror:
            self.mirror = bool(on)
            if self.smoother:
                self.smoother.reset()  # every point jumps across the frame
            self._neutral_points = None  # a mirrored neutral face is not the user's
            self.retargeter = self._retargeter(self.retarget_mode)

    def calibrate(self) -> None:
        """Take the face in view now as the user's neutral face (for ``transfer``)."""
        if not self.compositor.needs() & {"sketch", "face"}:
            raise UserError(f"layout '{self.layout}' does not track the face; switch to the persona, "
                            "side-by-side or landmarks layout to calibrate")
        if not self.face_found or self.last_points is None:
            raise UserError("no face in view to calibrate: look at the camera with a relaxed, "
                            "neutral face and try again")
        self._neutral_points = np.array(self.last_points, copy=True)
        if self.retargeter is not None:
            self.retargeter.calibrate(self._neutral_points)

    @property
    def calibrated(self) -> bool:
        return self._neutral_points is not None

    def _retargeter(self, mode: str):
        from f2f_cam.retarget import Retargeter

        if self.persona is None:
            return None
        r = Retargeter(self.persona, mode)
        if self._neutral_points is not None:
            r.calibrate(self._neutral_points)  # the same face, aligned onto this persona
        return r


def build_pipeline(cfg: PipelineConfig, persona: Persona | None, out_size: tuple[int, int],
                   detector_mode: str = "video") -> Pipeline:
    """The one place that knows the stage order."""
    from f2f_cam.compositor import check_layout
    from f2f_cam.retarget import Retargeter, check_mode
    from f2f_cam.smoothing import Smoother

    layout = check_layout(cfg.layout)
    check_mode(cfg.retarget)
    compositor = Compositor(layout, out_size)
    needs = compositor.needs()
    if "face" in needs and persona is None:
        raise UserError(f"layout '{layout}' needs a persona and none is installed; train one with "
                        "`f2f-cam train VIDEO --name NAME` or import one with `f2f-cam personas import FILE.f2f`")
    detector = generator = None
    if needs & {"sketch", "face"}:
        from f2f_cam.landmarks import LandmarkDetector

        detector = LandmarkDetector(mode=detector_mode)
    if persona is not None and "face" in needs:
        from f2f_cam.generator import Generator

        generator = Generator(persona, device=cfg.device, precision=cfg.precision)
    return Pipeline(
        detector=detector,
        smoother=Smoother(cfg.min_cutoff, cfg.beta) if cfg.smoothing else None,
        retargeter=Retargeter(persona, cfg.retarget) if persona is not None else None,
        generator=generator,
        compositor=compositor,
        persona=persona,
        mirror=cfg.mirror,
        retarget_mode=cfg.retarget,
        device=cfg.device,
    )
